"""Train a DIAMOND world model (denoiser + reward/end model) on real Atari play.

    python training/train.py                         # CPU preset, Breakout, collects data if none
    python training/train.py --resume                # continue a stopped run with its recorded settings
    python training/train.py --preset paper         # the paper's U-Net (for a GPU)
    torchrun --nproc_per_node=2 training/train.py    # data-parallel (gloo on CPU, nccl on CUDA)
    python training/train.py --agent                 # full DIAMOND loop with an actor-critic (training/agent/loop.py)

Writes to --run-dir: `snapshot.{safetensors,json}` (EMA weights + config, for play and
evaluation), `state.{safetensors,json}` (full resume state), `metrics.jsonl`, TensorBoard
events under `tb/`, and `eval/` (fidelity JSON + real-over-dream strips).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from games.envs import action_meanings
from games.episode_store import EpisodeStore, remove_stale_temp_files
from games.experts import POLICY_KINDS, make_policy
from model import checkpoint
from model.checkpoint import CheckpointError
from model.device import pick_device, use_bf16
from model.world_model import WorldModel, WorldModelConfig, preset_config, transfer_to_game
from model.world_model.reward_end import RewardEndConfig
from model.world_model.sampler import SamplerConfig
from model.world_model.unet import UNetConfig, add_reward_input, grow_context
from training.loop import TrainingLoop, WorldModelSteps, holds_a_run, seed_all, start
from training.options import WorldModelOptions, flag, parse_run_args, with_loss_settings
from training.world_model.data import WindowSampler, field_weights, paddle_weights, reward_weights
from training.world_model.measures import BALL_FIELD
from training.world_model.recording import collect


@dataclass
class Args(WorldModelOptions):
    """train.py's options: the shared world-model settings (training/options.py) and these."""

    heldout: Path | None = None
    """Held-out episode store for evaluation (default data/<game>-heldout)."""
    collect_steps: int = 60_000
    """Agent steps to collect when the training store is empty."""
    heldout_steps: int = 6_000
    """Agent steps to collect when the held-out store is empty (and --eval-every > 0)."""
    policy: str = "mixed"
    """Collection policy: random, expert, mixed (epsilon-mixed scripted expert) or rules
    (games/experts.rule_showing). A game without a scripted expert (games/experts.EXPERTS)
    collects with random."""
    epsilon: float = 0.25
    """Random-action probability of the mixed policy."""
    steps: int = 20_000
    """Total denoiser optimisation steps (the run stops there; --resume continues up to it)."""
    re_every: int = 1
    """Train the reward/end model every N denoiser steps."""
    ckpt_every: int = 250
    """Save the snapshot and the resume state every N steps."""
    eval_every: int = 1000
    """Run the fidelity evaluation every N steps (0 = never)."""
    eval_starts: int = 8
    """Held-out starts of that evaluation."""
    log_every: int = 25
    """Write a metrics record every N steps."""
    compile: bool = False
    """torch.compile the U-Net (helps on CUDA; slower to start)."""
    init_from: Path | None = None
    """Start from a world-model snapshot (its config and EMA weights; fresh optimiser), e.g.
    checkpoints/Breakout.safetensors to fine-tune the shipped model on new data. Another game's
    snapshot starts a new game from its weights (all but the action embeddings, whose rows follow
    the action names: model/world_model/core.transfer_to_game)."""
    context_frames: int = 0
    """Past frames the world model sees (0 = the preset's or the --init-from snapshot's, 4). More
    than the snapshot's grows it without changing what it computes (model/world_model/unet.grow_context: the
    older frames enter through zero-initialised input channels; the embedded actions stay the last
    4), so training can teach it a game's hidden timers, e.g. Breakout's 8-step pause before a
    lost life is counted, which 4 frames cannot time."""
    empty_field_weight: float = 1.0
    """Draw training windows whose last context frame has no ball in the open field this many
    times as often (games with a ball field only: Breakout). Depends on the context alone, so it
    leaves the optimum unbiased."""
    serve_weight: float = 1.0
    """On top of --empty-field-weight: windows whose last action is FIRE on an empty field (the
    serve) are drawn this many times as often."""
    pause_fire_weight: float = 1.0
    """Multiply the weight of FIRE on an empty field in the pause before a lost life is counted
    (the game ignores it; 0 = never draw them): the dream then serves on FIRE from a waiting
    field instead of learning that FIRE there may do nothing (see training/world_model/data.field_weights)."""
    life_loss_weight: float = 1.0
    """Draw windows whose target is the frame where a life is counted lost (the life counter drops)
    this many times as often (any game). The drop is one frame per lost life, a fraction of a percent
    of the data; a model with a context long enough to see the ball leave (--context-frames) learns
    when to draw it faster when it sees it more often. Depends on which window is drawn, not on what
    the model is asked to predict in it."""
    paddle_weight: float = 1.0
    """Draw windows whose last context frame shows the ball at the paddle (or just dipped below the
    open field into the paddle's rows) this many times as often (games with a ball field only:
    Breakout; training/world_model/data.paddle_weights). Context only, like --empty-field-weight."""
    reward_weight: float = 1.0
    """Draw windows whose last transition scores a point (a nonzero reward), or is the step after
    one, this many times as often (any game; training/world_model/data.reward_weights): the frame
    that shows a point (the ball gone, the score digits changed) is rare in play and is what a dream
    most often leaves out. The denoiser's windows only; the reward/end model draws uniformly. With
    --reward-input the extra windows are told their reward, not left "unknown" (a window drawn w
    times as often is told with probability 1 - (1 - q) / w), so the unknown dream keeps the data's
    prior of points (model/world_model/denoiser.Denoiser.reward_inputs)."""
    distill_from: Path | None = None
    """Distil a world-model snapshot's sampler (e.g. 3 Euler steps with action guidance) into one
    Euler step, the serving path's biggest saving: the student starts from the snapshot's weights
    (or --init-from's), samples in 1 step without guidance, and learns on real (and, with
    --ar-frames, its own dreamed) contexts to dream what the teacher dreams from the same noise
    (model/world_model/denoiser.Denoiser.distill_loss). The reward/end model is the teacher's, untrained."""
    student_sigma_max: float = 0.0
    """The student's one noise level (its sampler's sigma_max; 0 = the teacher's, 5). A one-step
    frame is c_skip x + c_out F(x) at x = sigma_max * eps, and the skip term c_skip x is noise of std
    sigma_data^2 sigma_max / (sigma_max^2 + sigma_data^2) that the network must cancel exactly: 0.05
    (6 grey levels) at sigma 5, 0.003 at 80. With --distill-from only. Pong's student at 80 was worse
    than at 5 (docs/distillation.md): what is left to clean is the network's own output."""
    reward_input: bool = False
    """Give the denoiser the step's reward as an input (model/world_model/unet.UNetConfig.reward_input):
    a fresh or --init-from model gets a zero-initialised reward embedding (it computes what it did
    until training moves it); half of each batch is told its step's reward sign, half "unknown". A
    dream asks with "unknown", samples the reward from the reward head, and dreams the scoring dreams
    again told it, so the frame draws the point the reward head scored (Boxing's digits, which a
    model that cannot tell a landed punch from the context leaves out). Kept by --resume and by a
    student of such a teacher."""
    reward_input_lr: float = 1e-2
    """Learning rate of the reward embedding of a reward-input denoiser (--reward-input), scaled by
    the warm-up like --lr: it starts at zero and is told a point in a few percent of the samples, so
    at the model's rate it stays near zero for thousands of steps (Boxing, at 1e-4: a norm of 0.04
    after 1,000 steps, against about 6 for an action's embedding)."""
    reward_end_only: bool = False
    """Train the reward/end model alone: the denoiser is frozen and its steps are skipped (e.g. a
    snapshot's end head retrained on longer --re-seq windows or with --re-blank-rows)."""
    re_blank: str | None = None
    """Override the box of the frame the reward/end model does not see, "top,bottom,left,right"
    (model/world_model/reward_end.RewardEndConfig.blank; Breakout's lives counter: 0,5,36,50); a fresh or
    --init-from model only: the weights stay, what they see changes."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("steps", "ckpt_every", "log_every", "re_every", "collect_steps", "heldout_steps", "eval_starts"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{flag(name)} must be >= 1, got {getattr(self, name)}")
        if self.eval_every < 0 or self.context_frames < 0:
            raise ValueError(
                f"--eval-every and --context-frames must be >= 0 (0 = never / the model's own), "
                f"got {self.eval_every}, {self.context_frames}"
            )
        if not 0 <= self.epsilon <= 1:
            raise ValueError(f"--epsilon must be in [0, 1], got {self.epsilon}")
        weights = ("empty_field_weight", "serve_weight", "life_loss_weight", "paddle_weight", "reward_weight")
        bad = [f"--{flag(w)} {getattr(self, w)}" for w in weights if getattr(self, w) <= 0]
        if bad:
            raise ValueError(f"sampling weights must be > 0, got {', '.join(bad)}")
        if self.reward_input_lr <= 0:
            raise ValueError(f"--reward-input-lr must be > 0, got {self.reward_input_lr}")
        if self.pause_fire_weight < 0:
            raise ValueError(f"--pause-fire-weight must be >= 0, got {self.pause_fire_weight}")
        if self.distill_from is not None and self.reward_end_only:
            raise ValueError("--distill-from trains the denoiser; it cannot go with --reward-end-only")
        if self.student_sigma_max and (self.distill_from is None or self.student_sigma_max < 1):
            raise ValueError(
                f"--student-sigma-max sets a distilled student's noise level: it needs --distill-from and a "
                f"value >= 1, got {self.student_sigma_max}"
            )
        if self.re_blank is not None:
            try:
                RewardEndConfig(blank=tuple(int(v) for v in self.re_blank.split(",")))
            except ValueError as e:
                raise ValueError(f"--re-blank: {e}") from e


def parse_args(argv: list[str] | None = None) -> Args:
    return parse_run_args(Args, argv, choices={"policy": POLICY_KINDS}, description=__doc__)


def with_unet(cfg: WorldModelConfig, unet: UNetConfig) -> WorldModelConfig:
    """`cfg` with the denoiser's U-Net config replaced (a grown context, the reward input)."""
    d = cfg.to_dict()
    d["denoiser"]["unet"] = asdict(unet)
    return WorldModelConfig(**d)


def rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": json.dumps(np.random.get_state()[1].tolist())}


def main(argv: list[str] | None = None) -> int:
    # -- issue 6: `--agent` runs DIAMOND's full loop (collect -> denoiser -> reward/end -> agent) --
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--agent" in argv:
        from training.agent.loop import run_loop

        return run_loop([x for x in argv if x != "--agent"])
    # -- end issue 6 --
    a = parse_args(argv)
    if not start(a.game, a.threads):
        return 2

    # -- distributed (torchrun) ---------------------------------------------------------
    ddp = "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1
    rank = 0
    device = pick_device(a.device)
    if ddp:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        rank = dist.get_rank()
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            torch.cuda.set_device(device)
    main_proc = rank == 0

    run_dir = a.run_path
    data_dir = a.data or Path("data") / a.game
    heldout_dir = a.heldout or Path("data") / f"{a.game}-heldout"
    state_path, snap_path = run_dir / "state", run_dir / "snapshot"

    # -- seed ------------------------------------------------------------------------------
    seed_all(a.seed + rank)

    # -- data ------------------------------------------------------------------------------
    store, heldout = EpisodeStore(data_dir), EpisodeStore(heldout_dir)
    if main_proc:
        for d in (data_dir, heldout_dir, run_dir):
            if d.is_dir():
                remove_stale_temp_files(d)
        if store.num_steps(a.game) == 0 or (a.eval_every and heldout.num_steps(a.game) == 0):
            try:  # collection needs the policy; a game without a scripted expert has only 'random'
                make_policy(a.game, a.policy, a.epsilon)
            except ValueError as e:
                print(f"error: {e}", file=sys.stderr)
                return 2
        if store.num_steps(a.game) == 0:
            print(f"no {a.game} data in {data_dir}: collecting {a.collect_steps} steps ({a.policy})")
            collect(a.game, store, a.collect_steps, a.policy, a.epsilon, seed=a.seed, progress=a.progress)
        if a.eval_every and heldout.num_steps(a.game) == 0:
            collect(a.game, heldout, a.heldout_steps, a.policy, a.epsilon, seed=10_000 + a.seed, progress=a.progress)
    if ddp:
        dist.barrier()
    episodes, errors = store.load_all(a.game)
    for e in errors:
        print(f"warning: skipping {e}", file=sys.stderr)
    if not episodes:
        print(f"error: no readable {a.game} episodes in {data_dir}", file=sys.stderr)
        return 2
    meanings = action_meanings(a.game)
    factors = []  # per-episode sampling weights, multiplied together
    if a.empty_field_weight != 1.0 or a.serve_weight != 1.0 or a.pause_fire_weight != 1.0:
        if a.game not in BALL_FIELD:
            print(f"error: the sampling weights need a ball field; {a.game} has none", file=sys.stderr)
            return 2
        fire = meanings.index("FIRE")
        factors.append(
            lambda e: field_weights(e, a.game, fire, a.empty_field_weight, a.serve_weight, a.pause_fire_weight)
        )
    if a.paddle_weight != 1.0:
        if a.game not in BALL_FIELD:
            print(f"error: --paddle-weight needs a ball field; {a.game} has none", file=sys.stderr)
            return 2
        factors.append(lambda e: paddle_weights(e, a.game, a.paddle_weight))
    if a.reward_weight != 1.0:
        factors.append(lambda e: reward_weights(e, a.reward_weight))
    if a.life_loss_weight != 1.0:
        factors.append(lambda e: np.where(e.life_lost.astype(bool), a.life_loss_weight, 1.0))
    weights = [np.prod([f(e) for f in factors], axis=0) for e in episodes] if factors else None
    if weights is not None and main_proc:
        total = sum(len(e) for e in episodes)
        emphasised = sum(float((w != 1.0).sum()) for w in weights)
        print(f"sampling weights: {emphasised / total:.1%} of transitions reweighted")
    sampler = WindowSampler(episodes, seed=a.seed + 1000 * rank, weights=weights)
    # The reward/end model draws its windows uniformly: the sampling weights above choose what the
    # denoiser sees more often; given to the reward/end model they would raise its prior for the
    # events they favour (a --life-loss-weight of 16 made its end head fire in 98 % of dreams that
    # lost no life).
    re_sampler = WindowSampler(episodes, seed=a.seed + 1000 * rank + 500) if weights is not None else sampler
    heldout_eps = heldout.load_all(a.game)[0] if a.eval_every else []

    # -- model, EMA, optimiser -------------------------------------------------------------
    cfg = preset_config(a.preset, a.game, meanings)
    bf16 = use_bf16(device, a.precision)
    resume_tree = None
    if a.resume:
        try:
            resume_tree, meta = checkpoint.load(state_path)
        except CheckpointError as e:
            print(f"error: cannot resume: {e}", file=sys.stderr)
            return 2
        cfg = WorldModelConfig(**meta["config"])
        if cfg.game != a.game:
            print(f"error: {state_path} is a {cfg.game} run, not {a.game}", file=sys.stderr)
            return 2
    elif holds_a_run(run_dir, state_path):  # every rank: a rank that went on alone would hang
        return 2
    base = {"steps": 0, "wall_hours": 0.0}  # training behind the --init-from snapshot
    init_state = None
    if resume_tree is not None:
        base = meta.get("base_training", base)
    init_from = a.init_from or a.distill_from  # a student starts from its teacher
    if resume_tree is None and init_from is not None:
        try:
            init = WorldModel.from_snapshot(init_from, freeze=False)  # only its weights are used
        except CheckpointError as e:
            print(f"error: cannot start from {init_from}: {e}", file=sys.stderr)
            return 2
        cfg, init_state = init.cfg, init.state_dict()
        base = dict(init.meta.get("training") or {"steps": int(init.meta.get("train_steps", 0)), "wall_hours": 0.0})
        if init.cfg.game != a.game:  # another game's model: its weights, this game's actions
            cfg, init_state = transfer_to_game(cfg, init_state, a.game, meanings, seed=a.seed)
            base["game"] = init.cfg.game
            kept = [m for m in meanings if m in init.cfg.action_meanings]
            if main_proc:
                print(
                    f"starting from the {init.cfg.game} model {init_from} ({cfg.preset} preset, {base['steps']} "
                    "steps behind it): every weight but the action embeddings; kept by name: "
                    + (", ".join(kept) or "none")
                )
        elif main_proc:
            print(f"starting from {init_from} ({cfg.preset} preset, {base['steps']} steps behind it)")
    if a.reward_input and not cfg.denoiser.unet.reward_input:
        if resume_tree is not None:
            print(f"error: a resumed run keeps its inputs; {run_dir} has no reward input", file=sys.stderr)
            return 2
        unet, init_state = add_reward_input(cfg.denoiser.unet, init_state, "denoiser.net.")
        cfg = with_unet(cfg, unet)
        if main_proc:
            print("the denoiser takes the step's reward as an input (a zero-initialised embedding)")
    if a.context_frames and a.context_frames != cfg.context_frames:
        if resume_tree is not None:
            print(
                f"error: a resumed run keeps its context; {run_dir} sees {cfg.context_frames} frames",
                file=sys.stderr,
            )
            return 2
        if a.context_frames < cfg.context_frames:
            print(
                f"error: --context-frames {a.context_frames} is below the model's {cfg.context_frames}",
                file=sys.stderr,
            )
            return 2
        if init_state is None:  # a fresh model: the preset with a longer context, every action embedded
            unet, grown = replace(cfg.denoiser.unet, context_frames=a.context_frames), None
        else:
            unet, grown = grow_context(cfg.denoiser.unet, init_state, a.context_frames, "denoiser.net.")
        cfg, init_state = with_unet(cfg, unet), grown
        if main_proc:
            print(f"context grown to {a.context_frames} frames (the last {unet.embedded_actions} actions embedded)")
    try:
        cfg = with_loss_settings(cfg, a, resumed=resume_tree is not None)
    except ValueError as e:
        print(f"error: {e} ({run_dir})", file=sys.stderr)
        return 2
    if resume_tree is None and a.re_blank is not None:
        d = cfg.to_dict()
        d["reward_end"] = {**d["reward_end"], "blank": [int(v) for v in a.re_blank.split(",")]}
        cfg = WorldModelConfig(**d)
    teacher = None
    if a.distill_from is not None:
        try:
            teacher = WorldModel.from_snapshot(a.distill_from, device, a.precision)
        except CheckpointError as e:
            print(f"error: cannot distil from {a.distill_from}: {e}", file=sys.stderr)
            return 2
        if teacher.cfg.action_meanings != cfg.action_meanings or teacher.cfg.game != a.game:
            print(
                f"error: the teacher {a.distill_from} is a {teacher.cfg.game} model; the student plays {a.game} "
                "with the same actions",
                file=sys.stderr,
            )
            return 2
        if resume_tree is None:  # the student: the teacher's model, sampled in one step, unguided
            sigma_max = a.student_sigma_max or cfg.sampler.sigma_max
            cfg = replace(cfg, sampler=replace(cfg.sampler, num_steps=1, action_guidance=0.0, sigma_max=sigma_max))
        # its output is the whole frame (runs started before this setting existed get it on resume)
        cfg = replace(cfg, denoiser=replace(cfg.denoiser, unet=replace(cfg.denoiser.unet, fp32_output=True)))
        if main_proc:
            print(
                f"distilling {a.distill_from} ({teacher.cfg.sampler.num_steps} steps, guidance "
                f"{teacher.cfg.sampler.action_guidance}) into 1 step at sigma {cfg.sampler.sigma_max:g}"
            )
    wm = WorldModelSteps(cfg, device, bf16, a, init_state=init_state, compile=a.compile)
    if teacher is not None:
        wm.distil_from(teacher)
    model, ema = wm.model, wm.ema
    step = 0
    if resume_tree is not None:
        wm.load(resume_tree, str(state_path))
        step = int(resume_tree["step"])
        torch.set_rng_state(resume_tree["rng"]["torch"])
        sampler.rng = np.random.default_rng([a.seed + 1000 * rank, step])
        if re_sampler is not sampler:
            re_sampler.rng = np.random.default_rng([a.seed + 1000 * rank + 500, step])
        print(f"resumed {run_dir} at step {step}")
    if ddp:
        wm.distribute()

    def save_all() -> None:
        if not main_proc:
            return
        meta = {
            "kind": "train_state",
            "config": cfg.to_dict(),
            "args": {k: str(v) for k, v in vars(a).items()},
            "base_training": base,
        }
        checkpoint.save(state_path, {**wm.state(), "step": loop.done, "rng": rng_state()}, meta)
        extra = {
            "step": loop.done,
            "train_steps": base["steps"] + loop.done,
            "preset": cfg.preset,
            "base_training": base,
        }
        if teacher is not None:
            extra["distilled_from"] = {"snapshot": str(a.distill_from), "sampler": asdict(teacher.cfg.sampler)}
        ema.save_snapshot(snap_path, extra)

    loop = TrainingLoop(
        run_dir,
        "step",
        step,
        a.steps,
        save_all,
        args_record={k: str(v) if isinstance(v, Path) else v for k, v in vars(a).items()},
        log_every=a.log_every,
        ckpt_every=a.ckpt_every,
        main_proc=main_proc,
        progress=a.progress,
        bar={"desc": f"train {a.game}"},
    )

    def evaluate() -> None:
        step = loop.done
        if not (a.eval_every and step % a.eval_every == 0):
            return
        if main_proc and heldout_eps:
            from training.world_model.fidelity import fidelity, strip_image

            ema.bf16 = bf16
            ema.eval()
            sampler = ema.cfg.sampler if teacher is not None else SamplerConfig()  # a student's own 1 step
            res = fidelity(ema, heldout_eps, starts=a.eval_starts, sampler=sampler, seed=0)
            (run_dir / "eval").mkdir(exist_ok=True)
            strip_image(res.pop("_dream")[0], res.pop("_real")[0]).save(run_dir / "eval" / f"strip_{step:07d}.png")
            (run_dir / "eval" / f"fidelity_{step:07d}.json").write_text(json.dumps(res, indent=1))
            vals = {}
            for h, r in res["horizons"].items():
                for k in ("psnr_dream", "motion_psnr_dream", "ssim_dream"):
                    if r[k] is not None:
                        vals[f"eval/h{h}/{k}"] = r[k]
            for steps, recall in ((res["ball"] or {}).get("pooled") or {}).items():
                if recall is not None:  # games with a ball field: the number the dream's playability hangs on
                    vals[f"eval/ball_recall/{steps}"] = recall
            loop.log(vals)
            tqdm.write(f"step {step} eval: " + " ".join(f"{k.split('/', 1)[1]}={v:.2f}" for k, v in vals.items()))
        model.train()

    def one_step() -> dict[str, float]:
        """One denoiser step (none with --reward-end-only), a reward/end step every --re-every, the EMA."""
        step = loop.done
        logs: dict = {"lr": wm.set_lr(step)}
        if not a.reward_end_only:
            logs |= wm.denoiser_step(sampler, a.batch_size, a.ar_frames, a.ar_fraction)
        if (step % a.re_every == 0 and teacher is None) or a.reward_end_only:
            re_batch = a.batch_size if a.reward_end_only else max(4, a.batch_size // 4)
            logs |= wm.reward_end_step(re_sampler, re_batch, a.re_seq)
        wm.update_ema()  # of the denoiser and reward/end weights
        return logs

    def postfix(logs: dict[str, float]) -> dict[str, str]:
        shown = logs.get("denoiser/train/loss", logs.get("reward_end/train/loss_end", 0.0))
        return {"loss": f"{shown:.4f}", "s_step": f"{logs['perf/sec_per_step']:.2f}"}

    model.train()
    loop.run(one_step, postfix, after=evaluate)
    if ddp:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
