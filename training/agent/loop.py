"""Train an actor-critic inside the dream, and DIAMOND's full loop (docs/design.md §2, issue 6).

    # the full loop, epoch after epoch: collect with the agent -> denoiser -> reward/end -> agent
    python training/train.py --agent                        # CPU presets, Breakout
    python training/train.py --agent --resume               # continue after a stop or a kill
    python training/train.py --agent --preset paper --agent-preset paper --dream-steps 3   # the paper (GPU)

    # the agent alone in a frozen world model (no collection, no world-model training)
    python training/train.py --agent --world-model runs/Breakout/snapshot --data data/Breakout \\
        --collect-steps 0 --denoiser-steps 0 --re-steps 0 --epochs 20 --agent-steps 50

Imagination: real 4-frame contexts (with their 3 actions) from the episode store; the world
model's reward/end LSTM and the agent's LSTM are burnt in on them; then `horizon` dreamed steps
(one `Dreams` batch, model/world_model/core.py) with actions sampled from the policy, rewards and ends
sampled from the reward/end model's heads (as DIAMOND imagines). Steps after a dream has ended are
masked out of the loss.

Writes to --run-dir: `agent.{safetensors,json}` (the agent snapshot), `snapshot.{safetensors,json}`
(EMA world model), `state.{safetensors,json}` (full resume state), `metrics.jsonl`.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from games.envs import action_meanings, make_env
from games.episode_store import Episode, EpisodeStore, remove_stale_temp_files
from model import checkpoint
from model.agent import AGENT_PRESETS, ActorCritic, ActorCriticConfig, AgentPolicy, agent_preset
from model.agent.actor_critic import ActorCriticLossConfig, actor_critic_loss, rollout_targets
from model.checkpoint import CheckpointError
from model.device import pick_device, use_bf16
from model.world_model import Dreams, WorldModel, WorldModelConfig, preset_config
from model.world_model.sampler import SamplerConfig
from training.loop import TrainingLoop, WorldModelSteps, holds_a_run, start
from training.options import WorldModelOptions, flag, parse_run_args, with_loss_settings
from training.world_model.data import WindowSampler


# -- imagination ---------------------------------------------------------------------------------
@dataclass
class Rollout:
    logits: torch.Tensor  # (B, H, A), as the agent had them when it acted (no gradients)
    values: torch.Tensor  # (B, H+1)
    actions: torch.Tensor  # (B, H)
    rewards: torch.Tensor  # (B, H)
    ends: torch.Tensor  # (B, H) bool
    frames: torch.Tensor  # (B, L-1 + H+1, C, H, W): burn-in context, then x_0..x_H as the agent saw them


def quantize(x: torch.Tensor) -> torch.Tensor:
    """What the agent sees of a dreamed frame: rounded to uint8 levels, as real frames are."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round() / 127.5 - 1


@torch.no_grad()
def imagine(
    world_model: WorldModel,
    agent: ActorCritic,
    obs_ctx: torch.Tensor,
    act_prev: torch.Tensor,
    horizon: int,
    sampler: SamplerConfig,
    generator: torch.Generator | None = None,
) -> Rollout:
    """Dream `horizon` steps from real contexts, acting with the agent. No gradients: `replay` runs
    the agent again over `Rollout.frames` for the update.

    obs_ctx: (B, L, C, H, W) in [-1, 1]; act_prev: (B, L-1) actions between the context frames.
    """
    b = obs_ctx.shape[0]
    dreams = Dreams(world_model, sampler, generator=generator)
    dreams.reset_tensors(obs_ctx, act_prev)  # burns the reward/end LSTM in on the context transitions
    hidden = agent.burn_in(obs_ctx[:, :-1])  # agent LSTM over all but the last context frame
    x = obs_ctx[:, -1]
    seen = [obs_ctx[:, t] for t in range(obs_ctx.shape[1])]
    logits, values, actions, rewards, ends = [], [], [], [], []
    for _ in range(horizon):
        lg, v, hidden = agent(x, hidden)
        a = torch.distributions.Categorical(logits=lg.float()).sample()
        out = dreams.advance(a)
        x = quantize(out.next_obs)
        seen.append(x)
        logits.append(lg)
        values.append(v)
        actions.append(a)
        rewards.append(out.reward.float())  # sampled from the heads, as DIAMOND imagines
        ends.append(out.end)
    values.append(agent(x, hidden)[1])  # V(x_H) for the bootstrap
    stack = lambda xs: torch.stack(xs, dim=1)  # noqa: E731  H x (B, ...) -> (B, H, ...)
    out = Rollout(stack(logits), stack(values), stack(actions), stack(rewards), stack(ends), stack(seen))
    assert out.actions.shape == (b, horizon)
    return out


def replay(agent: ActorCritic, frames: torch.Tensor, horizon: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The agent over a dream's frames again, with gradients: logits (B, H, A), values (B, H+1).

    The same computation as in `imagine` (burn-in on all but the last context frame, then one step
    per frame), so with unchanged weights it gives the same numbers.
    """
    burn = frames.shape[1] - horizon - 1
    hidden = agent.burn_in(frames[:, :burn])
    logits, values = [], []
    for t in range(burn, frames.shape[1]):
        lg, v, hidden = agent(frames[:, t], hidden)
        logits.append(lg)
        values.append(v)
    return torch.stack(logits[:-1], 1), torch.stack(values, 1)


def agent_update(
    world_model: WorldModel,
    agent: ActorCritic,
    opt: torch.optim.Optimizer,
    sampler: WindowSampler,
    batch_size: int,
    loss_cfg: ActorCriticLossConfig,
    dream_sampler: SamplerConfig,
    grad_clip: float,
    generator: torch.Generator | None = None,
    passes: int = 1,
) -> dict[str, float]:
    """Actor-critic steps on `batch_size` imagined rollouts from real contexts: `passes` optimiser
    steps on the same dreams (1 = DIAMOND; more = the clipped surrogate after the first pass).
    Metrics are the first pass's (the dream as the agent played it) plus the last pass's clip_frac."""
    L = world_model.cfg.context_frames
    ctx = sampler.sample(batch_size, L - 1, world_model.device)  # obs (B, L, C, H, W), actions (B, L-1)
    roll = imagine(world_model, agent, ctx.obs, ctx.actions, loss_cfg.horizon, dream_sampler, generator)
    targets = rollout_targets(roll.logits, roll.values, roll.actions, roll.rewards, roll.ends, loss_cfg)
    first: dict[str, float] = {}
    for k in range(passes):
        logits, values = replay(agent, roll.frames, loss_cfg.horizon)
        loss, m = actor_critic_loss(logits, values, roll.actions, roll.rewards, roll.ends, loss_cfg, targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        m["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(agent.parameters(), grad_clip))
        opt.step()
        if k == 0:
            first = m
    return {**first, "clip_frac": m["clip_frac"]}


# -- collection with the agent ------------------------------------------------------------------
class Collector:
    """Plays the real game with the current agent (epsilon-random), a few steps per epoch.

    The episode in progress carries over from one epoch to the next; finished episodes go to the
    store. `partial()` gives the unfinished one, so training can use its steps at once.
    """

    def __init__(self, game: str, store: EpisodeStore, epsilon: float, seed: int, max_episode_steps: int) -> None:
        self.game, self.store, self.epsilon = game, store, epsilon
        self.env = make_env(game)
        self.seed, self.max_episode_steps = seed, max_episode_steps
        self.episodes = 0
        self.returns: list[float] = []
        self.buf: dict[str, list] | None = None

    def _reset(self, policy: AgentPolicy) -> None:
        obs, info = self.env.reset(seed=self.seed + self.episodes)
        self.buf = {"obs": [obs], "actions": [], "rewards": [], "terms": [], "lost": []}
        self.lives = info.get("lives", 0)
        policy.reset()

    def _episode(self) -> Episode:
        b = self.buf
        return Episode(
            obs=np.stack(b["obs"]),
            actions=np.array(b["actions"], dtype=np.int64),
            rewards=np.array(b["rewards"], dtype=np.float32),
            terminated=np.array(b["terms"], dtype=bool),
            life_lost=np.array(b["lost"], dtype=bool),
            meta={
                "game": self.game,
                "policy": "agent",
                "epsilon": self.epsilon,
                "seed": self.seed + self.episodes,
                "source": "agent_loop",
            },
        )

    def collect(self, policy: AgentPolicy, steps: int) -> list[Episode]:
        """Play `steps` steps; returns the episodes that finished (already written to the store)."""
        policy.epsilon = self.epsilon
        done: list[Episode] = []
        if self.buf is None:
            self._reset(policy)
        for _ in range(steps):
            a, _, _ = policy.act(self.buf["obs"][-1])
            obs, r, term, trunc, info = self.env.step(a)
            b = self.buf
            b["obs"].append(obs)
            b["actions"].append(a)
            b["rewards"].append(float(r))
            b["terms"].append(bool(term))
            b["lost"].append(info.get("lives", 0) < self.lives)
            self.lives = info.get("lives", 0)
            if term or trunc or len(b["actions"]) >= self.max_episode_steps:
                ep = self._episode()
                self.store.add(ep)
                done.append(ep)
                self.returns.append(float(ep.rewards.sum()))
                self.episodes += 1
                self._reset(policy)
        return done

    def partial(self) -> Episode | None:
        return self._episode() if self.buf is not None and self.buf["actions"] else None

    def close(self) -> None:
        self.env.close()


# -- the loop -----------------------------------------------------------------------------------
@dataclass
class LoopArgs(WorldModelOptions):
    """Options of `train.py --agent`: the shared world-model settings (training/options.py) and the
    loop's own. Defaults: DIAMOND's Atari 100k loop with CPU-sized models."""

    lr: float = 1e-4
    agent_preset: str = "cpu"
    """Actor-critic size: cpu (LSTM 256), paper (LSTM 512) or tiny."""
    agent_frame_diff: bool = False
    """The actor-critic also reads the difference to the previous frame (a new run only; a resumed
    run keeps its own)."""
    world_model: Path | None = None
    """Start from this world-model snapshot (path without suffix) instead of a fresh one."""
    epochs: int = 1000
    """Paper (Atari 100k): 1,000 epochs."""
    collect_steps: int = 100
    """Real steps collected per epoch with the agent (0 = none: train on --data only)."""
    collect_epsilon: float = 0.01
    """Random-action probability when collecting."""
    max_episode_steps: int = 2500
    """Cut a collected episode after this many steps."""
    denoiser_steps: int = 400
    """Denoiser updates per epoch."""
    re_steps: int = 400
    """Reward/end model updates per epoch."""
    agent_steps: int = 400
    """Actor-critic updates (batches of imagined rollouts) per epoch."""
    agent_batch_size: int = 32
    """Imagined rollouts per actor-critic update (all dreamed in one batch)."""
    agent_lr: float = 1e-4
    """Actor-critic learning rate (AdamW, no weight decay)."""
    agent_passes: int = 1
    """Optimiser steps per batch of dreams (1 = DIAMOND). A dream costs ~25x an update on a 2-core
    CPU; more passes learn more from each, with PPO's clipped ratio keeping the policy near the one
    that dreamed (--ppo-clip)."""
    ppo_clip: float = 0.2
    """Clip of the policy ratio (PPO) when --agent-passes > 1."""
    agent_grad_clip: float = 100.0
    """Clip of the actor-critic's gradient norm."""
    horizon: int = 15
    """Steps of each imagined rollout."""
    gamma: float = 0.985
    """Discount."""
    lam: float = 0.95
    """lambda of the lambda-returns."""
    entropy_weight: float = 0.001
    """Weight of the policy's entropy bonus."""
    dream_steps: int = 3
    """Denoising steps per dreamed frame in imagination (the paper's 3). Fewer are cheaper but lose
    the ball: with 1 the shipped Breakout dream shows half the life losses (docs/agent.md)."""
    max_episodes: int = 0
    """Use only the last N stored episodes (0 = all)."""
    ckpt_every: int = 1
    """Save snapshots and the resume state every N epochs."""

    def default_run_dir(self) -> Path:
        return Path("runs") / f"{self.game}-agent"

    def loss_config(self) -> ActorCriticLossConfig:
        """The imagination settings as the actor-critic's loss takes them (ValueError if out of range)."""
        return ActorCriticLossConfig(self.horizon, self.gamma, self.lam, self.entropy_weight, self.ppo_clip)

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("epochs", "agent_batch_size", "agent_passes", "horizon", "ckpt_every", "max_episode_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{flag(name)} must be >= 1, got {getattr(self, name)}")
        for name in ("collect_steps", "denoiser_steps", "re_steps", "agent_steps", "max_episodes"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{flag(name)} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.collect_epsilon <= 1:
            raise ValueError(f"--collect-epsilon must be in [0, 1], got {self.collect_epsilon}")
        if self.agent_preset not in AGENT_PRESETS:
            raise ValueError(f"--agent-preset must be one of {', '.join(AGENT_PRESETS)}, got {self.agent_preset!r}")
        self.loss_config()
        SamplerConfig(num_steps=self.dream_steps)


def parse_loop_args(argv: list[str] | None = None) -> LoopArgs:
    return parse_run_args(
        LoopArgs, argv, choices={"agent_preset": AGENT_PRESETS}, prog="train.py --agent", description=__doc__
    )


def run_loop(argv: list[str] | None = None) -> int:
    """DIAMOND's training loop: every epoch collect -> denoiser -> reward/end -> actor-critic.

    One epoch is one round of training/loop.TrainingLoop, the loop train.py runs its steps in."""
    a = parse_loop_args(argv)
    if not start(a.game, a.threads, a.seed):
        return 2
    device = pick_device(a.device)
    run_dir = a.run_path
    data_dir = a.data or Path("data") / f"{a.game}-loop"
    state_path, snap_path, agent_path = run_dir / "state", run_dir / "snapshot", run_dir / "agent"

    # -- models and optimisers ---------------------------------------------------------------------
    names = action_meanings(a.game)
    resume_tree = None
    init_wm: dict[str, torch.Tensor] | None = None
    try:
        if a.resume:
            resume_tree, meta = checkpoint.load(state_path)
            if meta.get("kind") != "agent_loop_state":
                raise CheckpointError(f"{state_path} is not an agent-loop state (kind={meta.get('kind')!r})")
            cfg = WorldModelConfig(**meta["config"])
            ac_cfg = ActorCriticConfig(**meta["agent_config"])
        else:
            if holds_a_run(run_dir, state_path):
                return 2
            if a.world_model is not None:
                wm = WorldModel.from_snapshot(a.world_model)
                cfg, init_wm = wm.cfg, wm.state_dict()
            else:
                cfg = preset_config(a.preset, a.game, names)
            ac_cfg = agent_preset(a.agent_preset, a.game, names)
            ac_cfg.frame_diff = a.agent_frame_diff
    except (CheckpointError, TypeError, ValueError, KeyError) as e:
        print(f"error: cannot start: {e}", file=sys.stderr)
        return 2
    try:
        cfg = with_loss_settings(cfg, a, resumed=resume_tree is not None)
    except ValueError as e:
        print(f"error: {e} ({run_dir})", file=sys.stderr)
        return 2
    if cfg.game != a.game or cfg.action_meanings != names:
        print(f"error: the world model is for {cfg.game} {cfg.action_meanings}, not {a.game} {names}", file=sys.stderr)
        return 2

    bf16 = use_bf16(device, a.precision)
    steps = WorldModelSteps(cfg, device, bf16, a, init_state=init_wm)
    model, ema = steps.model, steps.ema
    model.bf16 = bf16  # the agent dreams with it
    agent = ActorCritic(ac_cfg).to(device)
    opt_ac = torch.optim.AdamW(agent.parameters(), lr=a.agent_lr, weight_decay=0.0)
    loss_cfg = a.loss_config()
    dream_sampler = model.sampler_config(num_steps=a.dream_steps)
    epoch, wm_step, counters = 0, 0, {"agent_steps": 0, "real_steps": 0}
    if resume_tree is not None:
        try:
            steps.load(resume_tree, str(state_path))
            checkpoint.load_state_dict_strict(agent, resume_tree["agent"], str(state_path))
            opt_ac.load_state_dict(resume_tree["opt_ac"])
            for g in opt_ac.param_groups:  # the optimiser state carries the old run's lr: --agent-lr wins
                g["lr"] = a.agent_lr
        except (CheckpointError, ValueError, KeyError) as e:
            print(f"error: cannot resume: {e}", file=sys.stderr)
            return 2
        epoch, wm_step = int(resume_tree["epoch"]), int(resume_tree["wm_step"])
        counters = {k: int(v) for k, v in resume_tree["counters"].items()}
        torch.set_rng_state(resume_tree["rng"])
        print(f"resumed {run_dir} at epoch {epoch}")

    # -- data ------------------------------------------------------------------------------------
    store = EpisodeStore(data_dir)
    if a.collect_steps and data_dir.is_dir():
        remove_stale_temp_files(data_dir)
    episodes, errors = store.load_all(a.game) if data_dir.is_dir() else ([], [])
    for e in errors:
        print(f"warning: skipping {e}", file=sys.stderr)
    if a.max_episodes:
        episodes = episodes[-a.max_episodes :]
    if not episodes and not a.collect_steps:
        print(f"error: no readable {a.game} episodes in {data_dir} and --collect-steps 0", file=sys.stderr)
        return 2
    collector = None
    if a.collect_steps:
        collector = Collector(
            a.game,
            store,
            a.collect_epsilon,
            seed=a.seed * 1_000_003 + 7919 * epoch,
            max_episode_steps=a.max_episode_steps,
        )
    policy = AgentPolicy(agent, epsilon=a.collect_epsilon, seed=a.seed + epoch)
    gen = torch.Generator(device=device).manual_seed(a.seed + 17 * epoch)

    def save_all() -> None:
        extra = {
            "epoch": loop.done,
            "agent_steps": counters["agent_steps"],
            "real_steps": counters["real_steps"],
            "horizon": a.horizon,
            "dream_steps": a.dream_steps,
        }
        agent.save_snapshot(agent_path, extra)
        ema.save_snapshot(snap_path, {"step": wm_step, "train_steps": wm_step, "preset": cfg.preset})
        meta = {
            "kind": "agent_loop_state",
            "config": cfg.to_dict(),
            "agent_config": ac_cfg.to_dict(),
            "args": {k: str(v) for k, v in asdict(a).items()},
        }
        tree = {
            **steps.state(),  # model, ema, opt_den, opt_re
            "agent": agent.state_dict(),
            "opt_ac": opt_ac.state_dict(),
            "epoch": loop.done,
            "wm_step": wm_step,
            "counters": dict(counters),
            "rng": torch.get_rng_state(),
        }
        checkpoint.save(state_path, tree, meta)

    loop = TrainingLoop(
        run_dir,
        "epoch",
        epoch,
        a.epochs,
        save_all,
        args_record={k: str(v) for k, v in asdict(a).items()},
        tensorboard=False,
        ckpt_every=a.ckpt_every,
        counters=lambda: counters,
        progress=a.progress,
        bar={"desc": f"loop {a.game}", "unit": "epoch"},
    )

    def one_epoch() -> dict[str, float]:
        nonlocal wm_step
        epoch = loop.done
        t0 = time.time()
        logs: dict[str, float] = {}

        # 1. Collect real steps with the current agent (epsilon-random).
        if collector is not None:
            agent.eval()
            finished = collector.collect(policy, a.collect_steps)
            episodes.extend(finished)
            counters["real_steps"] += a.collect_steps
            if finished:
                logs["collect/return"] = float(np.mean([float(e.rewards.sum()) for e in finished]))
        partial = collector.partial() if collector is not None else None
        pool = episodes + ([partial] if partial is not None else [])
        sampler = WindowSampler(pool, seed=[a.seed, epoch])
        t_collect = time.time()

        # 2. Denoiser (its EMA kept for the snapshot), 3. reward/end model (on the real data so far).
        model.train()
        for i in range(a.denoiser_steps + a.re_steps):
            if loop.stop:
                break
            steps.set_lr(wm_step)
            if i < a.denoiser_steps:
                logs.update(steps.denoiser_step(sampler, a.batch_size, a.ar_frames, a.ar_fraction))
                steps.update_ema("denoiser")
                wm_step += 1
            else:
                logs.update(steps.reward_end_step(sampler, a.batch_size, a.re_seq))
                ema.reward_end.load_state_dict(model.reward_end.state_dict())
        t_wm = time.time()

        # 4. Actor-critic in imagination (the world model frozen meanwhile).
        model.eval()
        agent.train()
        ac_logs: list[dict[str, float]] = []
        for _ in tqdm(range(a.agent_steps), desc=f"epoch {epoch + 1} agent", leave=False, disable=not a.progress):
            if loop.stop:
                break
            ac_logs.append(
                agent_update(
                    model,
                    agent,
                    opt_ac,
                    sampler,
                    a.agent_batch_size,
                    loss_cfg,
                    dream_sampler,
                    a.agent_grad_clip,
                    gen,
                    a.agent_passes,
                )
            )
            counters["agent_steps"] += 1
        for k in ac_logs[0] if ac_logs else []:
            logs[f"agent/train/{k}"] = float(np.mean([m[k] for m in ac_logs]))
        t_ac = time.time()
        logs.update(
            {
                "perf/sec_collect": t_collect - t0,
                "perf/sec_world_model": t_wm - t_collect,
                "perf/sec_agent": t_ac - t_wm,
            }
        )
        return logs

    def postfix(logs: dict[str, float]) -> dict[str, str]:
        shown = ("agent/train/return", "agent/train/entropy", "denoiser/train/loss", "collect/return")
        return {k.rsplit("/", 1)[1]: f"{v:.3f}" for k, v in logs.items() if k in shown}

    try:
        loop.run(one_epoch, postfix)
    finally:
        if collector is not None:
            collector.close()
    print(f"agent snapshot: {agent_path}.safetensors (epoch {loop.done}, {counters['agent_steps']} agent steps)")
    return 0


def describe(path: str | Path) -> dict[str, Any]:
    """Config and training metadata of an agent snapshot."""
    return dict(ActorCritic.from_snapshot(path).meta)
