"""Sampler distillation (train.py --distill-from): a student that dreams in one Euler step what its
teacher dreams in three with action guidance, from the same noise."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from script_helpers import TINY, one_error

from games.episode_store import EpisodeStore
from model.world_model import WorldModel
from model.world_model.sampler import SamplerConfig, sample_next_frame

TEACHER_SAMPLER = SamplerConfig(num_steps=3, action_guidance=2.0)


def test_the_distill_loss_scores_what_the_one_step_sampler_dreams(model_factory) -> None:
    """distill_loss and a 1-step sampler agree on the noise level, the preconditioning and the clean
    context: a target equal to the student's own 1-step dream costs nothing, another one does."""
    den = model_factory(0).denoiser
    g = torch.Generator().manual_seed(0)
    ctx, act = torch.rand(3, 4, 3, 64, 64, generator=g) * 2 - 1, torch.randint(0, 4, (3, 4), generator=g)
    noise = torch.randn(3, 3, 64, 64, generator=g)
    own = sample_next_frame(den, ctx, act, SamplerConfig(num_steps=1), noise=noise)
    with torch.no_grad():
        zero, _ = den.distill_loss(ctx, act, noise, own, SamplerConfig().sigma_max)
        other, _ = den.distill_loss(ctx, act, noise, own.flip(-1), SamplerConfig().sigma_max)
    assert float(zero) < 1e-8 < 1e-3 < float(other)


@pytest.fixture(scope="module")
def work(tmp_path_factory, store_dir: Path, model_factory) -> Path:
    root = tmp_path_factory.mktemp("distill")
    shutil.copytree(store_dir, root / "data")
    teacher = model_factory(3)
    teacher.cfg = replace(teacher.cfg, sampler=TEACHER_SAMPLER)
    teacher.save_snapshot(root / "teacher")
    return root


def contexts(data: Path, n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """n real contexts (B, 4, C, H, W) in [-1, 1] and their actions (B, 4), the last one not NOOP."""
    ep = EpisodeStore(data).load_all("Breakout")[0][0]
    ts = np.linspace(10, len(ep) - 2, n).astype(int)
    obs = torch.from_numpy(np.stack([ep.obs[t - 3 : t + 1] for t in ts])).permute(0, 1, 4, 2, 3).float() / 127.5 - 1
    act = torch.from_numpy(np.stack([ep.actions[t - 3 : t + 1] for t in ts])).long()
    act[:, -1] = 2  # RIGHT: guided
    return obs, act


def miss(student: WorldModel, teacher: WorldModel, obs: torch.Tensor, act: torch.Tensor) -> float:
    """Mean squared difference of the student's 1-step and the teacher's guided 3-step dreams, same noise."""
    noise = torch.randn(obs.shape[0], 3, 64, 64, generator=torch.Generator().manual_seed(7))
    mine = sample_next_frame(student.denoiser, obs, act, student.cfg.sampler, noise=noise)
    theirs = sample_next_frame(teacher.denoiser, obs, act, teacher.cfg.sampler, noise=noise)
    return float(((mine - theirs) ** 2).mean())


def test_a_student_learns_to_dream_its_teachers_frames_in_one_step(work: Path, run_script) -> None:
    run = work / "runs" / "student"
    args = [*TINY, "--game", "Breakout", "--data", work / "data", "--run-dir", run, "--eval-every", "0"]
    proc = run_script(
        "training/train.py",
        *args,
        "--distill-from",
        work / "teacher.safetensors",
        "--steps",
        "40",
        "--lr",
        "1e-3",
        "--warmup",
        "1",
        "--ema-decay",
        "0.5",
        "--batch-size",
        "8",
        "--ar-frames",
        "1",
        "--ckpt-every",
        "40",
        "--student-sigma-max",
        "20",
    )
    assert proc.returncode == 0, proc.stderr
    assert "into 1 step at sigma 20" in proc.stdout
    teacher = WorldModel.from_snapshot(work / "teacher", precision="fp32")
    student = WorldModel.from_snapshot(run / "snapshot", precision="fp32")
    assert student.cfg.sampler == replace(TEACHER_SAMPLER, num_steps=1, action_guidance=0.0, sigma_max=20.0)
    assert student.cfg.denoiser.unet.fp32_output and not teacher_unet(work).fp32_output
    assert student.meta["distilled_from"]["sampler"]["action_guidance"] == 2.0
    for k, v in teacher.reward_end.state_dict().items():  # the reward/end model is the teacher's
        torch.testing.assert_close(student.reward_end.state_dict()[k], v)
    obs, act = contexts(work / "data")
    start = replace(teacher.cfg, sampler=student.cfg.sampler)  # the teacher's weights sampled in 1 step
    untrained = WorldModel(start)
    untrained.load_state_dict(teacher.state_dict())
    before, after = miss(untrained.eval(), teacher, obs, act), miss(student, teacher, obs, act)
    assert after < 0.7 * before, (before, after)

    # a resume keeps the teacher (args.json) and the student's 1-step sampler
    proc = run_script("training/train.py", "--run-dir", run, "--resume", "--steps", "42", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert WorldModel.from_snapshot(run / "snapshot").meta["step"] == 42


def teacher_unet(work: Path):
    return WorldModel.from_snapshot(work / "teacher").cfg.denoiser.unet


def test_a_student_noise_level_needs_a_teacher(work: Path, run_script) -> None:
    run = work / "runs" / "no-teacher"
    proc = run_script(
        "training/train.py", *TINY, "--data", work / "data", "--run-dir", run, "--student-sigma-max", "80"
    )
    assert "--student-sigma-max" in one_error(proc) and "--distill-from" in one_error(proc)
    assert not run.exists()


def test_distilling_from_another_games_model_is_refused(work: Path, run_script, model_factory) -> None:
    model_factory(1, game="Pong", actions=["NOOP", "FIRE", "RIGHT", "LEFT", "RIGHTFIRE", "LEFTFIRE"]).save_snapshot(
        work / "pong"
    )
    run = work / "runs" / "wrong"
    proc = run_script(
        "training/train.py",
        *TINY,
        "--data",
        work / "data",
        "--run-dir",
        run,
        "--eval-every",
        "0",
        "--init-from",
        work / "teacher.safetensors",
        "--distill-from",
        work / "pong.safetensors",
        "--steps",
        "2",
    )
    assert "teacher" in one_error(proc)
    assert not (run / "snapshot.json").exists()


def test_measures_use_a_models_own_step_count(model_factory) -> None:
    """The playability suite's dreamer (and so ship.py's gate) samples a model with its own sampler
    unless told otherwise: a distilled model in its one step, not the DIAMOND default of 3."""
    from training.world_model.playability.core import ModelDreamer

    student = model_factory(0)
    student.cfg = replace(student.cfg, sampler=replace(student.cfg.sampler, num_steps=1))
    assert ModelDreamer(student).sampler.num_steps == 1
    assert ModelDreamer(student, steps=3, action_guidance=1.0).sampler.num_steps == 3
    assert ModelDreamer(model_factory(1)).sampler.num_steps == 3


def test_the_card_command_of_a_told_student_repeats_its_flags(model_factory) -> None:
    """ship.py's train.py command for a distillation run: a bool flag is written bare, a setting left
    at train.py's default is left out, and the reward input's own rate only with the input."""
    from training.ship import _distill_command

    model = model_factory(0)
    run = {"game": "Boxing", "distill_from": "t.safetensors", "init_from": "s.safetensors", "reward_input": True}
    run |= {"reward_weight": 4.0, "reward_input_lr": 0.01, "steps": 3000, "eval_every": 0}
    cmd = _distill_command(run, model)
    assert "--init-from s.safetensors --reward-input --reward-weight 4.0 --eval-every 0 --steps 3000" in cmd
    assert "--reward-input True" not in cmd and "--reward-input-lr" not in cmd
    plain = _distill_command(
        {"game": "Pong", "distill_from": "t", "reward_weight": 1.0, "reward_input_lr": 0.01}, model
    )
    assert plain == "--game Pong --distill-from t"
