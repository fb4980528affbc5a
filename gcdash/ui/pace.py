"""How long a computation has left, rated by the batches it computed (pure Python: no streamlit here).

A batch whose rows are in the cache is read in milliseconds; a computed one takes seconds. After a resume the first
batches are all cached, so a rate over every finished image (elapsed / done) promises a fraction of the time left
and then climbs as the computed batches come in (25 s, then 167 s). :class:`Pace` rates by the computed batches
only: a batch counts as computed when its time per image is at least :data:`CACHED_RATIO` of the reference, the
second-slowest batch's (so one slow outlier, a warm-up, does not set the bar).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

CACHED_RATIO = 0.1  # a batch under a tenth of the reference's time per image was read from the cache


@dataclass
class Pace:
    """Finished batches and their durations; :meth:`eta` for the images left."""

    clock: Callable[[], float] = time.monotonic
    batches: list[tuple[int, float]] = field(default_factory=list)  # (images, seconds) of each finished batch
    _last: float | None = None

    def __post_init__(self) -> None:
        self._last = self.clock()

    def add(self, images: int) -> None:
        """``images`` more are finished (one batch, or a few read together)."""
        now = self.clock()
        if images > 0:
            self.batches.append((images, now - self._last))
        self._last = now

    def seconds_per_image(self) -> float | None:
        """Seconds per computed image (None before the first batch)."""
        if not self.batches:
            return None
        rates = sorted((seconds / images for images, seconds in self.batches), reverse=True)
        reference = rates[min(1, len(rates) - 1)]
        computed = [(i, s) for i, s in self.batches if s / i >= CACHED_RATIO * reference]
        return sum(s for _, s in computed) / sum(i for i, _ in computed)

    def eta(self, left: int) -> float | None:
        """Seconds for ``left`` more images at the computed batches' rate (None before the first batch)."""
        rate = self.seconds_per_image()
        return None if rate is None else rate * max(left, 0)
