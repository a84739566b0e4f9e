"""The websocket protocol: one pydantic model per message type, and the binary frame layout.

Documented for client writers in docs/protocol.md; keep the two in step.
"""

from __future__ import annotations

import json
import struct
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

PROTOCOL_VERSION = 1
FRAME_MAGIC = b"DAF1"
MAX_SEQ = 2**53 - 1

Mode = Literal["dream", "real", "side"]
SamplerName = Literal["euler", "heun"]


class CloseCode:
    """Websocket close codes the server uses (docs/protocol.md, "Close codes")."""

    NORMAL = 1000
    ORIGIN_REJECTED = 1008  # Origin not in the allow list (before the handshake completes)
    TOO_BIG = 1009  # a message over max_message_bytes
    INTERNAL = 1011  # the session failed; other sessions are unaffected
    RESTART = 1012  # server stopping or restarting (what uvicorn sends every websocket on SIGTERM)
    SERVER_FULL = 1013  # "try again later": the session cap is reached
    IDLE = 4001  # nothing received for idle_timeout_s
    ABUSE = 4008  # too many rejected or rate-limited messages


class _Msg(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


# -- client -> server ----------------------------------------------------------------------
class Start(_Msg):
    type: Literal["start"]
    game: str = Field(max_length=64)
    mode: Mode = "side"
    steps: int | None = Field(None, ge=1, le=10)  # None: the model's own (3; 1 for a distilled one)
    sampler: SamplerName = "euler"
    fps: int | None = Field(None, ge=1, le=30)
    control: str = Field("human", max_length=64)
    seed: int | None = Field(None, ge=0, le=2**31 - 1)


class Input(_Msg):
    type: Literal["input"]
    seq: int = Field(ge=0, le=MAX_SEQ)
    action: int = Field(ge=0, le=255)


class Reset(_Msg):
    type: Literal["reset"]
    seed: int | None = Field(None, ge=0, le=2**31 - 1)


class Pause(_Msg):
    type: Literal["pause"]
    paused: bool | None = None  # None toggles


class Step(_Msg):
    type: Literal["step"]


class Resync(_Msg):
    type: Literal["resync"]


class Configure(_Msg):
    type: Literal["configure"]
    mode: Mode | None = None
    steps: int | None = Field(None, ge=1, le=10)
    sampler: SamplerName | None = None
    fps: int | None = Field(None, ge=1, le=30)
    control: str | None = Field(None, max_length=64)


class SaveEpisode(_Msg):
    type: Literal["save_episode"]


class Ping(_Msg):
    type: Literal["ping"]
    t: float | int | None = None


ClientMessage = Annotated[
    Start | Input | Reset | Pause | Step | Resync | Configure | SaveEpisode | Ping, Field(discriminator="type")
]
CLIENT_TYPES = ("start", "input", "reset", "pause", "step", "resync", "configure", "save_episode", "ping")
client_message = TypeAdapter(ClientMessage)


# -- server -> client (JSON text) ----------------------------------------------------------
class Hello(_Msg):
    type: Literal["hello"] = "hello"
    protocol: int = PROTOCOL_VERSION
    games: list[str]
    max_message_bytes: int
    idle_timeout_s: float


class PlaySettings(_Msg):
    mode: Mode
    steps: int
    sampler: SamplerName
    fps: int
    control: str
    paused: bool
    over: bool


class Ready(_Msg):
    type: Literal["ready"] = "ready"
    session: str
    game: str
    action_meanings: list[str]
    keymap: dict[str, Any]
    policies: list[str]
    control_modes: dict[str, list[Mode]]  # per control in `policies`: the modes it can play in
    context_frames: int
    width: int
    height: int
    settings: PlaySettings


class State(_Msg):
    type: Literal["state"] = "state"
    settings: PlaySettings
    reason: str


class EpisodeEnd(_Msg):
    type: Literal["episode_end"] = "episode_end"
    length: int
    real_return: float
    dream_return: float | None


class Saved(_Msg):
    type: Literal["saved"] = "saved"
    file: str
    path: str
    length: int
    real_return: float
    download: str
    """Where to download the file: GET /api/episodes/<opaque id>."""


class Error(_Msg):
    type: Literal["error"] = "error"
    code: str
    message: str
    fatal: bool = False


class Pong(_Msg):
    type: Literal["pong"] = "pong"
    t: float | int | None = None
    server_time: float


# -- server -> client (binary frame) -------------------------------------------------------
class RealInfo(_Msg):
    reward: float
    done: bool
    lives: int
    episode_return: float


class DreamInfo(_Msg):
    reward: float  # drawn from the reward head
    end_prob: float  # P(end) from the end head
    end: bool  # the end drawn this tick (a lost life in the dream)
    lives: int  # the real lives at the dream's seed, less the dream's ends
    episode_return: float


class AgentInfo(_Msg):
    probs: list[float]  # pi(a | frames so far) over the game's minimal action set
    value: float  # V: the critic's estimate of the discounted return from here


class FrameHeader(_Msg):
    type: Literal["frame"] = "frame"
    tick: int
    seq: int  # last applied input sequence number, -1 before the first input
    action: int
    mode: Mode
    width: int
    height: int
    frames: list[Literal["real", "dream"]]  # order of the RGB payloads after the header
    real: RealInfo | None
    dream: DreamInfo | None
    agent: AgentInfo | None = None  # when a trained agent chose this tick's action
    waiting_for_serve: bool = False  # the game waits for FIRE (Breakout before a serve)
    ms: float  # server ms to produce this tick's dream frame (0 in real mode)
    tick_ms: float  # server ms for the whole tick (emulator + dream)
    fps: float  # ticks per second over the last second
    drops: int  # frames this connection dropped so far (client too slow)
    server_time: float  # unix time in ms when the frame was sent off


def encode_frame(header: FrameHeader, frames: list[np.ndarray]) -> bytes:
    """'DAF1' | uint32 LE header length N | N bytes UTF-8 JSON header | raw RGB (H, W, 3) frames."""
    head = header.model_dump_json().encode()
    parts = [FRAME_MAGIC, struct.pack("<I", len(head)), head]
    parts += [np.ascontiguousarray(f, dtype=np.uint8).tobytes() for f in frames]
    return b"".join(parts)


def decode_frame(data: bytes) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The inverse of encode_frame, for clients and tests: header dict, {name: (H, W, 3) uint8}."""
    if data[:4] != FRAME_MAGIC:
        raise ValueError("not a Dream Arcade frame message (bad magic)")
    (n,) = struct.unpack_from("<I", data, 4)
    header = json.loads(data[8 : 8 + n])
    h, w = header["height"], header["width"]
    size, off = h * w * 3, 8 + n
    if len(data) != off + size * len(header["frames"]):
        raise ValueError("frame message length does not match its header")
    frames = {}
    for i, name in enumerate(header["frames"]):
        frames[name] = np.frombuffer(data, dtype=np.uint8, count=size, offset=off + i * size).reshape(h, w, 3)
    return header, frames
