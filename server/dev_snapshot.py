"""Write an untrained world-model snapshot for development and tests (no training needed).

    python -m server.dev_snapshot --game Breakout --preset tiny --out /tmp/dream-ckpt

The frames it dreams are noise, but everything else (serving, batching, the page) is real.
The 'cpu' preset has the shipped model's size, for realistic speed measurements.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from model.world_model import WorldModel, preset_config
from training.envs import action_meanings


def make_snapshot(out_dir: str | Path, game: str = "Breakout", preset: str = "tiny", seed: int = 0) -> Path:
    """Save <out_dir>/<game>.safetensors + .json; returns the path stem."""
    torch.manual_seed(seed)
    model = WorldModel(preset_config(preset, game, action_meanings(game)))
    path = Path(out_dir) / game
    model.save_snapshot(path, {"note": f"untrained {preset} model for development"})
    return path


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--game", default="Breakout")
    p.add_argument("--preset", default="tiny", choices=["tiny", "cpu", "paper"])
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    print(make_snapshot(a.out, a.game, a.preset))


if __name__ == "__main__":
    main()
