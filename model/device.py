"""Device and precision selection: CUDA when present, else CPU with bf16 where it is fast."""

from __future__ import annotations

import contextlib
import os
import platform
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn


def pick_device(name: str = "auto") -> torch.device:
    """'auto' -> cuda if available, else cpu. Any explicit name is validated."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {name!r}: expected auto, cpu or cuda[:N]")
    return device


@lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """True on CPUs with AMX or AVX512-BF16, where oneDNN runs bf16 convolutions natively."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def use_bf16(device: torch.device, precision: str = "auto") -> bool:
    """precision: 'auto' (bf16 on CUDA and bf16-capable CPUs), 'bf16' or 'fp32'."""
    if precision not in ("auto", "bf16", "fp32"):
        raise ValueError(f"unknown precision {precision!r}: expected auto, bf16 or fp32")
    if precision == "fp32":
        return False
    if precision == "bf16":
        return True
    return device.type == "cuda" or cpu_has_fast_bf16()


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on the device, or a no-op."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def prepare(module: nn.Module, device: torch.device) -> nn.Module:
    """Move to the device in channels_last memory format (faster convolutions on CPU and GPU)."""
    return module.to(device=device, memory_format=torch.channels_last)


SIMD_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_bf16", "amx_int8")
"""The CPU flags that decide which kernels run fast (written beside every speed figure)."""


def cpu_info() -> tuple[str, set[str]]:
    """The CPU's model name and flags from /proc/cpuinfo (elsewhere: platform.processor() or
    'unknown', and no flags)."""
    name, flags = "", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and not name:
                name = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return name or platform.processor() or "unknown", flags


def arithmetic_info(model: object | None = None) -> dict:
    """What a dream's numbers depend on besides the model's weights and the seeds: the CPU and its SIMD
    flags (which kernels run, and where bf16 rounds), torch, its threads (how reductions are split)
    and, for a loaded world model, its precision and backend (with the backend's revision where its
    rounding changed, `onnx_backend.BACKEND_REVISIONS`). Two measurements of one model agree
    exactly only where this agrees; recorded with every playability and fidelity result
    (training/ship.py reuses a card's figures only where it matches)."""
    info = machine_info()
    out = {k: info[k] for k in ("cpu", "cpu_flags", "torch", "threads")}
    if model is not None:
        backend = getattr(model, "backend", "torch")
        out.update(bf16=bool(getattr(model, "bf16", False)), backend=backend)
        from model.world_model.onnx_backend import BACKEND_REVISIONS  # here: it imports this module

        if BACKEND_REVISIONS.get(backend, 1) != 1:
            out["backend_revision"] = BACKEND_REVISIONS[backend]
    return out


def machine_info() -> dict:
    """What a speed figure depends on: the CPU, its SIMD flags, torch, its threads and CPU kernel
    level, whether bf16 is fast, Python, and the 1-minute load average when measured (a figure taken
    beside a busy process says so)."""
    cpu, flags = cpu_info()
    try:
        load = round(os.getloadavg()[0], 2)
    except OSError:
        load = None
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "cpu_flags": " ".join(f for f in SIMD_FLAGS if f in flags) or "none of " + ",".join(SIMD_FLAGS),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "fast_bf16": cpu_has_fast_bf16(),
        "python": platform.python_version(),
        "load_average_1min": load,
    }
