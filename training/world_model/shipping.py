"""What the two ship commands share: training/ship.py (a world model) and training/agent/ship.py
(an agent trained in its dream) both copy a snapshot into checkpoints/ and write a model card."""

from __future__ import annotations

import json
from pathlib import Path

from model.world_model.onnx_backend import BACKENDS

MAX_FILE_BYTES = 25 * 1024 * 1024
"""The largest file either command ships (checkpoints/ is committed to git)."""

MEASURED_BACKENDS = tuple(b for b in BACKENDS if b != "auto")
"""The denoiser backends a measurement can run: one path each, not the server's timed choice."""


def measure_with_backend(model, backend: str) -> str:
    """Make a loaded world model dream with `backend` as the server would run it (int8 calibrated on
    the same real play of its game, `INT8_CALIBRATION_CONTEXTS` contexts from seed 0); returns what
    runs. For playability.py / evaluate.py --backend: the figures of the path players get."""
    from games.contexts import play_contexts
    from model.world_model.onnx_backend import INT8_CALIBRATION_CONTEXTS, use_backend

    if backend not in MEASURED_BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: expected one of {', '.join(MEASURED_BACKENDS)}")
    calibration = None
    if backend == "onnx-int8":
        calibration = play_contexts(model.cfg.game, INT8_CALIBRATION_CONTEXTS, context_frames=model.cfg.context_frames)
    model.backend = use_backend(model, backend, calibration)
    return model.backend


def read_run_args(run_dir: Path) -> dict:
    """The train.py arguments of the run (args.json), or {} if absent."""
    try:
        return json.loads((run_dir / "args.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}
