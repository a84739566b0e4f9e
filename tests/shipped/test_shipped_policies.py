"""The shipped DBC / BC policies (policies/<task>/) load without pickle, act on real observations, and
their evaluation JSON names exactly the shipped files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from games.envs import FrameStack
from model.dbc.core import act, load_dbc_policy, load_diffusion

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ("maze", "breakout")
"""Tasks with shipped policies (FetchPick's come with its multi-seed runs)."""


@pytest.mark.parametrize("task", SHIPPED)
def test_shipped_policies_act_and_match_their_table(task: str) -> None:
    folder = ROOT / "policies" / task
    names = sorted(p.stem for p in folder.glob("*_s*.safetensors"))
    assert {n.split("_s")[0] for n in names} == {"bc", "dbc"}, names  # BC beside DBC, as the viewer shows them
    for p in folder.glob("*.safetensors"):
        assert p.stat().st_size < 25 * 2**20 and int.from_bytes(p.read_bytes()[:8], "little") > 0  # not a pickle
    load_diffusion(folder / "diffusion", task=task)  # the viewer's expert-likeness needs phi

    if task == "maze":
        from games.maze import MazeTask

        env = MazeTask()
        obs = torch.from_numpy(np.stack([env.reset(0)] * 2)).float()
        env.close()
    else:
        from games.envs import make_env

        env = make_env("Breakout")
        stack = FrameStack()
        s = stack.reset(env.reset(seed=0)[0])
        for _ in range(3):
            s = stack.push(env.step(1)[0])
        env.close()
        obs = torch.from_numpy(np.stack([s] * 2))
    for name in names:
        policy, meta = load_dbc_policy(folder / name, task=task)
        assert meta["algo"] == name.split("_s")[0] and (meta["lambda"] == 0) == (meta["algo"] == "bc")
        a, _ = act(policy, obs)
        if task == "maze":  # a 2-D force in [-1, 1]
            assert a.shape == (2, 2) and torch.allclose(a[0], a[1], atol=1e-5) and float(a.abs().max()) <= 1
        else:  # an index into NOOP, FIRE, RIGHT, LEFT
            assert a.shape == (2,) and a[0] == a[1] and 0 <= int(a[0]) < 4

    doc = json.loads((folder / "eval.json").read_text())
    evaluated = {Path(r["policy"]).name for r in doc["results"] if r["algo"] in ("bc", "dbc")}
    assert evaluated == set(names), "the shipped table must describe the shipped policies"
    assert (folder / "eval.png").is_file()
