"""The one training loop behind `train.py` and `train.py --agent`.

A run is a number of rounds. A world-model run (`train.py`) has one round per denoiser step; DIAMOND's
full loop (`train.py --agent`, training/agent/loop.py) one per epoch: collect with the agent -> denoiser steps
-> reward/end steps -> agent steps. What the two share lives here:

- `TrainingLoop.run`: the rounds, with SIGINT / SIGTERM handling (the round in progress ends, the state
  is saved, the run exits; `--resume` continues it), the progress bar, `metrics.jsonl` and TensorBoard
  (`RunLog`), a checkpoint every `ckpt_every` rounds and at the end (the caller's `save`, which writes
  with `model.checkpoint`: atomic, safetensors + JSON, no pickle);
- `WorldModelSteps`: the world model, its EMA and the two optimisers, and one denoiser step
  (autoregressive contexts with `ar_frames`, DistributedDataParallel under torchrun; with a teacher,
  `distil_from`, a sampler-distillation step) or one reward/end step;
- the start of a run: `start` (game check, threads, seeds) and `holds_a_run` (no silent overwrite).

A round is a function the caller hands to `TrainingLoop.run`: train.py's makes one denoiser step and a
reward/end step; training/agent/loop.py's collects, then makes its denoiser, reward/end and agent steps.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from games.envs import UnknownGameError, check_game
from model import checkpoint
from model.device import autocast, prepare
from model.world_model import WorldModel, WorldModelConfig
from model.world_model.sampler import SamplerConfig, sample_next_frame
from training.world_model.data import WindowSampler


# -- the start of a run ---------------------------------------------------------------------------
def start(game: str, threads: int, seed: int | None = None) -> bool:
    """Check the game (an unknown one is an error on stderr: False), set torch's CPU threads
    (0 = torch's default) and, given a seed, seed torch and numpy (see `seed_all`)."""
    try:
        check_game(game)
    except UnknownGameError as e:
        print(f"error: {e}", file=sys.stderr)
        return False
    if threads:
        torch.set_num_threads(threads)
    if seed is not None:
        seed_all(seed)
    return True


def seed_all(seed: int) -> None:
    """Seed torch's and numpy's global generators."""
    torch.manual_seed(seed)
    np.random.seed(seed)


def holds_a_run(run_dir: Path, state_path: Path) -> bool:
    """True (and an error on stderr) if `run_dir` already holds a run's resume state."""
    if not state_path.with_suffix(".json").exists():
        return False
    print(
        f"error: {run_dir} already holds a run; pass --resume to continue it or pick another --run-dir",
        file=sys.stderr,
    )
    return True


def lr_at(step: int, lr: float, warmup: int) -> float:
    """Linear warm-up over `warmup` steps, then constant."""
    return lr * min(1.0, (step + 1) / max(1, warmup))


# -- the world model's steps ----------------------------------------------------------------------
class LossOf(torch.nn.Module):
    """Calls module.loss (or another of its losses, `method`) in forward, so DistributedDataParallel
    can wrap it."""

    def __init__(self, module: torch.nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, *args, method: str = "loss"):
        return getattr(self.module, method)(*args)


@torch.no_grad()
def dream_context(
    ema: WorldModel, obs: torch.Tensor, act: torch.Tensor, k: int, sampler: SamplerConfig
) -> torch.Tensor:
    """obs (B, L+K+1, C, H, W), act (B, L+K): replace frames L..L+K-1 by the model's own dream,
    each sampled from the window before it with the actions really taken. Returns a new obs."""
    L = obs.shape[1] - k - 1
    obs = obs.clone()
    for j in range(k):
        obs[:, L + j] = sample_next_frame(ema.denoiser, obs[:, j : j + L], act[:, j : j + L], sampler).float()
    return obs


class WorldModelSteps:
    """The world model being trained, its EMA copy (what snapshots hold), one AdamW optimiser for the
    denoiser and one for the reward/end model, and one optimisation step of either.

    `opts` is the run's options (training/options.WorldModelOptions, which train.py's Args and
    train.py --agent's LoopArgs extend): their lr, warmup
    (linear, in steps), weight_decay, grad_clip and ema_decay are used.
    `init_state` starts the model from given weights (the EMA copy starts equal to the model);
    `compile` torch.compiles the U-Net. After `load` (a resume) call `distribute` under torchrun:
    DistributedDataParallel takes rank 0's weights when it wraps."""

    def __init__(
        self,
        cfg: WorldModelConfig,
        device: torch.device,
        bf16: bool,
        opts: Any,
        init_state: dict[str, torch.Tensor] | None = None,
        compile: bool = False,
    ) -> None:
        self.device, self.bf16 = device, bf16
        self.lr, self.warmup, self.grad_clip, self.ema_decay = opts.lr, opts.warmup, opts.grad_clip, opts.ema_decay
        lr, weight_decay = opts.lr, opts.weight_decay
        self.model = prepare(WorldModel(cfg), device)
        if init_state is not None:
            self.model.load_state_dict(init_state)
        self.ema = prepare(WorldModel(cfg), device).requires_grad_(False)
        self.ema.load_state_dict(self.model.state_dict())
        if compile:
            self.model.denoiser.net = torch.compile(self.model.denoiser.net)
        self.opt_den = torch.optim.AdamW(self._denoiser_groups(opts), lr=lr, weight_decay=weight_decay)
        self.opt_re = torch.optim.AdamW(self.model.reward_end.parameters(), lr=lr, weight_decay=weight_decay)
        self.den: torch.nn.Module = LossOf(self.model.denoiser)
        self.rem: torch.nn.Module = LossOf(self.model.reward_end)
        self.ar_sampler = SamplerConfig()  # dreamed contexts: the sampler people play with
        self.teacher: WorldModel | None = None

    def _denoiser_groups(self, opts: Any) -> list[dict[str, Any]]:
        """The denoiser's parameters, the reward embedding of a reward-input net (UNetConfig.reward_input)
        in a group of its own at `opts.reward_input_lr` (`lr_scale` times the model's rate, kept through
        the warm-up): it starts at zero and only the few samples told a point say what it is for."""
        emb = self.model.denoiser.net.reward_emb
        if emb is None:
            return [{"params": list(self.model.denoiser.parameters())}]
        own = {id(p) for p in emb.parameters()}
        rest = [p for p in self.model.denoiser.parameters() if id(p) not in own]
        scale = getattr(opts, "reward_input_lr", opts.lr) / opts.lr
        return [{"params": rest}, {"params": list(emb.parameters()), "lr_scale": scale}]

    def distil_from(self, teacher: WorldModel) -> None:
        """Make the denoiser steps distillation steps: the model (the student, whose sampler is one
        Euler step) learns to dream in one step what `teacher` dreams with its own sampler from the
        same noise and context (model/world_model/denoiser.Denoiser.distill_loss); its dreamed contexts are
        its own one-step dreams, the ones it will see in play."""
        if self.model.cfg.sampler.num_steps != 1:
            raise ValueError(f"a distilled student samples in 1 step, not {self.model.cfg.sampler.num_steps}")
        if self.model.cfg.denoiser.unet.reward_input != teacher.cfg.denoiser.unet.reward_input:
            raise ValueError("a student takes the reward input exactly when its teacher does (--reward-input)")
        self.teacher = teacher.eval().requires_grad_(False)
        self.ar_sampler = self.model.cfg.sampler

    def state(self) -> dict[str, Any]:
        """The resume state's world-model part: model, ema, opt_den, opt_re."""
        return {
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "opt_den": self.opt_den.state_dict(),
            "opt_re": self.opt_re.state_dict(),
        }

    def load(self, tree: dict[str, Any], source: str) -> None:
        """Take `state()`'s entries from a resume state (CheckpointError, KeyError or ValueError if
        they do not fit; `source` names the file in the message)."""
        checkpoint.load_state_dict_strict(self.model, tree["model"], source)
        checkpoint.load_state_dict_strict(self.ema, tree["ema"], source)
        self.opt_den.load_state_dict(tree["opt_den"])
        self.opt_re.load_state_dict(tree["opt_re"])

    def distribute(self) -> None:
        """Wrap both losses in DistributedDataParallel: gradients are all-reduced inside backward()."""
        self.den = torch.nn.parallel.DistributedDataParallel(self.den)
        self.rem = torch.nn.parallel.DistributedDataParallel(self.rem)

    def set_lr(self, step: int) -> float:
        """Both optimisers at the warm-up schedule's rate for `step`; returns it."""
        lr = lr_at(step, self.lr, self.warmup)
        for g in self.opt_den.param_groups + self.opt_re.param_groups:
            g["lr"] = lr * g.get("lr_scale", 1.0)
        return lr

    def denoiser_step(
        self, sampler: WindowSampler, batch_size: int, ar_frames: int = 0, ar_fraction: float = 0.0
    ) -> dict[str, float]:
        """Predict obs[t+1] from obs[t-L+1..t] and actions[t-L+1..t] on one batch of windows.

        With `ar_frames` K > 0 the window is K longer and the first round(ar_fraction * batch)
        samples see the last K context frames as the EMA model dreamed them, so the denoiser learns
        to carry the scene through its own errors. Returns the `denoiser/train/*` metrics."""
        L, K, device = self.model.cfg.context_frames, ar_frames, self.device
        b = sampler.sample(batch_size, L + K, device)
        obs, dreamed = b.obs, None
        if K:
            n_ar = round(ar_fraction * batch_size)
            dreamed = torch.arange(batch_size, device=device) < n_ar
            if n_ar:
                self.ema.eval()
                with autocast(device, self.bf16):
                    dream = dream_context(self.ema, obs[:n_ar], b.actions[:n_ar], K, self.ar_sampler)
                    obs = torch.cat([dream, obs[n_ar:]])
        obs_ctx, act_ctx, target = obs[:, K:-1], b.actions[:, K:], obs[:, -1]
        # what a reward-input net is told of the step to the target frame (None for others)
        told = self.model.denoiser.reward_inputs(b.rewards[:, -1], b.weights)
        if self.teacher is not None:  # the teacher's dream from the same noise, not the real frame
            noise = torch.randn_like(target)
            with autocast(device, self.bf16):
                target = sample_next_frame(
                    self.teacher.denoiser, obs_ctx, act_ctx, self.teacher.cfg.sampler, noise=noise, reward=told
                ).float()
        target = target.contiguous(memory_format=torch.channels_last)
        with autocast(device, self.bf16):
            if self.teacher is None:
                loss, m = self.den(obs_ctx, act_ctx, target, dreamed, told)
            else:
                sigma_max = self.model.cfg.sampler.sigma_max
                loss, m = self.den(obs_ctx, act_ctx, noise, target, sigma_max, told, method="distill_loss")
        self.opt_den.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(self.model.denoiser.parameters(), self.grad_clip)
        self.opt_den.step()
        logs = {
            "denoiser/train/loss": loss.item(),
            "denoiser/train/mse": m["mse"],
            "denoiser/train/grad_norm": float(gnorm),
            "denoiser/train/dreamed_samples": 0 if dreamed is None else int(dreamed.sum()),  # on dreamed contexts
        }
        for k in ("motion_fraction", "motion_predicted_only"):
            if k in m:
                logs[f"denoiser/train/{k}"] = m[k]
        return logs

    def reward_end_step(self, sampler: WindowSampler, batch_size: int, seq: int) -> dict[str, float]:
        """The reward/end model on one batch of `seq`-transition sequences; returns `reward_end/train/*`."""
        rb = sampler.sample(batch_size, seq, self.device)
        with autocast(self.device, self.bf16):
            loss, rm = self.rem(rb.obs[:, :-1], rb.obs[:, 1:], rb.actions, rb.rewards, rb.ends)
        self.opt_re.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.reward_end.parameters(), self.grad_clip)
        self.opt_re.step()
        return {f"reward_end/train/{k}": v for k, v in rm.items()}

    @torch.no_grad()
    def update_ema(self, part: str | None = None) -> None:
        """Move the EMA weights towards the model's: all of them, or one part ('denoiser')."""
        ema, model = (self.ema, self.model) if part is None else (getattr(self.ema, part), getattr(self.model, part))
        for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
            pe.lerp_(pm, 1 - self.ema_decay)


# -- the loop -------------------------------------------------------------------------------------
class RunLog:
    """A run's `args.json`, its `metrics.jsonl` (appended: one JSON line per record, its index, the
    time, then the values) and, with `tensorboard`, TensorBoard events under `tb/`."""

    def __init__(self, run_dir: Path, args_record: dict[str, Any], tensorboard: bool) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(run_dir / "tb"))
        (run_dir / "args.json").write_text(json.dumps(args_record, indent=1))
        self.file = open(run_dir / "metrics.jsonl", "a")

    def write(self, values: dict[str, float], step: int, index: dict[str, Any], extra: dict[str, Any]) -> None:
        if self.writer is not None:
            for k, v in values.items():
                self.writer.add_scalar(k, v, step)
        self.file.write(json.dumps({**index, "time": time.time(), **extra, **values}) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()
        if self.writer is not None:
            self.writer.close()


class TrainingLoop:
    """Rounds `done`..`total` of the run in `run_dir` (its resume state is `run_dir/state`; `unit`
    'step' or 'epoch': what a round is called in the metrics, the messages and `perf/sec_per_<unit>`).

    `save()` writes the resume state and the snapshots; the loop calls it every `ckpt_every` rounds,
    after the last, and after a stop. Records go to metrics.jsonl every `log_every` rounds as
    {unit: done, "time", **counters(), **values}. Only the main process (`main_proc`, rank 0 under
    torchrun) logs and shows a bar; every process runs `save` (which saves on rank 0 only)."""

    def __init__(
        self,
        run_dir: Path,
        unit: str,
        done: int,
        total: int,
        save: Callable[[], None],
        *,
        args_record: dict[str, Any],
        tensorboard: bool = True,
        log_every: int = 1,
        ckpt_every: int = 1,
        counters: Callable[[], dict[str, Any]] | None = None,
        main_proc: bool = True,
        progress: bool = True,
        bar: dict[str, Any] | None = None,
    ) -> None:
        self.run_dir, self.unit, self.done, self.total = run_dir, unit, done, total
        self.state_path = run_dir / "state"
        self.save, self.log_every, self.ckpt_every = save, log_every, ckpt_every
        self.counters = counters or dict
        self.main_proc, self.progress, self.bar_kwargs = main_proc, progress, bar or {}
        self.runlog = RunLog(run_dir, args_record, tensorboard) if main_proc else None
        self.stop = False

    def log(self, values: dict[str, float]) -> None:
        """One record at the current round (main process only)."""
        if self.runlog is not None:
            self.runlog.write(values, self.done, {self.unit: self.done}, self.counters())

    def _on_signal(self, signum, frame) -> None:  # Ctrl-C / SIGTERM: end the round, save, exit
        self.stop = True

    def run(
        self,
        one_round: Callable[[], dict[str, float]],
        postfix: Callable[[dict[str, float]], dict[str, str]],
        after: Callable[[], None] | None = None,
    ) -> None:
        """Run `one_round` (it returns the round's metrics; a long one may look at `self.stop` and end
        early) until `total` rounds are done or a signal came. `postfix` picks what the bar shows of a
        logged record; `after` runs after each round's checkpoint (e.g. an evaluation)."""
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        bar = tqdm(
            total=self.total, initial=self.done, disable=not (self.main_proc and self.progress), **self.bar_kwargs
        )
        t_last = time.time()
        try:
            while self.done < self.total and not self.stop:
                logs = one_round()
                self.done += 1
                bar.update(1)
                if self.main_proc and (self.done % self.log_every == 0 or self.done == self.total):
                    now = time.time()
                    logs[f"perf/sec_per_{self.unit}"] = (now - t_last) / self.log_every
                    t_last = now
                    self.log(logs)
                    bar.set_postfix(postfix(logs))
                if self.done % self.ckpt_every == 0 or self.done == self.total:
                    self.save()
                if after is not None:
                    after()
            bar.close()
            if self.stop:
                self.save()
                if self.main_proc:
                    print(
                        f"stopped at {self.unit} {self.done}; checkpoint saved to {self.state_path}; "
                        "continue with --resume"
                    )
        finally:
            if self.runlog is not None:
                self.runlog.close()
            for s, h in old.items():
                signal.signal(s, h)
