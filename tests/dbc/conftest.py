"""Shared fixtures: tiny real Maze models trained through the real CLI (seconds, not minutes)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from dbc_helpers import maze_train_flags

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def maze_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """policy_dir with maze/{diffusion, bc_s0, dbc_s0} (+ eval.json/.png), trained for a few steps."""
    from training.dbc import evaluate, train

    root = tmp_path_factory.mktemp("policies")
    out, data = root / "maze", root / "data"
    common = maze_train_flags(data, out)
    assert train.main([*common, "--algo", "diffusion", "--steps", "20"]) == 0
    assert train.main([*common, "--algo", "bc,dbc", "--seeds", "0", "--steps", "20"]) == 0
    assert (
        evaluate.main(
            [
                "--task",
                "maze",
                "--policies",
                str(out / "bc_s0"),
                str(out / "dbc_s0"),
                "--episodes",
                "2",
                "--out",
                str(out / "eval.json"),
            ]
        )
        == 0
    )
    return root


@pytest.fixture(scope="session")
def breakout_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Breakout policies/{diffusion, bc_s0, dbc_s0} from 24 real expert frames + a 5-step human episode."""
    import numpy as np

    from games.episode_store import Episode, EpisodeStore
    from training.dbc import train

    root = tmp_path_factory.mktemp("breakout")
    human = root / "human"
    rng = np.random.default_rng(0)
    EpisodeStore(human).add(
        Episode(
            obs=rng.integers(0, 255, (6, 64, 64, 3), dtype=np.uint8),
            actions=np.array([1, 2, 3, 0, 2]),
            rewards=np.zeros(5),
            terminated=np.zeros(5, bool),
            life_lost=np.zeros(5, bool),
            meta={"game": "Breakout", "policy": "human"},
        )
    )
    common = [
        "--task",
        "breakout",
        "--demos",
        "24",
        "--data-dir",
        str(root / "data"),
        "--human",
        str(human),
        "--hidden",
        "16",
        "--batch-size",
        "8",
        "--out",
        str(root / "policies"),
    ]
    assert train.main([*common, "--algo", "diffusion", "--embed-steps", "3", "--steps", "3"]) == 0
    assert train.main([*common, "--algo", "bc,dbc", "--seeds", "0", "--steps", "3"]) == 0
    return root


@pytest.fixture(scope="session")
def fetch_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """fetch/{diffusion, bc_s0, dbc_s0, diffusion_policy_s0} from 2 real expert episodes, a few steps each."""
    from training.dbc import train

    root = tmp_path_factory.mktemp("fetch")
    common = ["--task", "fetch", "--demos", "2", "--data-dir", str(root / "data"), "--hidden", "32", "--layers", "2"]
    common += ["--out", str(root / "fetch")]
    assert train.main([*common, "--algo", "diffusion", "--steps", "10"]) == 0
    assert train.main([*common, "--algo", "bc,dbc,diffusion_policy", "--steps", "10", "--dp-steps", "5"]) == 0
    return root
