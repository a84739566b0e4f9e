"""Shared fixtures. Everything runs on one CPU thread with the 'tiny' preset, so the suite stays
fast on a 2-core machine that is also training a model."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
BREAKOUT_ACTIONS = ["NOOP", "FIRE", "RIGHT", "LEFT"]


def make_tiny_model(seed: int = 0, game: str = "Breakout", actions: list[str] | None = None):
    """A 'tiny'-preset WorldModel with seeded weights, fp32 on the CPU, in eval mode.

    The U-Net's output conv is zero-initialised (DIAMOND), which would make every dream equal to
    c_skip * x; it is re-drawn here so outputs depend on all the weights.
    """
    from model.world_model import WorldModel, preset_config

    torch.manual_seed(seed)
    model = WorldModel(preset_config("tiny", game, actions or BREAKOUT_ACTIONS))
    with torch.no_grad():
        torch.nn.init.normal_(model.denoiser.net.conv_out.weight, std=0.05)
    return model.configure(torch.device("cpu"), "fp32")


@pytest.fixture
def tiny_model():
    return make_tiny_model(0)


@pytest.fixture(scope="session")
def model_factory() -> Callable[..., object]:
    """make_tiny_model, for tests that need several models or another seed."""
    return make_tiny_model


@pytest.fixture(scope="session")
def breakout_actions() -> list[str]:
    from games.envs import action_meanings

    return action_meanings("Breakout")


def synthetic_episode(rng: np.random.Generator, length: int, num_actions: int = 4):
    """A random Episode of `length` steps (not a real game, but every array has the right shape)."""
    from games.episode_store import Episode

    return Episode(
        obs=rng.integers(0, 256, (length + 1, 64, 64, 3), dtype=np.uint8),
        actions=rng.integers(0, num_actions, length),
        rewards=rng.choice(np.array([0.0, 1.0], dtype=np.float32), length),
        terminated=np.zeros(length, dtype=bool),
        life_lost=np.zeros(length, dtype=bool),
        meta={"game": "Breakout", "policy": "synthetic", "seed": int(rng.integers(1000))},
    )


@pytest.fixture
def count_denoise_calls(monkeypatch) -> Callable[[object], list[int]]:
    """count(model) -> [n, rows]: network evaluations (Denoiser.denoise calls, whether the eager or
    the frozen U-Net runs behind them) and the batch rows they evaluated in all, from then on, until
    the test ends."""

    def count(model) -> list[int]:
        calls = [0, 0]
        denoise = model.denoiser.denoise

        def counted(*args, **kwargs):
            calls[0] += 1
            calls[1] += len(args[0] if args else kwargs["x_noisy"])
            return denoise(*args, **kwargs)

        monkeypatch.setattr(model.denoiser, "denoise", counted)
        return calls

    return count


@pytest.fixture
def episodes():
    rng = np.random.default_rng(0)
    return [synthetic_episode(rng, n) for n in (12, 20)]


def _script_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1", PYTHONPATH=str(REPO))
    return env


@pytest.fixture(scope="session")
def run_script() -> Callable[..., subprocess.CompletedProcess]:
    """Run `python <script> args...` (or another executable when script is absolute) from the repo root."""

    def run(script: str, *args: str, timeout: float = 3600, exe: str | None = None) -> subprocess.CompletedProcess:
        cmd = [exe or PYTHON, str(REPO / script), *map(str, args)]
        return subprocess.run(cmd, cwd=REPO, env=_script_env(), capture_output=True, text=True, timeout=timeout)

    return run


@pytest.fixture(scope="session")
def script_env() -> dict[str, str]:
    return _script_env()


@pytest.fixture(scope="session")
def collected(tmp_path_factory, run_script) -> tuple[subprocess.CompletedProcess, Path]:
    """Real Breakout play collected once per session through collect.py's command line
    (expert policy, so the 200 steps make one long episode: long enough for 50-step evaluation)."""
    out = tmp_path_factory.mktemp("data") / "Breakout"
    proc = run_script(
        "training/collect.py",
        "--game",
        "Breakout",
        "--policy",
        "expert",
        "--steps",
        "200",
        "--seed",
        "0",
        "--out",
        out,
        timeout=3600,
    )
    return proc, out


@pytest.fixture(scope="session")
def store_dir(collected) -> Path:
    proc, out = collected
    assert proc.returncode == 0, proc.stderr
    return out
