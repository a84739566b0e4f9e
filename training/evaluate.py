"""Measure how faithful a dream is (docs/design.md §6).

Start the dream from a real 4-frame context of a held-out episode, feed it the episode's own
actions, and compare with the real frames at horizons h: whole-frame PSNR, motion PSNR (only
pixels that change between consecutive real frames: ball, paddle, breaking bricks) and SSIM,
beside the trivial repeat-the-last-real-frame predictor. Where the game has a ball in an open
field (Breakout), also ball recall: of the real frames with the ball in the field, the share whose
dream draws a ball within 3 pixels of it (the detail a playable dream must keep; whole-frame PSNR
hardly sees it). Also a long rollout with random keys
checks the dream for collapse (blank, frozen, smeared or saturated frames). The measures
themselves are in training/world_model/fidelity.py (and training/world_model/measures.py); this is their command.

    python training/evaluate.py --checkpoint runs/Breakout/snapshot --data data/Breakout-heldout
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
from PIL import Image

from games.episode_store import EpisodeStore
from model.checkpoint import CheckpointError
from model.world_model import WorldModel
from model.world_model.onnx_backend import BackendError
from training.cli import add_backend_flag, add_guidance_flags, add_precision_flag, guidance_overrides
from training.world_model.fidelity import (
    ball_plot,
    fidelity,
    format_table,
    reward_end_accuracy,
    stability,
    strip_image,
)
from training.world_model.shipping import measure_with_backend


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, required=True, help="snapshot path (without extension)")
    p.add_argument("--data", type=Path, required=True, help="held-out episode store")
    p.add_argument("--starts", type=int, default=8)
    p.add_argument("--horizons", default="1,5,15,50")
    p.add_argument("--steps", type=int, help="denoising steps (default: the model's own)")
    p.add_argument("--heun", action="store_true")
    p.add_argument(
        "--sigma-max", type=float, default=None, help="first noise level of the sampler (default: the model's own)"
    )
    p.add_argument("--stability-steps", type=int, default=500, help="0 to skip the long random-key rollout")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="folder for fidelity.json and strip.png")
    p.add_argument("--device", default="auto")
    add_precision_flag(p, "auto: bf16 autocast where the CPU (or a GPU) runs it fast, as served; fp32 to compare")
    p.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads (0 = torch's default; 1 beside a training run)"
    )
    add_backend_flag(p)
    add_guidance_flags(p, "dream with action-contrast guidance G (default: the model's own sampler setting)")
    args = p.parse_args(argv)
    guidance = guidance_overrides(p, args)
    if args.threads < 0:
        p.error(f"--threads must be >= 0, got {args.threads}")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        from model.device import pick_device

        horizons = tuple(int(h) for h in args.horizons.split(","))
        if not horizons or min(horizons) < 1:
            raise ValueError(f"bad --horizons {args.horizons!r}")
        model = WorldModel.from_snapshot(args.checkpoint, pick_device(args.device), precision=args.precision)
        measure_with_backend(model, args.backend)
        sampler = model.sampler_config(
            num_steps=args.steps, order=2 if args.heun else 1, sigma_max=args.sigma_max, **guidance
        )
        store = EpisodeStore(args.data)
        episodes, errors = store.load_all(model.cfg.game)
        for e in errors:
            print(f"warning: {e}", file=sys.stderr)
        if not episodes:
            raise ValueError(f"no readable {model.cfg.game} episodes in {args.data}")
        res = fidelity(model, episodes, horizons, args.starts, sampler, args.seed, progress=True)
        res["reward_end"] = reward_end_accuracy(model, episodes)
        res["backend"] = model.backend
        stab = None
        if args.stability_steps:
            stab = stability(model, episodes, args.stability_steps, sampler=sampler, seed=args.seed, progress=True)
    except (CheckpointError, BackendError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = args.out or args.checkpoint.parent / "eval"
    out.mkdir(parents=True, exist_ok=True)
    strip_image(res.pop("_dream")[0], res.pop("_real")[0]).save(out / "strip.png")
    if res.get("ball"):
        ball_plot(res["ball"]).save(out / "ball.png")
    if stab is not None:
        Image.fromarray(np.concatenate(list(stab.pop("last_frames")), axis=1)).resize(
            (64 * 4 * 2, 128), Image.NEAREST
        ).save(out / "stability_last.png")
        res["stability"] = stab
    res["checkpoint"] = str(args.checkpoint)
    res["heldout_episodes"] = len(episodes)
    (out / "fidelity.json").write_text(json.dumps(res, indent=1))
    print(format_table(res))
    re = res["reward_end"]
    print(
        f"reward/end on {re['transitions']} held-out transitions: reward acc {re['reward_accuracy']:.3f} "
        f"(recall {re['reward_recall']}), end acc {re['end_accuracy']:.3f} (recall {re['end_recall']})"
    )
    if stab is not None:
        print(f"stability over {stab['steps']} random-key steps: collapse={stab['collapse']}")
        for c in stab["per_100_steps"]:
            print(f"  {c}")
    print(f"wrote {out / 'fidelity.json'} and {out / 'strip.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
