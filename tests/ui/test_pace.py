"""gcdash.ui.pace: the ETA of a resumed computation counts the batches it computed, not those read from the cache."""

from __future__ import annotations

import pytest

from gcdash.ui.compute import SweepJob
from gcdash.ui.pace import Pace


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def finish(pace_or_job, clock: Clock, batches: list[tuple[int, float]]) -> None:
    """Finish ``batches`` ((images, seconds) each) on a :class:`Pace` or through a :class:`SweepJob`'s progress."""
    for images, seconds in batches:
        clock.now += seconds
        if isinstance(pace_or_job, Pace):
            pace_or_job.add(images)
        else:
            pace_or_job._report(pace_or_job.done + images, "tiny-cnn")


CACHED = [(16, 0.02)] * 5  # a resumed run's first batches: read whole from the cache
COMPUTED = [(16, 4.0)] * 2  # then computed: 0.25 s per image


def test_a_resume_does_not_promise_the_cached_rate():
    clock = Clock()
    pace = Pace(clock)
    assert pace.eta(100) is None  # nothing finished yet: no guess
    finish(pace, clock, CACHED + COMPUTED)
    assert pace.seconds_per_image() == pytest.approx(0.25)
    assert pace.eta(100) == pytest.approx(25.0)  # elapsed / done would say 100 × 8.1 / 112 ≈ 7 s


def test_one_slow_warm_up_batch_does_not_hide_the_computed_ones():
    clock = Clock()
    pace = Pace(clock)
    finish(pace, clock, [(16, 40.0), *COMPUTED * 3])  # the first pass warms up 10× slower
    assert pace.seconds_per_image() == pytest.approx((40 + 6 * 4) / (7 * 16))


def test_a_fresh_run_rates_every_batch():
    clock = Clock()
    pace = Pace(clock)
    finish(pace, clock, [(16, 3.0), (16, 5.0), (4, 1.0)])
    assert pace.seconds_per_image() == pytest.approx(9 / 36)


def test_the_runs_page_eta_after_a_resume_is_the_computed_rate():
    clock = Clock()
    job = SweepJob([], total=16 * 12, _pace=Pace(clock))
    finish(job, clock, CACHED + COMPUTED)
    assert job.done == 16 * 7 and job.running
    assert job.eta == pytest.approx(16 * 5 * 0.25)  # five batches left at 4 s each, not ~1 s
