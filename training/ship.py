"""Ship a trained world model: copy its EMA snapshot into checkpoints/ and write its model card.

    python training/ship.py --run-dir runs/Breakout --data data/Breakout --heldout data/Breakout-heldout
    python training/ship.py --snapshot checkpoints/Breakout --guidance-reference FIRE \
        --data data/Breakout --heldout data/Breakout-heldout   # the same weights, new sampler settings
    python training/ship.py --snapshot checkpoints/Pong --backend torch-fused \
        --data data/Pong --heldout data/Pong-heldout           # the same weights, a faster path

Writes `checkpoints/<Game>.{safetensors,json}` (each file under 25 MB), and in docs/models/:
`<Game>.md` (data, training, playability and fidelity tables, reward/end accuracy, stability),
`<Game>-strip.png` (real row over dream row), `<Game>-eval.json`, and `<Game>-playability.{json,png}`.
The shipped checkpoint shipped again (`--snapshot checkpoints/<Game>` with new sampler settings) keeps
its card's Training section and reproduce commands, and adds its own command to them.

Two gates against the model it replaces, each refusing with nothing written unless --force: the
playability suite (training/world_model/playability/: worse on any probe by more than 3 points or
one of its cases, `playability.probe_tolerance`) and the quality gate on held-out fidelity
(fidelity.fidelity_worse: PSNR or motion PSNR at h = 1, 15, 50 more than 1 dB below). Each model
is measured with its own sampler, on the backend players get: the candidate on `--backend` (default
torch), the replaced model on its own (`onnx_backend.use_own_backend`, else torch). The shipped
snapshot names the backend its gates measured (`meta.backend`): the server's default `auto` runs it
where it can (docs/benchmarks.md). Offering the shipped weights again with `--backend` measures the
faster path against their own.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
from PIL import Image

from games.episode_store import EpisodeStore
from games.files import atomic_write_bytes
from model.checkpoint import CheckpointError
from model.device import cpu_info
from model.world_model import WorldModel
from model.world_model.onnx_backend import SHIPPABLE_BACKENDS, BackendError, use_own_backend
from model.world_model.sampler import SamplerConfig
from training.cli import add_guidance_flags, add_precision_flag, guidance_overrides
from training.train import Args as TrainArgs
from training.world_model import playability
from training.world_model.fidelity import (
    ball_plot,
    fidelity,
    fidelity_worse,
    format_table,
    reward_end_accuracy,
    stability,
    strip_image,
)
from training.world_model.measures import BALL_RADIUS
from training.world_model.shipping import MAX_FILE_BYTES, measure_with_backend, read_run_args


def _same_path(a: str | Path, b: str | Path) -> bool:
    """Whether two snapshot paths (with or without .safetensors / .json) name the same files."""

    def stem(p: Path) -> Path:
        return p.with_suffix("") if p.suffix in (".safetensors", ".json") else p

    return stem(Path(a)).resolve() == stem(Path(b)).resolve()


NOTES_PLACEHOLDER = "(to be filled in from looking at the strips)"


def _card_history(card: str) -> tuple[str, str, str] | None:
    """A model card's Training section, its closing reproduce text (from the last line that starts
    with "Reproduce" to the end) and its "Where the dream is wrong" notes, to keep when the same
    weights (or their student) are shipped again; None when the card has not all three."""
    start = card.find("\n## Training\n")
    end = card.find("\n## ", start + 1)
    heading = "\n## Where the dream is wrong\n"
    where, rep = card.find(heading), card.rfind("\nReproduce")
    if min(start, end, where) < 0 or rep < where:
        return None
    notes = card[where + len(heading) : rep].strip()
    return card[start + len("\n## Training\n") : end].strip(), card[rep + 1 :].strip(), notes


def _plural(n: int, thing: str) -> str:
    return f"{n} {thing}{'s' if n != 1 else ''}"


def _sampler_text(s, meanings: list[str]) -> str:
    text = _plural(s.num_steps, f"{'Euler' if s.order == 1 else 'Heun'} step")
    if s.action_guidance:
        text += f" and action guidance {s.action_guidance:g} at noise >= {s.guidance_sigma:g}"
        if s.guidance_reference:
            text += f" against {meanings[s.guidance_reference]}"
        text += " (docs/design.md)"
    if s.still_band:
        text += f", still band {s.still_band:g} grey levels (docs/distillation.md)"
    return text


def training_summary(run_dir: Path) -> dict:
    """Steps, wall time and last losses from metrics.jsonl."""
    steps, wall, last = 0, 0.0, {}
    path = run_dir / "metrics.jsonl"
    if path.is_file():
        prev_step = 0
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a kill
            if "perf/sec_per_step" in rec:
                wall += rec["perf/sec_per_step"] * max(0, rec["step"] - prev_step)
                prev_step = rec["step"]
                last = rec
            steps = max(steps, rec["step"])
    return {"steps": steps, "wall_hours": wall / 3600, "last": last}


def _stages_text(train: dict, run_args: dict) -> str:
    batch = run_args.get("batch_size", "?")
    ar = int(run_args.get("ar_frames", "0") or 0)
    how = f"batch {batch}"
    if ar:
        how += (
            f", autoregressive training: for {float(run_args.get('ar_fraction', 0)):.0%} of each batch the last {ar} "
            "context frames were dreamed by the EMA model (3 Euler steps) from the real frames before them"
        )
    if "stages" not in train:
        return f"Trained at {how}."
    first, last = train["stages"]
    if run_args.get("reward_end_only"):
        blank = run_args.get("re_blank")
        return (
            f"First {first['steps']:,} steps ({first['wall_hours']:.1f} h) as the snapshot it started from; then "
            f"{last['steps']:,} steps ({last['wall_hours']:.1f} h) of the reward/end model alone, the denoiser "
            f"frozen (`--reward-end-only`), on windows of {run_args.get('re_seq', '?')} steps, batch {batch}"
            + (f", the box {blank} (top,bottom,left,right) of each frame unseen by it." if blank else ".")
        )
    if first.get("game"):
        return (
            f"It started from the weights of a {first['game']} model ({first['steps']:,} steps behind it; every "
            "weight but the action embeddings: `--init-from` another game's snapshot), then trained "
            f"{last['steps']:,} steps ({last['wall_hours']:.1f} h) on this game's data below, {how}."
        )
    return (
        f"First {first['steps']:,} steps as the snapshot it started from (a shipped model or a run's); then "
        f"{last['steps']:,} steps ({last['wall_hours']:.1f} h) fine-tuned from it on the data below "
        f"(`--init-from`), {how}."
    )


def _distilled_text(train: dict, run_args: dict, model: WorldModel) -> str:
    """A one-step student's own stage (train.py --distill-from), for the card of the model it replaces."""
    last = train["stages"][1] if "stages" in train else train
    src = model.meta["distilled_from"]
    teacher = SamplerConfig(**src["sampler"])
    hours = f" ({last['wall_hours']:.1f} h)" if last["wall_hours"] else ""  # unknown without the run's metrics
    batch = f", batch {run_args['batch_size']}" if "batch_size" in run_args else ""
    return (
        f"Then distilled into one Euler step at sigma {model.cfg.sampler.sigma_max:g} (docs/distillation.md): "
        f"{last['steps']:,} steps{hours} from the weights of `{src['snapshot']}`, learning to dream in one network "
        f"call what they dream with {_sampler_text(teacher, model.cfg.action_meanings)} from the same noise{batch}"
        + (f"; last stage on {cpu_info()[0]}." if last["wall_hours"] else ".")
    )


DISTILL_FLAGS = (
    "game", "data", "heldout", "run_dir", "distill_from", "init_from", "reward_input", "reward_weight",
    "reward_input_lr", "student_sigma_max", "batch_size", "lr", "ema_decay", "ar_frames", "ar_fraction", "eval_every",
    "ckpt_every", "steps",
)  # fmt: skip
ZERO_IS_A_SETTING = ("eval_every",)
"""Flags whose 0 is not train.py's default (`--eval-every 0`: no held-out evaluation during the run)."""
DEFAULT_SETTINGS = {k: getattr(TrainArgs, k) for k in ("reward_weight", "reward_input_lr")}
"""Flags whose train.py default is not 0 (left out of a command when the run kept it)."""


def _distill_command(run_args: dict, model: WorldModel) -> str:
    """train.py's flags for a distillation run, from its args.json (those set: not None, False or 0,
    where 0 is a setting only for `ZERO_IS_A_SETTING`); without the run, the flags its snapshot
    records and a pointer to where the rest are written."""
    if run_args:
        set_ = [
            k
            for k in DISTILL_FLAGS
            if (run_args.get(k) or (k in ZERO_IS_A_SETTING and run_args.get(k) == 0))
            and run_args.get(k) != DEFAULT_SETTINGS.get(k)
            and (k != "reward_input_lr" or run_args.get("reward_input"))
        ]
        return " ".join(f"--{k.replace('_', '-')}" + ("" if run_args[k] is True else f" {run_args[k]}") for k in set_)
    return (
        f"--game {model.cfg.game} --distill-from {model.meta['distilled_from']['snapshot']} --student-sigma-max "
        f"{model.cfg.sampler.sigma_max:g} --steps {model.meta.get('step', 0)}  # the rest: docs/distillation.md"
    )


START_KINDS = {
    "waiting": "starts where the game waits for FIRE",
    "in_play": "mid-game starts",
    "after_point": "starts on the step of a point (the serve follows)",
}


def starts_text(starts: dict[str, int]) -> str:
    """The suite's start states in words, whatever the game's suite draws ('played' and 'served'
    count rollouts made from those starts, not more starts)."""
    return ", ".join(
        f"{n} {START_KINDS.get(k, k.replace('_', ' ') + ' starts')}"
        for k, n in starts.items()
        if k not in ("played", "served")
    )


def data_summary(store: EpisodeStore) -> dict:
    idx = store.index()
    by_policy: dict[str, int] = {}
    for e in idx:
        by_policy[e.get("policy", "?")] = by_policy.get(e.get("policy", "?"), 0) + e["length"]
    return {"episodes": len(idx), "steps": sum(e["length"] for e in idx), "steps_by_policy": by_policy}


BALL_NOTE = f"""
Ball recall: of the real frames with the ball in the open field (below the bricks, above the
paddle), the share whose dream draws a ball within {BALL_RADIUS} pixels of it, pooled over the dreamed steps
of each column. Whole-frame PSNR hardly sees a one-pixel ball; this is the number a playable dream
lives on. Per dreamed step:
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run-dir", type=Path, default=None, help="a training run: ships its snapshot")
    p.add_argument(
        "--snapshot",
        type=Path,
        default=None,
        help="ship this snapshot instead (no run): e.g. the shipped model again with new sampler settings",
    )
    p.add_argument(
        "--data",
        type=Path,
        default=None,
        help="training store (for the data summary); a shipped checkpoint shipped again may leave it out: "
        "its own record (meta.data) is used",
    )
    p.add_argument("--heldout", type=Path, required=True)
    p.add_argument("--out-dir", type=Path, default=Path("checkpoints"))
    p.add_argument("--docs", type=Path, default=Path("docs/models"))
    p.add_argument("--starts", type=int, default=16)
    p.add_argument("--stability-steps", type=int, default=500)
    p.add_argument(
        "--notes",
        default="",
        help="free text for the card's 'where the dream is wrong' section (default: the card's own when the "
        "shipped weights or their student are shipped again)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--playability-starts", type=int, default=32, help="start states per kind for the suite")
    p.add_argument(
        "--force", action="store_true", help="ship even if a playability probe or a fidelity figure got worse"
    )
    add_guidance_flags(p, "ship the model with action-contrast guidance G in its sampler settings")
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        metavar="N",
        help="ship the model with N Euler steps in its sampler settings (default: its own)",
    )
    add_precision_flag(p, "both models' arithmetic (auto: bf16 autocast where the CPU runs it fast, as served)")
    p.add_argument(
        "--backend",
        default=None,
        choices=SHIPPABLE_BACKENDS,
        help="gate the model on this denoiser backend and ship it as its own (default torch; the snapshot names "
        "the path its gates measured, and the server's auto runs it)",
    )
    args = p.parse_args(argv)
    if (args.run_dir is None) == (args.snapshot is None):
        which = "neither was given" if args.run_dir is None else "not both"
        p.error(f"give --run-dir (a training run) or --snapshot (a snapshot or shipped checkpoint): {which}")
    source = args.snapshot if args.snapshot is not None else args.run_dir / "snapshot"
    guidance = guidance_overrides(p, args)
    if args.threads < 0:
        p.error(f"--threads must be >= 0, got {args.threads}")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    try:
        model = WorldModel.from_snapshot(source, precision=args.precision)
        model.cfg.sampler = model.sampler_config(num_steps=args.steps, **guidance)
        if args.backend is not None and measure_with_backend(model, args.backend) != args.backend:
            raise ValueError(f"the {args.backend} backend does not run this model here ({model.backend} instead)")
        if args.data is None and "data" not in model.meta:
            raise ValueError(f"{source} does not record its training data: give --data (the training store)")
        heldout, errors = EpisodeStore(args.heldout).load_all(model.cfg.game)
        if not heldout:
            raise ValueError(f"no held-out episodes in {args.heldout}")
    except (CheckpointError, BackendError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    game = model.cfg.game
    shipped_path = args.out_dir / game
    has_shipped = shipped_path.with_suffix(".safetensors").is_file()

    @functools.cache
    def shipped() -> WorldModel:
        """The shipped model as the server runs it by default (its own backend), loaded once."""
        served = WorldModel.from_snapshot(shipped_path, precision=args.precision)
        served.backend = use_own_backend(served)
        return served

    if not has_shipped:
        print(f"no {game} model in {args.out_dir}: this one is the first, so there is nothing to gate against")

    # -- the gate: playability against the model this one replaces --------------------------
    play, play_ref, play_cases, play_worse = None, None, None, []
    if game in playability.SUITES:
        print(f"playability suite on {args.playability_starts} starts ...")
        play = playability.evaluate_model(model, args.playability_starts)
        play_cases = play.pop("_cases")
        ref_json = args.docs / f"{game}-playability.json"
        # each model is measured with its own sampler (a distilled one in 1 step, its teacher in 3)
        same = ("suite", "seed", "starts_requested", "arithmetic")
        if ref_json.is_file():
            play_ref = json.loads(ref_json.read_text())
            if any(play_ref.get(k) != play.get(k) for k in same):
                play_ref = None  # other starts, or another machine's arithmetic: measure the shipped model again
            elif any(k in play and k not in play_ref for k in playability.probe_keys(play)):
                play_ref = None  # measured before a probe existed: measure the shipped model again
        if play_ref is None and has_shipped:
            print("playability suite on the shipped model ...")
            play_ref = playability.evaluate_model(shipped(), args.playability_starts)
            play_ref.pop("_cases")
        play_worse = playability.worse_than(play, play_ref) if play_ref else []
        if play_worse and not args.force:
            print(
                "error: worse than the shipped model on " + "; ".join(play_worse) + " (--force ships it anyway)",
                file=sys.stderr,
            )
            return 2
    if args.run_dir is not None:
        train = training_summary(args.run_dir)
        base = model.meta.get("base_training") or {"steps": 0, "wall_hours": 0.0}
        run_args = read_run_args(args.run_dir)
    elif "training" in model.meta:  # a shipped checkpoint: its own record holds the whole chain
        train, base, run_args = {**model.meta["training"], "last": {}}, {"steps": 0, "wall_hours": 0.0}, {}
    else:  # a run's snapshot without its run: its steps, after those of the snapshot it started from
        train = {"steps": int(model.meta.get("step", 0)), "wall_hours": 0.0, "last": {}}
        base = model.meta.get("base_training") or {"steps": 0, "wall_hours": 0.0}
        run_args = read_run_args(Path(source).parent)  # args.json, when the snapshot still sits in its run
    if base["steps"]:  # a fine-tune (train.py --init-from): count the steps behind it too
        train = {
            "steps": base["steps"] + train["steps"],
            "wall_hours": base["wall_hours"] + train["wall_hours"],
            "stages": [base, {k: v for k, v in train.items() if k != "last"}],
            "last": train["last"],
        }
    data = data_summary(EpisodeStore(args.data)) if args.data is not None else model.meta["data"]
    sampler = model.sampler_config()
    print(f"evaluating {game} on {len(heldout)} held-out episodes ...")
    fid = fidelity(model, heldout, starts=args.starts, sampler=sampler, seed=args.seed, progress=True)
    fid_ref = None  # the quality gate: the replaced model on the same starts, with its own sampler
    ref_eval = args.docs / f"{game}-eval.json"
    if ref_eval.is_file():
        fid_ref = json.loads(ref_eval.read_text()).get("fidelity")
        if not fid_ref or any(fid_ref.get(k) != fid.get(k) for k in ("starts", "arithmetic")):
            fid_ref = None  # other starts (another --starts or held-out store) or machine: measure it again
    if fid_ref is None and has_shipped:
        print("evaluating the shipped model on the same starts ...")
        fid_ref = fidelity(shipped(), heldout, starts=args.starts, seed=args.seed, progress=True)
        del fid_ref["_dream"], fid_ref["_real"]  # only its figures are compared
    fid_worse = fidelity_worse(fid, fid_ref) if fid_ref else []
    if fid_worse and not args.force:
        print(
            "error: below the shipped model's fidelity: " + "; ".join(fid_worse) + " (--force ships it anyway)",
            file=sys.stderr,
        )
        return 2
    worse = play_worse + fid_worse
    forced_text = f"\n**Shipped with --force**, below the model it replaced on: {'; '.join(worse)}.\n" if worse else ""
    stab = stability(model, heldout, args.stability_steps, sampler=sampler, seed=args.seed, progress=True)
    re = reward_end_accuracy(model, heldout)

    # Everything is written to a staging folder first and moved into place at the end: a refusal
    # or a crash on the way leaves checkpoints/ and the docs as they were.
    stage = tempfile.TemporaryDirectory(prefix="ship-")
    ckpt_dir, docs_dir = Path(stage.name) / "checkpoints", Path(stage.name) / "docs"
    ckpt_dir.mkdir()
    docs_dir.mkdir()
    shipped_from = str(args.run_dir if args.run_dir is not None else source)
    if args.snapshot is not None and _same_path(args.snapshot, shipped_path):  # shipped again: where it came from
        shipped_from = model.meta.get("shipped_from", shipped_from)
    ship_meta = {
        "training": {k: v for k, v in train.items() if k != "last"},
        "data": data,
        "shipped_from": shipped_from,
        **{k: model.meta[k] for k in ("distilled_from",) if k in model.meta},  # a student's teacher
        "backend": model.backend,  # the path the gates measured: what the server's auto runs (gated_backend)
    }
    model.save_snapshot(ckpt_dir / game, ship_meta)
    for ext in (".safetensors", ".json"):
        size = (ckpt_dir / f"{game}{ext}").stat().st_size
        if size > MAX_FILE_BYTES:
            print(f"error: {game}{ext} is {size / 2**20:.1f} MB, over the 25 MB limit", file=sys.stderr)
            return 2

    strip_image(fid.pop("_dream")[0], fid.pop("_real")[0]).save(docs_dir / f"{game}-strip.png")
    last = stab.pop("last_frames")
    Image.fromarray(np.concatenate(list(last), axis=1)).resize((last.shape[0] * 128, 128), Image.NEAREST).save(
        docs_dir / f"{game}-stability.png"
    )
    if fid.get("ball"):
        ball_plot(fid["ball"]).save(docs_dir / f"{game}-ball.png")
    report = {"fidelity": fid, "reward_end": re, "stability": stab, "training": train, "data": data}
    (docs_dir / f"{game}-eval.json").write_text(json.dumps(report, indent=1))
    play_text = "No playability probes exist for this game yet (training/world_model/playability/)."
    # the card says which path its figures come from
    backend_text = f"; the denoiser runs on the `{model.backend}` backend, as every figure below was measured"
    play_path = f", on the `{model.backend}` backend"
    if play is not None:
        play["checkpoint"] = str(shipped_path)
        (docs_dir / f"{game}-playability.json").write_text(json.dumps(play, indent=1))
        playability.cases_image(play_cases).save(docs_dir / f"{game}-playability.png")
        missed = playability.goals_missed(play)
        play_text = f"""Counterfactual probes from cloned emulator states (episode seeds from {play["seed"]}, which no
collection, training or selection used): {starts_text(play["starts"])}; real game and dream get the same
actions; {_plural(play["euler_steps"], "Euler step")}{play_path}. "previous" is the model this one replaced,
on the same starts and its own backend.

{playability.table(play, play_ref, "previous")}

Goals not met: {"; ".join(missed) if missed else "none"}.

![worst case per probe: real over dream]({game}-playability.png)

Reproduce: `python training/playability.py --checkpoint checkpoints/{game} --starts {args.playability_starts}`
"""
    ball_text = BALL_NOTE + f"\n![ball recall per dreamed step]({game}-ball.png)\n" if fid.get("ball") else ""
    cfg = model.cfg
    den_steps = base["steps"] if run_args.get("reward_end_only") and base["steps"] else train["steps"]
    hours = train["wall_hours"]
    if base.get("game") not in (None, game):  # started from another game's model: count this game's steps
        den_steps, hours = train["stages"][1]["steps"], train["stages"][1]["wall_hours"]
    n_params = sum(p.numel() for p in model.denoiser.parameters())
    fid_sampler = _sampler_text(sampler, cfg.action_meanings)
    fp32 = "fp32: no fast bf16 on this CPU" if args.precision == "auto" else "fp32"
    precision = f"({'bf16 autocast' if model.bf16 else fp32}, channels_last)"
    if args.run_dir is not None:
        training_text = (
            f"{den_steps:,} denoiser steps (reward/end model alongside), about {hours:.1f} h of wall\n"
            f"time on 2-core CPUs, resumed across sessions. {_stages_text(train, run_args)} Last stage on "
            f"{cpu_info()[0]}\n{precision}."
        )
        reproduce = f"--run-dir {args.run_dir}"
    else:
        training_text = (
            f"{den_steps:,} denoiser steps behind the weights of `{args.snapshot}`, shipped again as they were\n"
            f"with the sampler settings above; their training record is `meta.training` in `checkpoints/{game}.json`."
        )
        reproduce = f"--snapshot {args.snapshot}"
    old_card = args.docs / f"{game}.md"
    teacher = (model.meta.get("distilled_from") or {}).get("snapshot") if "training" not in model.meta else None
    student = teacher is not None and _same_path(teacher, shipped_path)  # of the shipped model
    reship = args.snapshot is not None and _same_path(args.snapshot, shipped_path)
    history = _card_history(old_card.read_text()) if (reship or student) and old_card.is_file() else None
    reproduce += "".join(f" --{k.replace('_', '-')} {v}" for k, v in guidance.items())
    reproduce += f" --steps {args.steps}" if args.steps is not None else ""
    reproduce += f" --backend {args.backend}" if args.backend is not None else ""
    reproduce += f" --data {args.data}" if args.data is not None else ""
    reproduce += f" --heldout {args.heldout}"
    for flag in ("starts", "playability_starts"):  # the gates' figures depend on them
        if getattr(args, flag) != p.get_default(flag):
            reproduce += f" --{flag.replace('_', '-')} {getattr(args, flag)}"
    reproduce += " --force" if args.force else ""
    reproduce_text = f"Reproduce: `python training/ship.py {reproduce}`"
    notes = args.notes or (history[2] if history is not None else "") or NOTES_PLACEHOLDER
    if history is not None:  # the card's story and commands stay, and this ship's are added to them
        today, commands = time.strftime("%Y-%m-%d"), f"    python training/ship.py {reproduce}"
        if student:  # the shipped model's one-step student
            added = _distilled_text(train, run_args, model)
            heading = f"The one-step student of those weights, shipped on {today}:"
            commands = f"    python training/train.py {_distill_command(run_args, model)}\n{commands}"
        elif args.backend is not None and args.steps is None and not guidance:  # the same model, a faster path
            added = f"Shipped again on {today}: the same weights and sampler, dreamed on the {args.backend} backend."
            heading = f"The same weights on the {args.backend} backend:"
        else:  # the shipped weights again
            added = f"Shipped again on {today} with the same weights and the sampler settings above."
            heading = "The same weights with the sampler settings above:"
        training_text = f"{history[0]}\n\n{added}"
        reproduce_text = f"{history[1]}\n\n{heading}\n\n{commands}"
    stab_rows = "\n".join(
        f"| {c['steps']} | {c['blank_frac']:.2f} | {c['saturated_frac']:.2f} | {c['frozen_frac']:.2f} | "
        f"{c['sharpness_vs_real']:.2f} |"
        for c in stab["per_100_steps"]
    )
    region_text = ""
    if cfg.denoiser.region_weight:
        top, bottom, left, right = cfg.denoiser.region
        region_text = (
            f"; loss weight +{cfg.denoiser.region_weight:g} on rows {top}-{bottom - 1}, columns {left}-{right - 1}"
        )
    if cfg.denoiser.unet.reward_input:
        region_text += (
            "; the step's reward as an input to the denoiser (a dream that scores is dreamed again, told it, so"
            " the frame draws the point: docs/design.md)"
        )
    card = f"""# {game} world model

`checkpoints/{game}.safetensors` + `checkpoints/{game}.json`, preset `{cfg.preset}`: U-Net channels
{cfg.denoiser.unet.channels}, {cfg.denoiser.unet.blocks_per_level} blocks per level, {n_params / 1e6:.2f} M denoiser
parameters; context-noise augmentation scale {cfg.denoiser.context_noise_scale} (clean with probability
{cfg.denoiser.context_noise_clean_prob}); motion-weighted loss {cfg.denoiser.motion_weight}{region_text}. Dreamed with
{_sampler_text(model.cfg.sampler, cfg.action_meanings)}; {cfg.context_frames} context frames{backend_text}.

## Data

{data["episodes"]} episodes, {data["steps"]:,} agent steps (frame skip 4), by policy: {data["steps_by_policy"]}.
Held-out: {len(heldout)} episodes collected with other seeds, never trained on.

## Training

{training_text}

## Playability: does the dream obey the player?

{play_text}

## Fidelity (held-out, {args.starts} starts, same actions for dream and real, {fid_sampler})

{format_table(fid)}
{forced_text}{ball_text}
![real over dream]({game}-strip.png)

Top row real, bottom row dream, at steps 1, 2, 3, 5, 8, 12, 15, 20, 30, 40, 50 after the start.

## Reward / termination model (held-out, teacher-forced on real frames)

{re["transitions"]} transitions; reward accuracy {re["reward_accuracy"]:.3f}, recall per class {re["reward_recall"]}
(counts {re["reward_counts"]}); end accuracy {re["end_accuracy"]:.3f}, recall {re["end_recall"]} (counts
{re["end_counts"]}). Ends include life losses.

## {stab["steps"]} dreamed steps with random keys ({stab["dreams"]} dreams)

| steps | blank | saturated | frozen | sharpness vs real |
| --- | --- | --- | --- | --- |
{stab_rows}

Collapse detected: **{stab["collapse"]}**. Last frames of the {stab["dreams"]} dreams:

![after {stab["steps"]} steps]({game}-stability.png)

## Where the dream is wrong

{notes}

{reproduce_text}
"""
    (docs_dir / f"{game}.md").write_text(card)
    print(format_table(fid))
    for src, dst in ((ckpt_dir, args.out_dir), (docs_dir, args.docs)):
        for f in sorted(src.iterdir()):  # each file whole or not at all
            atomic_write_bytes(dst / f.name, f.read_bytes())
    stage.cleanup()
    print(f"shipped {args.out_dir / game}.safetensors and wrote {args.docs / game}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
