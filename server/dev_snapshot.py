"""Write an untrained world-model snapshot for development and tests (no training needed).

    python -m server.dev_snapshot --game Breakout --preset tiny --out /tmp/dream-ckpt [--agent]

With --agent also an untrained actor-critic (`<Game>-agent`, uniform policy), which the server
offers as the control "agent".

The frames it dreams are noise, but everything else (serving, batching, the page) is real.
The 'cpu' preset has the shipped model's size, for realistic speed measurements.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from games.envs import action_meanings
from model.agent import ActorCritic, agent_preset
from model.world_model import WorldModel, preset_config


def make_snapshot(out_dir: str | Path, game: str = "Breakout", preset: str = "tiny", seed: int = 0) -> Path:
    """Save <out_dir>/<game>.safetensors + .json; returns the path stem."""
    torch.manual_seed(seed)
    model = WorldModel(preset_config(preset, game, action_meanings(game)))
    path = Path(out_dir) / game
    model.save_snapshot(path, {"note": f"untrained {preset} model for development"})
    return path


def make_agent_snapshot(out_dir: str | Path, game: str = "Breakout", preset: str = "tiny", seed: int = 0) -> Path:
    """Save <out_dir>/<game>-agent.safetensors + .json (an untrained actor-critic); returns the stem."""
    torch.manual_seed(seed)
    agent = ActorCritic(agent_preset(preset, game, action_meanings(game)))
    path = Path(out_dir) / f"{game}-agent"
    agent.save_snapshot(path, {"note": f"untrained {preset} agent for development"})
    return path


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--game", default="Breakout")
    p.add_argument("--preset", default="tiny", choices=["tiny", "cpu", "paper"])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--agent", action="store_true", help="also write an untrained tiny actor-critic")
    a = p.parse_args(argv)
    print(make_snapshot(a.out, a.game, a.preset))
    if a.agent:
        print(make_agent_snapshot(a.out, a.game, "tiny"))


if __name__ == "__main__":
    main()
