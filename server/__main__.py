"""Serve Dream Arcade: python -m server [--checkpoint PATH] [--host H] [--port P] ...

Serves every game with a world-model snapshot in --checkpoint-dir (default checkpoints/) plus any
--checkpoint given, and prints the page URL once the models are loaded. Every flag can also be
set from the environment as DREAM_<NAME> (e.g. DREAM_MAX_SESSIONS=4).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import uvicorn

from model.world_model.onnx_backend import BACKENDS
from server.app import create_app
from server.config import Settings


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m server", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", action="append", type=Path, default=None, help="snapshot path (repeatable)")
    p.add_argument("--checkpoint-dir", type=Path, default=None, help="folder of snapshots (default checkpoints/)")
    p.add_argument("--host", default=None, help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default 8000)")
    p.add_argument("--device", default=None, help="auto, cpu or cuda[:N]")
    p.add_argument("--precision", default=None, choices=["auto", "bf16", "fp32"])
    p.add_argument(
        "--backend",
        default=None,
        choices=BACKENDS,
        help="denoiser backend (default auto: onnx-fp32 where faster than torch at batch 1 and 8; int8 only "
        "when named)",
    )
    p.add_argument("--max-sessions", type=int, default=None, help="concurrent players (default 8)")
    p.add_argument("--allow-origin", action="append", default=None, help="extra browser origin ('*' = any)")
    p.add_argument("--idle-timeout", type=float, default=None, help="seconds without a message before closing")
    p.add_argument("--data-dir", type=Path, default=None, help="where saved human play goes (default data/)")
    p.add_argument("--fps", type=int, default=None, help="default frames per second (default 15)")
    p.add_argument("--policy", action="append", default=None, metavar="NAME=module:factory", help="agent policy")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads of the dream (default: an inference process times one thread against every core "
        "and keeps the faster; an inference thread takes all cores but one; docs/serving.md)",
    )
    p.add_argument(
        "--inference",
        default=None,
        choices=["auto", "process", "thread"],
        help="where the dream runs (default auto: a child process on the CPU, a thread on CUDA)",
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return p.parse_args(argv)


def settings_from_args(a: argparse.Namespace) -> Settings:
    overrides = {
        "checkpoints": a.checkpoint,
        "checkpoint_dir": a.checkpoint_dir,
        "host": a.host,
        "port": a.port,
        "device": a.device,
        "precision": a.precision,
        "backend": a.backend,
        "max_sessions": a.max_sessions,
        "allowed_origins": a.allow_origin,
        "idle_timeout_s": a.idle_timeout,
        "data_dir": a.data_dir,
        "default_fps": a.fps,
        "inference": a.inference,
        "threads": a.threads,
    }
    if a.policy:
        overrides["policies"] = dict(spec.split("=", 1) for spec in a.policy if "=" in spec)
    return Settings(announce=True, **{k: v for k, v in overrides.items() if v is not None})


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    logging.basicConfig(level=a.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = settings_from_args(a)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    import torch

    from model.device import pick_device

    # The dream's threads are set where it runs (Engine._load); this process's own torch work (frames
    # in and out of the dream) is small. An inference thread shares this process: one core stays
    # free for the event loop, the emulators and the sockets.
    if settings.inference == "thread" or (settings.inference == "auto" and pick_device(settings.device).type != "cpu"):
        torch.set_num_threads(settings.threads or max(1, (os.cpu_count() or 1) - 1))
    else:
        torch.set_num_threads(1)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=a.log_level,
        ws_max_size=max(65536, settings.max_message_bytes),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
