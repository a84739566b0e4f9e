"""Server settings, from one place: defaults < environment (DREAM_*) < command-line flags."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from model.world_model.onnx_backend import BACKENDS

WEB_DIR = Path(__file__).resolve().parents[1] / "web"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DREAM_", extra="ignore")

    # -- models ---------------------------------------------------------------------------
    checkpoint_dir: Path = Path("checkpoints")
    """Folder scanned for world-model snapshots (<Game>.safetensors + <Game>.json)."""
    checkpoints: list[Path] = Field(default_factory=list)
    """Extra snapshot paths (with or without suffix); they win over the folder for the same game."""
    device: str = "auto"
    """auto, cpu or cuda[:N]."""
    precision: str = "auto"
    """auto (bf16 where fast), bf16 or fp32."""
    backend: str = "auto"
    """Denoiser backend: auto (onnx-fp32 where it is faster than torch at batch 1 and 8, timed at
    start-up; torch on CUDA or without onnxruntime), torch, onnx-fp32 or onnx-int8 (opt-in: calibrated on real emulator
    frames, dreams a little differently; docs/serving.md)."""
    inference: str = "auto"
    """Where the dream runs: process (a child process whose main thread runs the model: on a CPU
    torch's threads are several times faster there than in a second thread), thread (an inference
    thread of the server's process) or auto (process on the CPU, thread on CUDA). server/model_process.py."""
    threads: int = Field(0, ge=0, le=256)
    """Torch threads of the dream (0 = chosen: an inference process times one thread against every
    core at start-up and keeps the faster; an inference thread takes all cores but one, as it shares
    its process with the event loop)."""
    policies: dict[str, str] = Field(default_factory=dict)
    """Extra agent policies: name -> 'module:factory', factory(game, action_meanings) -> Policy."""

    # -- network --------------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    allowed_origins: list[str] = Field(default_factory=list)
    """Browser origins allowed to open the websocket besides the page's own ('*' = any)."""
    max_sessions: int = Field(8, ge=1, le=256)
    """Concurrent websockets, players (/ws) and policy viewers (/ws/viewer) together; one more is told
    `server_full` and closed with 1013."""
    idle_timeout_s: float = Field(300.0, gt=0)
    """Close a connection (code 4001) that sent nothing for this long."""
    max_message_bytes: int = Field(4096, ge=256, le=65536)
    """Larger client messages get `too_big` and close code 1009."""
    rate_limit_per_s: float = Field(60.0, gt=0)
    """Sustained client messages per second; bursts up to rate_burst."""
    rate_burst: int = Field(120, ge=1)
    flood_close_after: int = Field(300, ge=1)
    """Messages dropped by the rate limit before the connection is closed with 4008."""
    max_errors: int = Field(100, ge=1)
    """Rejected messages before the connection is closed with 4008."""
    start_rate_per_s: float = Field(2.0, gt=0)
    """Most `start` messages a connection may send per second; more are refused (`too_many_starts`)."""

    # -- play -----------------------------------------------------------------------------
    default_fps: int = Field(15, ge=1, le=30)
    max_batch: int = Field(16, ge=1, le=256)
    """Most dreams the inference worker denoises in one call."""
    env_threads: int = Field(4, ge=1, le=64)
    """Threads that step the emulators (off the event loop)."""
    data_dir: Path = Path("data")
    """Human demonstrations saved from Real play go to <data_dir>/<Game>."""
    max_episode_steps: int = Field(10_000, ge=10)
    """Longest real episode kept in memory for saving (about 120 MB at 64x64 RGB)."""
    web_dir: Path = WEB_DIR
    announce: bool = False
    """Print the page URL once the models are loaded (python -m server sets it)."""

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if v != "auto" and not (v == "cpu" or v.startswith("cuda")):
            raise ValueError(f"device must be auto, cpu or cuda[:N], got {v!r}")
        return v

    @field_validator("backend")
    @classmethod
    def _backend(cls, v: str) -> str:
        if v not in BACKENDS:
            raise ValueError(f"backend must be auto, torch, onnx-fp32 or onnx-int8, got {v!r}")
        return v

    @field_validator("inference")
    @classmethod
    def _inference(cls, v: str) -> str:
        if v not in ("auto", "process", "thread"):
            raise ValueError(f"inference must be auto, process or thread, got {v!r}")
        return v

    @field_validator("precision")
    @classmethod
    def _precision(cls, v: str) -> str:
        if v not in ("auto", "bf16", "fp32"):
            raise ValueError(f"precision must be auto, bf16 or fp32, got {v!r}")
        return v
