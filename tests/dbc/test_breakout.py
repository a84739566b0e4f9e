"""Discrete DBC from pixels on real Breakout: demos (scripted expert + human store), train, evaluate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from games.envs import stack_frames
from model.dbc.core import act, load_dbc_policy, load_diffusion
from training.dbc import evaluate
from training.dbc.demos import breakout_demos, store_demos


def test_demos_are_frame_stacks() -> None:
    d = breakout_demos(frames=12, progress=False)
    assert d["obs"].shape == (12, 4, 64, 64, 3) and d["obs"].dtype == np.uint8
    assert d["actions"].shape == (12,) and d["actions"].max() < 4
    assert np.array_equal(d["obs"][0, 0], d["obs"][0, 3])  # reset frame repeated
    obs = np.arange(5)[:, None, None, None] * np.ones((5, 2, 2, 3), np.uint8)
    st = stack_frames(obs)
    assert st.shape == (5, 4, 2, 2, 3) and st[4, :, 0, 0, 0].tolist() == [1, 2, 3, 4]


def test_human_episodes_are_used(breakout_run: Path) -> None:
    d = store_demos(breakout_run / "human")
    assert d is not None and d["obs"].shape == (5, 4, 64, 64, 3) and d["actions"].tolist() == [1, 2, 3, 0, 2]
    meta = json.loads((breakout_run / "policies" / "bc_s0.json").read_text())["meta"]
    assert meta["transitions"] == 24 + 5
    assert store_demos(breakout_run / "human", policy="expert") is None


def test_pixel_policies_and_embedded_diffusion_round_trip(breakout_run: Path) -> None:
    phi, embedder, meta = load_diffusion(breakout_run / "policies" / "diffusion", task="breakout")
    assert embedder is not None and phi.cfg.discrete and phi.cfg.state_dim == embedder.cfg.embed_dim
    frames = torch.randint(0, 255, (3, 4, 64, 64, 3), dtype=torch.uint8)
    losses = phi.discrete_losses(embedder.embed(frames), draws=4)
    assert losses.shape == (3, 4) and torch.isfinite(losses).all()
    pol, _ = load_dbc_policy(breakout_run / "policies" / "dbc_s0", task="breakout")
    a1, probs = act(pol, frames)
    a2, _ = act(load_dbc_policy(breakout_run / "policies" / "dbc_s0")[0], frames)
    assert torch.equal(a1, a2) and torch.allclose(probs.sum(-1), torch.ones(3))


def test_evaluate_in_the_real_game(breakout_run: Path) -> None:
    out = breakout_run / "eval.json"
    pols = [str(breakout_run / "policies" / n) for n in ("bc_s0", "dbc_s0")]
    assert (
        evaluate.main(
            ["--task", "breakout", "--policies", *pols, "--episodes", "1", "--max-steps", "15", "--out", str(out)]
        )
        == 0
    )
    doc = json.loads(out.read_text())
    assert doc["max_steps"] == 15 and all(r["episodes"][0]["steps"] <= 15 for r in doc["results"])
    assert set(doc["summary"]) == {"bc", "dbc"} and out.with_suffix(".png").is_file()


def test_baselines_play_the_same_episodes(tmp_path: Path) -> None:
    out = tmp_path / "eval.json"
    args = ["--task", "breakout", "--baselines", "--episodes", "2", "--max-steps", "200", "--out", str(out)]
    assert evaluate.main(args) == 0
    doc = json.loads(out.read_text())
    assert set(doc["summary"]) == {"random", "expert"}
    assert all([e["seed"] for e in r["episodes"]] == [0, 1] for r in doc["results"])
    assert doc["summary"]["expert"]["mean"] > 0  # the RAM expert serves and breaks bricks within 200 steps
    demo_seed = ["--task", "breakout", "--baselines", "--episodes", "1", "--episode-seed", "1000000"]
    assert evaluate.main(demo_seed) == 2  # the demonstrations' episodes are refused


def test_sampled_actions_are_reproducible_and_the_cli_says_so(breakout_run: Path) -> None:
    pol, _ = load_dbc_policy(breakout_run / "policies" / "bc_s0", task="breakout")
    frames = torch.randint(0, 256, (64, 4, 64, 64, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    draws = [act(pol, frames, greedy=False, generator=torch.Generator().manual_seed(7))[0] for _ in range(2)]
    assert torch.equal(draws[0], draws[1])
    out = breakout_run / "eval_sampled.json"
    pols = [str(breakout_run / "policies" / "bc_s0")]
    args = ["--task", "breakout", "--policies", *pols, "--episodes", "1", "--max-steps", "15", "--sample"]
    assert evaluate.main([*args, "--out", str(out)]) == 0
    assert json.loads(out.read_text())["actions"] == "sampled"
    assert evaluate.main(["--task", "maze", "--policies", *pols, "--sample"]) == 2  # continuous actions
