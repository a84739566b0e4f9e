"""Playability: does the dream obey the player and the game's rules?

    python training/playability.py --checkpoint checkpoints/Breakout --starts 32 \\
        --out docs/models/Breakout-playability.json --image docs/models/Breakout-playability.png

Matched-action fidelity on held-out play can be excellent while a person cannot play inside the
dream: the data rarely shows what happens when the player does something unusual, so the metric
never asks. This suite asks. It puts the real emulator in a state (a fresh serve, a lost life,
mid-game), clones it (ALE `cloneState`), and gives the real game and the dream, started from the
same 4 real frames, the same counterfactual actions: idle without FIRE, serve, play, miss on
purpose, hold each action. Each probe counts one kind of rule violation.

Each game's probes and what they count: training/world_model/playability/ (breakout.py, pong.py,
boxing.py; docs/playability.md). This is their command: the whole suite, or one quick figure
(`--serve-belief`, `--long-dreams`), or, with no model, how precise a dreamed ball must be
(`--ball-nudge`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from games.experts import WAITING
from training.cli import add_backend_flag, add_guidance_flags, guidance_overrides
from training.world_model.playability import cases_image, evaluate_model, goals_missed, table, worse_than
from training.world_model.playability.breakout import long_dream_losses, make_starts, serve_belief
from training.world_model.playability.core import SEED
from training.world_model.shipping import measure_with_backend


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, help="world-model snapshot (.safetensors or stem); not with --ball-nudge")
    p.add_argument("--starts", type=int, default=32, help="waiting and in-play start states each")
    p.add_argument("--seed", type=int, default=SEED, help="first episode seed of the start states")
    p.add_argument("--steps", type=int, help="Euler steps per dreamed frame (default: the model's own)")
    p.add_argument("--compare", type=Path, default=None, help="a suite JSON to compare against")
    p.add_argument("--out", type=Path, default=None, help="JSON output")
    p.add_argument("--image", type=Path, default=None, help="PNG of the worst case per probe")
    p.add_argument("--threads", type=int, default=0)
    add_backend_flag(p)
    add_guidance_flags(p, "dream with action-contrast guidance G (default: the model's own sampler setting)")
    p.add_argument(
        "--serve-belief",
        type=int,
        default=0,
        metavar="N",
        help="only measure the serve from the first N waiting starts with 4 sampler noises each (quick)",
    )
    p.add_argument(
        "--long-dreams",
        type=int,
        default=0,
        metavar="N",
        help="only count lost lives over 200-step dreams from N served and N mid-game starts (seeds 3,000,000+)",
    )
    p.add_argument(
        "--ball-nudge",
        action="store_true",
        help="no model: the ball recall of the real Breakout game against itself with its ball nudged by 1 and 2 "
        "Atari pixels at the start, on the suite's played rollouts (--starts, --seed): how precise a dreamed ball "
        "must be for the ball-recall goal",
    )
    a = p.parse_args(argv)
    if a.ball_nudge:
        from training.world_model.playability.breakout import ball_nudge_reference

        if a.checkpoint or a.starts < 2:
            p.error("--ball-nudge measures the real game: give --starts (>= 2) and --seed, no --checkpoint")
        res = ball_nudge_reference(a.starts, a.seed)
        bands = [k.removeprefix("ball_recall_").replace("_", "-") for k in res["pooled_by_pixels"]["1"]]
        print("| ball nudged by | " + " | ".join(f"ball recall, steps {b}" for b in bands) + " |")
        print("| --- " * (1 + len(bands)) + "|")
        for px, row in res["pooled_by_pixels"].items():
            cells = ("–" if v is None else f"{100 * v:.1f} %" for v in row.values())
            print(f"| {px} Atari px | " + " | ".join(cells) + " |")
        if a.out:
            a.out.parent.mkdir(parents=True, exist_ok=True)
            a.out.write_text(json.dumps(res, indent=1))
        return 0
    if a.checkpoint is None:
        p.error("--checkpoint is required (except with --ball-nudge)")
    if a.starts < 2 or (a.steps is not None and a.steps < 1) or a.long_dreams < 0:
        p.error(f"--starts must be >= 2, --steps >= 1, --long-dreams >= 0, got {a.starts}, {a.steps}, {a.long_dreams}")
    sampler = guidance_overrides(p, a)
    if a.threads:
        torch.set_num_threads(a.threads)
    from model.checkpoint import CheckpointError
    from model.world_model import WorldModel
    from model.world_model.onnx_backend import BackendError

    def quick(measure: Callable, line: Callable[[dict], str], **record) -> int:
        """A one-figure mode: measure(model) -> dict, printed as one line and written to --out."""
        try:
            res = measure(WorldModel.from_snapshot(a.checkpoint))
        except (CheckpointError, ValueError, OSError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(line(res))
        if a.out:
            a.out.parent.mkdir(parents=True, exist_ok=True)
            a.out.write_text(json.dumps({"checkpoint": str(a.checkpoint), **record, **res}, indent=1))
        return 0

    def long_dreams(model) -> dict:
        if model.cfg.game != "Breakout":
            raise ValueError(f"the long-dream count reads Breakout's ball, not {model.cfg.game!r}'s")
        return long_dream_losses(model, a.long_dreams, steps=200, **sampler)

    def belief(model) -> dict:
        if model.cfg.game not in WAITING:
            raise ValueError(f"no serve probe for {model.cfg.game!r}")
        starts = make_starts(model.cfg.game, a.serve_belief, a.seed)["waiting"][: a.serve_belief]
        return serve_belief(model, starts, steps=a.steps, **sampler)

    if a.long_dreams:
        return quick(
            long_dreams,
            lambda b: (
                f"{b['dreams']} dreams x {b['steps']} steps: {b['dream_losses']} lost lives in the dream "
                f"({b['losses_per_100']:.2f} per 100 steps), {b['unexplained']} its own ball did not lose "
                f"({b['unexplained_per_100']:.2f} per 100); the real game lost {b['real_losses']}"
            ),
        )
    if a.serve_belief:
        return quick(
            belief,
            lambda b: (
                f"serve on the first step after FIRE: {b['served']}/{b['dreams']} dreams; brightest field "
                f"pixel of the estimate at sigma_max: FIRE {b['estimate_fire']:.0f}, NOOP {b['estimate_noop']:.0f} "
                "(of 255)"
            ),
            seed=a.seed,
        )
    try:
        model = WorldModel.from_snapshot(a.checkpoint)
        measure_with_backend(model, a.backend)
        ref = json.loads(a.compare.read_text()) if a.compare else None
        res = evaluate_model(model, a.starts, a.seed, a.steps, **sampler)
    except (CheckpointError, BackendError, ValueError, OSError, json.JSONDecodeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    cases = res.pop("_cases")
    res["checkpoint"] = str(a.checkpoint)
    res["backend"] = model.backend
    print(table(res, ref, "compared"))
    missed = goals_missed(res)
    print("goals missed: " + ("; ".join(missed) if missed else "none"))
    if ref:
        worse = worse_than(res, ref)
        print("worse than the compared model: " + ("; ".join(worse) if worse else "none"))
        if ref.get("arithmetic") != res["arithmetic"]:  # one rounding apart, dreams part and events move
            print(
                f"note: the compared figures come from other arithmetic ({ref.get('arithmetic', 'not recorded')}; "
                f"here {res['arithmetic']}): a difference of an event or two can come from that alone"
            )
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(res, indent=1))
    if a.image and cases:
        cases_image(cases).save(a.image)
    return 0


if __name__ == "__main__":
    sys.exit(main())
