"""The settings every world-model run shares, and how a run reads its command line.

`train.py`'s `Args` and `train.py --agent`'s `LoopArgs` (training/agent/loop.py) both extend
`WorldModelOptions`: each setting of the world model's training (game, size, optimiser, batch,
autoregressive contexts, loss settings, device) has one flag, one check and one help text, whichever
loop runs it; a subclass may give a field another default (the agent loop's lr).

    a = parse_run_args(Args, argv, description=__doc__)

With `--resume`, the run's recorded settings (its `args.json`) are the defaults and flags given again
win, in both loops. A bad value exits 2 with argparse's message naming the flag.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from model.world_model import PRESETS, WorldModelConfig
from training.cli import dataclass_parser, recorded_defaults

LOSS_OVERRIDES = (
    "motion_weight",
    "context_noise_scale",
    "context_noise_clean_prob",
    "motion_on_prediction",
    "motion_source",
    "region_weight",
    "region",
)
"""Denoiser loss settings a run may set for itself (model/world_model/denoiser.DenoiserConfig fields)."""

MOTION_SOURCES = ("target", "context")


@dataclass
class WorldModelOptions:
    """How a world model trains, in `train.py` and in `train.py --agent`."""

    game: str = "Breakout"
    """ALE game name."""
    preset: str = "cpu"
    """World-model size: 'cpu' (fits a 2-core CPU), 'paper' (DIAMOND's Atari U-Net, for a GPU) or
    'tiny' (tests). A resumed run and a model started from a snapshot keep their own."""
    run_dir: Path | None = None
    """Output folder (default runs/<game>; train.py --agent: runs/<game>-agent)."""
    data: Path | None = None
    """Training episode store (default data/<game>, collected if empty; train.py --agent:
    data/<game>-loop, where its collection appends)."""
    batch_size: int = 32
    """World-model batch: denoiser windows (train.py trains the reward/end model on a quarter as many
    sequences beside each denoiser step; train.py --agent on as many in its own steps)."""
    re_seq: int = 8
    """Sequence length for the reward/end model's LSTM."""
    lr: float = 2e-4
    """World-model learning rate (AdamW, the denoiser's and the reward/end model's), reached after
    --warmup steps of linear warm-up."""
    weight_decay: float = 1e-2
    """AdamW weight decay of the world model."""
    warmup: int = 100
    """Steps of linear learning-rate warm-up."""
    grad_clip: float = 1.0
    """Clip of the world model's gradient norm."""
    ema_decay: float = 0.999
    """Decay of the EMA weights: what snapshots hold, what dreams and autoregressive contexts use."""
    ar_frames: int = 0
    """Autoregressive training: the last K context frames of a sample are dreamed by the EMA
    model (3 Euler steps, as in play) from the real frames before them, so the denoiser learns
    to carry the ball and paddle through its own errors. 0 = off."""
    ar_fraction: float = 0.5
    """Fraction of each batch trained on dreamed contexts when --ar-frames > 0."""
    motion_weight: float | None = None
    """Override the denoiser's extra loss weight on moving pixels (default: the preset's or the
    starting snapshot's value). The loss settings are training-only: they change no weight shapes,
    and a resumed run keeps its own."""
    context_noise_scale: float | None = None
    """Override the context-noise std per augmentation level."""
    context_noise_clean_prob: float | None = None
    """Override the probability of a clean (level 0) context."""
    motion_source: str | None = None
    """Override where the motion weight comes from: 'target' (pixels that move into the target;
    biases the model towards drawing motion) or 'context' (pixels that moved between the last two
    context frames; leaves the optimum unbiased)."""
    motion_on_prediction: bool | None = None
    """Override whether the motion weight also covers pixels where the model's own estimate
    moves (--motion-on-prediction: a phantom ball costs as much as a missed one)."""
    region_weight: float | None = None
    """Override the extra loss weight on the fixed box --region (e.g. a game's score, so that a new
    digit, a few pixels on a rare step, gets a share of the loss; the optimum stays unbiased)."""
    region: str | None = None
    """The box --region-weight covers, top,bottom,left,right of the 64x64 frame (Boxing's scores:
    0,4,0,64)."""
    seed: int = 0
    """Seed of torch, numpy and the training-window samplers."""
    device: str = "auto"
    """auto (CUDA when a GPU is there, else CPU), cpu, cuda or cuda:N."""
    precision: str = "auto"
    """auto (bf16 on CUDA and bf16-capable CPUs), bf16 or fp32 (the world model's)."""
    threads: int = 0
    """torch CPU threads (0 = torch's default)."""
    resume: bool = False
    """Continue the stopped run in the run folder with the settings it recorded (args.json); flags
    given again override them."""
    progress: bool = True
    """Progress bars."""

    def default_run_dir(self) -> Path:
        return Path("runs") / self.game

    @property
    def run_path(self) -> Path:
        """--run-dir, or the loop's default folder for the game."""
        return self.run_dir or self.default_run_dir()

    def __post_init__(self) -> None:
        """ValueError naming the flag for a value no run can use."""
        for name in ("batch_size", "re_seq"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{flag(name)} must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "weight_decay", "warmup", "grad_clip", "threads", "ar_frames"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{flag(name)} must be >= 0, got {getattr(self, name)}")
        for name in ("ema_decay", "ar_fraction", "context_noise_clean_prob"):
            v = getattr(self, name)
            if v is not None and not 0 <= v <= 1:
                raise ValueError(f"--{flag(name)} must be in [0, 1], got {v}")
        if self.region is not None:
            try:
                box = tuple(int(v) for v in self.region.split(","))
            except ValueError:
                box = ()
            if len(box) != 4 or not (0 <= box[0] < box[1] and 0 <= box[2] < box[3]):
                raise ValueError(f"--region must be top,bottom,left,right of a non-empty box, got {self.region!r}")
        for name in ("motion_weight", "context_noise_scale", "region_weight"):
            v = getattr(self, name)
            if v is not None and v < 0:
                raise ValueError(f"--{flag(name)} must be >= 0, got {v}")
        if self.motion_source is not None and self.motion_source not in MOTION_SOURCES:
            raise ValueError(f"--motion-source must be one of {', '.join(MOTION_SOURCES)}, got {self.motion_source!r}")
        if self.preset not in PRESETS:
            raise ValueError(f"--preset must be one of {', '.join(PRESETS)}, got {self.preset!r}")

    def loss_overrides(self) -> dict[str, Any]:
        """The loss settings given on the command line, by DenoiserConfig field."""
        out = {k: getattr(self, k) for k in LOSS_OVERRIDES if getattr(self, k) is not None}
        if "region" in out:
            out["region"] = tuple(int(v) for v in out["region"].split(","))
        return out


def flag(name: str) -> str:
    return name.replace("_", "-")


def with_loss_settings(cfg: WorldModelConfig, opts: WorldModelOptions, resumed: bool) -> WorldModelConfig:
    """`cfg` with the loss settings `opts` give. A resumed run keeps its own: ValueError if one given
    differs from the run's."""
    overrides = opts.loss_overrides()
    if resumed:
        changed = {k: v for k, v in overrides.items() if getattr(cfg.denoiser, k) != v}
        if changed:
            raise ValueError(
                "a resumed run keeps its loss settings; it has "
                + ", ".join(f"{k}={getattr(cfg.denoiser, k)}" for k in changed)
            )
        return cfg
    d = cfg.to_dict()
    d["denoiser"] = {**d["denoiser"], **overrides}
    return WorldModelConfig(**d)


Options = TypeVar("Options", bound=WorldModelOptions)


def parse_run_args(
    cls: type[Options],
    argv: Sequence[str] | None,
    choices: Mapping[str, Sequence[str]] | None = None,
    **parser_kwargs: Any,
) -> Options:
    """Read a run's command line into `cls` (a WorldModelOptions); with --resume the settings the run
    recorded in its args.json are the defaults. A bad value exits 2 naming the flag."""
    p = dataclass_parser(
        cls,
        choices={"preset": PRESETS, "motion_source": MOTION_SOURCES, **(choices or {})},
        formatter_class=argparse.RawDescriptionHelpFormatter,
        **parser_kwargs,
    )

    def build() -> Options:
        try:
            return cls(**vars(p.parse_args(argv)))
        except ValueError as e:
            p.error(str(e))
            raise  # unreachable: p.error exits

    a = build()
    record = a.run_path / "args.json"
    if a.resume and record.is_file():
        try:
            p.set_defaults(**recorded_defaults(cls, json.loads(record.read_text()), skip=("resume",)))
        except (ValueError, json.JSONDecodeError) as e:
            p.error(f"cannot read {record}: {e}")
        a = build()
    return a
