"""What L frames can know: the player-control ceiling of a world model that sees L frames (no model).

    python training/twins.py --game Boxing --contexts 4,8,16 --starts 24 --draws 100 \\
        --out docs/models/Boxing-twins.json

Twins are real emulator states whose last L frames are pixel-equal to those of a real start but
whose hidden RAM (random numbers, the computer's timers) differs; where they part under the same
held move, no L-frame model can follow both. The ceiling is how often a model that draws the right
distribution would end its player within 1 pixel of the real one after the control probe's held
moves (training/world_model/playability/twins.py). Emulator only, one core; the command above took about
10 minutes beside a training run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.world_model.playability.twins import CONTROL, TWINS_SEED, context_ceilings


def contexts_arg(text: str) -> list[int]:
    try:
        out = [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--contexts wants frame counts like 4,8,16, got {text!r}") from None
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"--contexts wants counts >= 1, got {text!r}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--game", required=True, choices=sorted(CONTROL))
    p.add_argument("--contexts", type=contexts_arg, default=[4, 8, 16], help="frames a model sees, e.g. 4,8,16")
    p.add_argument("--starts", type=int, default=24, help="in-play starts (episode seeds from --seed)")
    p.add_argument("--draws", type=int, default=100, help="draws of the hidden bytes per start and context")
    p.add_argument("--held-steps", type=int, default=8, help="steps each move is held (the control probe's 8)")
    p.add_argument("--seed", type=int, default=TWINS_SEED, help="first episode seed of the starts")
    p.add_argument("--out", type=Path, default=None, help="JSON output")
    a = p.parse_args(argv)
    if a.starts < 1 or a.draws < 1 or a.held_steps < 1:
        p.error(f"--starts, --draws and --held-steps must be >= 1, got {a.starts}, {a.draws}, {a.held_steps}")
    try:
        res = context_ceilings(a.game, a.contexts, a.starts, a.draws, a.held_steps, a.seed)
    except ValueError as e:
        p.error(str(e))
    hidden = ", ".join(f"{j} ({r['parted']}/{r['twins']})" for j, r in res["hidden_bytes"].items())
    print(f"{a.game}: hidden RAM bytes in {res['hidden_from']} frames (starts whose twin parted / made one): {hidden}")
    print("| frames seen | twins of draws | move pairs that part | starts where a twin parts | control ceiling |")
    print("| --- | --- | --- | --- | --- |")
    for L, c in res["by_context"].items():
        part = "–" if not c["twin_move_pairs"] else f"{100 * c['parted'] / c['twin_move_pairs']:.1f} %"
        ceil = "–" if c["ceiling"] is None else f"{100 * c['ceiling']:.1f} %"
        some = f"{c['starts_with_a_parting_twin']} of {c['starts']}"
        print(f"| {L} | {c['twins']} of {c['draws']} | {part} | {some} | {ceil} |")
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(res, indent=1) + "\n")
        print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
