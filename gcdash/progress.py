"""How long work reports how far it got, and how it is asked to stop: the one ``Progress`` type of the engine,
the sweep, both executors, the CLI's bar and the pages' background jobs."""

from __future__ import annotations

from collections.abc import Callable

#: ``progress(done, total, what)``: ``done`` of ``total`` images finished, ``what`` names whose (a model).
Progress = Callable[[int, int, str], None]
#: Asked between batches; True cancels the work (what finished stays in the cache).
ShouldStop = Callable[[], bool]


def shifted(progress: Progress | None, before: int, total: int) -> Progress | None:
    """``progress`` for a piece of larger work: ``before`` images were finished before it, of ``total`` in all."""
    if progress is None:
        return None
    return lambda done, _, what: progress(before + done, total, what)


def per_run(progress: Progress | None, index: int, runs: int, name: str) -> Progress | None:
    """``progress`` for run ``index`` of ``runs`` equal runs (one sweep per attack, say), each reporting its own
    done and total: the total is scaled to all runs and ``name`` leads the words."""
    if progress is None:
        return None
    return lambda done, total, what: progress(index * total + done, total * runs, f"{name} · {what}")
