"""What a run tells its user: the closing summary and a progress bar that follows the budget."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import train_tiny
from train.metrics import Reporter
from train.summary import TrainSummary, duration


def test_a_budget_run_says_the_budget_stopped_it(tmp_path: Path) -> None:
    got: list[TrainSummary] = []
    out = train_tiny(tmp_path / "run", epochs=50, max_seconds=0.01, log_every=3,
                     report=got.append)
    (summary,) = got
    assert summary.out_of_time and summary.step == summary.steps_run == 3
    assert summary.images == 3 * 16 and summary.seconds > 0
    assert summary.sample == out / "samples" / "step-3.png"
    head = summary.lines()[0]
    assert head.startswith("trained 3 steps (48 images) in ")
    assert f"--max-seconds stopped it at step 3 of {summary.total_steps:,}" in head


def test_a_finished_run_has_nothing_left_to_train(tmp_path: Path) -> None:
    out = train_tiny(tmp_path / "run", max_steps=2, log_every=1)
    got: list[TrainSummary] = []
    train_tiny(tmp_path / "run", max_steps=2, log_every=1, resume=True, report=got.append)
    assert got[0].steps_run == 0
    assert got[0].lines()[0] == f"nothing to train: {out} is at step 2 of 2"


def test_the_progress_bar_follows_a_time_budget(tmp_path: Path) -> None:
    budget = Reporter(tmp_path / "a", total_steps=2340, start_step=0, budget_s=600)
    budget.started -= 300  # half the budget spent, after 10 of 2,340 steps
    assert 0.5 <= budget.fraction(10) < 0.51
    assert budget.where(10).startswith("step 10/2340, 300/600 s")
    budget.close()
    steps = Reporter(tmp_path / "b", total_steps=2340, start_step=1000, budget_s=0)
    assert steps.fraction(1670) == pytest.approx(0.5)  # of this process's steps
    steps.close()


@pytest.mark.parametrize("seconds, text", [(12.34, "12.3 s"), (451, "7 min 31 s"),
                                           (4000, "1 h 6 min")])
def test_durations_read_like_people_write_them(seconds: float, text: str) -> None:
    assert duration(seconds) == text
