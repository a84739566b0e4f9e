"""A fourth ALE game end to end on the real emulator, as docs/new-game.md runs it: random play
collected with collect.py, the `tiny` preset trained a few steps with train.py and resumed, the
snapshot loaded from safetensors + JSON and dreamed from real frames. MsPacman has no scripted
expert, no FIRE, nine actions and no playability suite, so nothing on this road may assume
Breakout."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from script_helpers import TINY, one_error

from games.envs import action_meanings
from games.episode_store import EpisodeStore
from model import checkpoint
from model.world_model import Dreams, WorldModel, preset_config

GAME = "MsPacman"
STEPS = 300


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("new-game")


@pytest.fixture(scope="module")
def collected(work: Path, run_script) -> subprocess.CompletedProcess:
    return run_script(
        "training/collect.py", "--game", GAME, "--policy", "random", "--steps", STEPS, "--seed", "0",
        "--out", work / "data",
    )  # fmt: skip


@pytest.fixture(scope="module")
def trained(work: Path, collected, run_script) -> Path:
    """2 denoiser steps (reward/end model alongside) on the collected play; no held-out evaluation."""
    assert collected.returncode == 0, collected.stderr
    proc = run_script(
        "training/train.py", "--game", GAME, *TINY, "--steps", "2", "--ckpt-every", "2", "--log-every", "1",
        "--eval-every", "0", "--run-dir", work / "run", "--data", work / "data", "--heldout", work / "heldout",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return work / "run"


@pytest.fixture(scope="module")
def meanings() -> list[str]:
    return action_meanings(GAME)


def real_contexts(store: Path, L: int, at: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames uint8 (B, L, H, W, C) ending at each step in `at`, and the L-1 actions between them."""
    (ep,), errors = EpisodeStore(store).load_all(GAME)
    assert errors == []
    frames = np.stack([ep.obs[t - L + 1 : t + 1] for t in at])
    actions = np.stack([ep.actions[t - L + 1 : t] for t in at])
    return torch.from_numpy(frames), torch.from_numpy(actions)


def dream(model: WorldModel, ctx: tuple[torch.Tensor, torch.Tensor], actions: list[list[int]]):
    """Frames (T, B, H, W, C), rewards (T, B), ends (T, B) of a seeded dream given actions[t] at step t."""
    dreams = Dreams(model, seed=0)
    dreams.reset(*ctx)
    steps = [dreams.step(torch.tensor(a)) for a in actions]
    return tuple(torch.stack(x) for x in zip(*steps))


def test_random_play_is_collected_and_scores(work: Path, collected, meanings: list[str]) -> None:
    assert collected.returncode == 0, collected.stderr
    assert "wrote 1 episodes" in collected.stdout and f"({STEPS} steps in store)" in collected.stdout
    store = EpisodeStore(work / "data")
    (entry,) = store.index()
    assert (entry["game"], entry["policy"], entry["length"]) == (GAME, "random", STEPS)
    (ep,), errors = store.load_all(GAME)
    assert errors == [] and ep.obs.shape == (STEPS + 1, 64, 64, 3) and ep.obs.dtype == np.uint8
    assert len(meanings) == 9 and "FIRE" not in meanings
    assert set(ep.actions.tolist()) == set(range(len(meanings)))  # every action of the game's set
    assert entry["return"] > 0  # random play eats pellets: this game needs no scripted expert


def test_a_game_without_an_expert_is_told_to_collect_random_play(work: Path, run_script) -> None:
    mixed = run_script("training/collect.py", "--game", GAME, "--policy", "mixed", "--steps", "10",
                       "--out", work / "mixed")  # fmt: skip
    assert f"no scripted expert for '{GAME}'" in one_error(mixed) and "'random' policy" in mixed.stderr
    assert not (work / "mixed").exists()
    # train.py collects when its store is empty, with --policy mixed unless told otherwise
    proc = run_script(
        "training/train.py", "--game", GAME, *TINY, "--steps", "1", "--collect-steps", "10",
        "--run-dir", work / "refused", "--data", work / "empty", "--heldout", work / "empty-heldout",
    )  # fmt: skip
    assert f"no scripted expert for '{GAME}'" in one_error(proc)
    assert not any((work / d).exists() for d in ("refused", "empty", "empty-heldout"))


def test_the_snapshot_records_the_game_and_its_actions(trained: Path, meanings: list[str]) -> None:
    meta = checkpoint.read_meta(trained / "snapshot")  # the header alone, no weights
    assert meta["kind"] == "world_model" and meta["step"] == 2
    assert meta["config"]["game"] == GAME and meta["config"]["action_meanings"] == meanings
    model = WorldModel.from_snapshot(trained / "snapshot", precision="fp32")
    assert (model.cfg.game, model.cfg.action_meanings, model.cfg.preset) == (GAME, meanings, "tiny")
    assert model.num_actions == model.cfg.denoiser.unet.num_actions == model.cfg.reward_end.num_actions == 9
    # the weights are plain safetensors (nothing to unpickle), every one of them the model's
    with safe_open(trained / "snapshot.safetensors", "pt") as f:
        assert {k.removeprefix("/model/") for k in f.keys()} == set(model.state_dict())
    files = {p.name for p in trained.iterdir() if p.is_file()}
    assert {"snapshot.json", "snapshot.safetensors", "state.json", "state.safetensors"} <= files
    assert {Path(f).suffix for f in files} <= {".json", ".jsonl", ".safetensors"}  # no pickle anywhere
    assert json.loads((trained / "args.json").read_text())["game"] == GAME


def test_the_model_dreams_from_real_frames(work: Path, trained: Path) -> None:
    model = WorldModel.from_snapshot(trained / "snapshot", precision="fp32")
    L = model.cfg.context_frames
    ctx = real_contexts(work / "data", L, at=(120, 250))
    actions = [[8, 0], [1, 4], [5, 8]]  # DOWNLEFT and NOOP first: the last and the first index of the set
    frames, rewards, ends = dream(model, ctx, actions)
    assert frames.shape == (3, 2, 64, 64, 3) and frames.dtype == torch.uint8
    assert rewards.shape == (3, 2) and set(rewards.unique().tolist()) <= {-1, 0, 1}
    assert ends.shape == (3, 2) and ends.dtype == torch.bool
    assert frames.any() and frames.float().std() > 5  # a picture, not a blank
    with pytest.raises(ValueError, match=r"expected 0\.\.8"):
        Dreams(model, seed=0).reset(ctx[0], torch.full_like(ctx[1], 9))  # not one of MsPacman's actions
    # A second load of the same snapshot dreams the same frames from the same seed.
    again = dream(WorldModel.from_snapshot(trained / "snapshot", precision="fp32"), ctx, actions)
    assert torch.equal(again[0], frames) and torch.equal(again[1], rewards) and torch.equal(again[2], ends)


def test_a_stopped_run_resumes(work: Path, trained: Path, run_script) -> None:
    run = work / "resumed"
    shutil.copytree(trained, run)
    proc = run_script(
        "training/train.py", "--game", GAME, *TINY, "--steps", "3", "--eval-every", "0", "--resume",
        "--run-dir", run, "--data", work / "data", "--heldout", work / "heldout",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "at step 2" in proc.stdout
    tree, meta = checkpoint.load(run / "state")
    assert int(tree["step"]) == 3 and meta["config"]["game"] == GAME
    model = WorldModel.from_snapshot(run / "snapshot", precision="fp32")
    assert model.meta["step"] == 3 and model.cfg.game == GAME
    before = WorldModel.from_snapshot(trained / "snapshot", precision="fp32").state_dict()
    assert any(not torch.equal(v, before[k]) for k, v in model.state_dict().items())  # it trained on


def test_a_new_game_starts_from_another_games_model(work: Path, collected, run_script, meanings) -> None:
    """--init-from a Breakout snapshot trains MsPacman from its weights: the U-Net keeps every weight
    but the action embeddings, the actions both games name (NOOP, RIGHT, LEFT) keep their rows, and
    the run's snapshot is a MsPacman model that records the Breakout steps behind it."""
    assert collected.returncode == 0, collected.stderr
    src = WorldModel(preset_config("tiny", "Breakout", ["NOOP", "FIRE", "RIGHT", "LEFT"]))
    src.save_snapshot(work / "breakout", {"train_steps": 7})
    run = work / "from-breakout"
    proc = run_script(
        "training/train.py", "--game", GAME, *TINY, "--steps", "1", "--lr", "0", "--eval-every", "0",
        "--init-from", work / "breakout", "--run-dir", run, "--data", work / "data", "--heldout", work / "heldout",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "starting from the Breakout model" in proc.stdout and "kept by name: NOOP, RIGHT, LEFT" in proc.stdout
    model = WorldModel.from_snapshot(run / "snapshot", precision="fp32")
    assert (model.cfg.game, model.cfg.action_meanings) == (GAME, meanings)
    assert model.meta["base_training"]["game"] == "Breakout" and model.meta["base_training"]["steps"] == 7
    old, new = src.state_dict(), model.state_dict()
    emb = "denoiser.net.act_emb.weight"
    assert new[emb].shape == (9, old[emb].shape[1])
    for i, name in enumerate(meanings):
        if name in ("NOOP", "RIGHT", "LEFT"):
            torch.testing.assert_close(new[emb][i], old[emb][["NOOP", "FIRE", "RIGHT", "LEFT"].index(name)])
    # lr 0: one step moves nothing, so every shared weight is Breakout's
    assert all(torch.equal(new[k], v) for k, v in old.items() if "act_emb" not in k)
    # ship.py counts this game's steps and says where the weights came from
    ship = run_script(
        "training/ship.py", "--run-dir", run, "--data", work / "data", "--heldout", work / "data", "--threads", "1",
        "--out-dir", work / "ckpt", "--docs", work / "docs", "--starts", "2", "--stability-steps", "20",
    )  # fmt: skip
    assert ship.returncode == 0, ship.stderr
    card = (work / "docs" / f"{GAME}.md").read_text()
    assert "1 denoiser steps" in card and "started from the weights of a Breakout model (7 steps behind it" in card
    assert "No playability probes exist for this game yet" in card
