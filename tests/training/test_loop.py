"""training/loop.TrainingLoop, the loop train.py and train.py --agent share: rounds, logging, checkpoints,
and a SIGTERM that ends the round in progress, saves and leaves the old handler in place again."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from training.loop import TrainingLoop, lr_at


def make_loop(run_dir: Path, saved: list[int], **kw) -> TrainingLoop:
    loop = TrainingLoop(
        run_dir, "epoch", 1, 6, lambda: saved.append(loop.done), args_record={"x": 1}, tensorboard=False, **kw
    )
    return loop


def test_rounds_logs_and_checkpoints(tmp_path: Path) -> None:
    saved: list[int] = []
    counters = {"agent_steps": 0}
    loop = make_loop(tmp_path / "run", saved, ckpt_every=2, counters=lambda: counters, progress=False)

    def one_round() -> dict[str, float]:
        counters["agent_steps"] += 3
        return {"loss": float(loop.done)}

    loop.run(one_round, lambda logs: {})
    assert loop.done == 6 and saved == [2, 4, 6]  # every 2nd round, and the last
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [2, 3, 4, 5, 6]  # a resumed run: round 1 was done before
    assert rows[0]["loss"] == 1.0 and rows[-1]["agent_steps"] == 15 and "perf/sec_per_epoch" in rows[0]
    assert list(rows[0])[:3] == ["epoch", "time", "agent_steps"]
    assert json.loads((tmp_path / "run" / "args.json").read_text()) == {"x": 1}
    assert not (tmp_path / "run" / "tb").exists()


def test_sigterm_ends_the_round_then_saves(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    saved: list[int] = []
    loop = make_loop(tmp_path / "run", saved, ckpt_every=100, progress=False)
    before = signal.getsignal(signal.SIGTERM)
    seen_stop: list[bool] = []

    def one_round() -> dict[str, float]:
        if loop.done == 3:
            os.kill(os.getpid(), signal.SIGTERM)
            seen_stop.append(loop.stop)  # a long round can look and end early
        return {}

    loop.run(one_round, lambda logs: {})
    assert seen_stop == [True] and loop.done == 4 and saved == [4]
    assert "stopped at epoch 4; checkpoint saved to" in capsys.readouterr().out
    assert signal.getsignal(signal.SIGTERM) == before


def test_lr_warmup() -> None:
    assert [lr_at(s, 1.0, 4) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
