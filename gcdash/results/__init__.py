"""Tables and sentences from the per-image table: :mod:`~gcdash.results.summary` (the aggregates: MOD, VID,
bootstrap bands, the streaming summary of a table seen part by part) and :mod:`~gcdash.results.narrative` (the
findings in sentences). ``results.summary(table)`` and the other aggregates are this package's face; the
sentences are read as ``results.narrative.takeaway(...)``."""

from gcdash.results import narrative
from gcdash.results.summary import (
    FAITHFULNESS_COLUMNS,
    GROUP,
    LOCALISATION_COLUMNS,
    PAIRED,
    PER_IMAGE_COLUMNS,
    STABILITY_COLUMNS,
    SUMMARY_COLUMNS,
    VID_COLUMNS,
    StreamingSummary,
    bootstrap_ci,
    control_gap,
    extra_comparisons,
    identical_methods,
    mod_vid_table,
    summary,
    summary_with_ci,
    transfer_matrix,
    vid,
    zero_maps,
)

__all__ = [
    "FAITHFULNESS_COLUMNS",
    "GROUP",
    "LOCALISATION_COLUMNS",
    "PAIRED",
    "PER_IMAGE_COLUMNS",
    "STABILITY_COLUMNS",
    "SUMMARY_COLUMNS",
    "VID_COLUMNS",
    "StreamingSummary",
    "bootstrap_ci",
    "control_gap",
    "extra_comparisons",
    "identical_methods",
    "mod_vid_table",
    "narrative",
    "summary",
    "summary_with_ci",
    "transfer_matrix",
    "vid",
    "zero_maps",
]
