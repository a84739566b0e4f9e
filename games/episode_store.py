"""On-disk episode store: one compressed .npz per episode, written atomically, plus an index.

An episode of T steps holds `obs` uint8 (T+1, 64, 64, 3) — obs[0] is the reset frame — and,
per step t, the `actions` taken at obs[t], the `rewards` received, `terminated` (game over),
`life_lost` and `lives`. Metadata (game, policy, seed, action meanings) sits in the index and in
the file. Files load with allow_pickle=False. A corrupt or truncated file is reported by name
and skipped; the rest of the store stays usable.
"""

from __future__ import annotations

import io
import json
import logging
import os
import threading
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from games.files import atomic_write_bytes

log = logging.getLogger(__name__)

INDEX = "index.json"


class CorruptEpisodeError(RuntimeError):
    """An episode file is truncated, corrupt or inconsistent. The message names the file."""


@dataclass
class Episode:
    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    life_lost: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.actions)

    def validate(self, where: str = "episode") -> None:
        t = len(self.actions)
        if self.obs.dtype != np.uint8 or self.obs.ndim != 4 or self.obs.shape[-1] != 3:
            raise CorruptEpisodeError(
                f"{where}: obs must be uint8 (T+1, H, W, 3), got {self.obs.dtype} {self.obs.shape}"
            )
        if len(self.obs) != t + 1:
            raise CorruptEpisodeError(f"{where}: {len(self.obs)} frames for {t} actions (expected {t + 1})")
        for name in ("rewards", "terminated", "life_lost"):
            if len(getattr(self, name)) != t:
                raise CorruptEpisodeError(f"{where}: {name} has length {len(getattr(self, name))}, expected {t}")
        if t == 0:
            raise CorruptEpisodeError(f"{where}: empty episode")

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez_compressed(
            buf,
            obs=self.obs,
            actions=self.actions.astype(np.int64),
            rewards=self.rewards.astype(np.float32),
            terminated=self.terminated.astype(bool),
            life_lost=self.life_lost.astype(bool),
            meta=np.frombuffer(json.dumps(self.meta).encode(), dtype=np.uint8),
        )
        return buf.getvalue()

    @classmethod
    def from_file(cls, path: Path) -> Episode:
        try:
            with np.load(path, allow_pickle=False) as z:
                ep = cls(
                    obs=z["obs"],
                    actions=z["actions"],
                    rewards=z["rewards"],
                    terminated=z["terminated"],
                    life_lost=z["life_lost"],
                    meta=json.loads(z["meta"].tobytes().decode()),
                )
        except FileNotFoundError:
            raise CorruptEpisodeError(f"episode file missing: {path}") from None
        except (
            OSError,
            ValueError,
            KeyError,
            EOFError,
            zipfile.BadZipFile,
            json.JSONDecodeError,
            UnicodeDecodeError,
        ) as e:
            raise CorruptEpisodeError(f"corrupt or truncated episode file {path}: {e}") from None
        ep.validate(str(path))
        return ep


class EpisodeStore:
    """A folder of episodes. Safe against a kill mid-write: files appear whole or not at all."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _index_path(self) -> Path:
        return self.root / INDEX

    def index(self) -> list[dict[str, Any]]:
        """Entries {file, length, game, ...}; rebuilt from the files if the index is absent or stale."""
        p = self._index_path()
        files = sorted(f.name for f in self.root.glob("ep_*.npz")) if self.root.is_dir() else []
        entries: list[dict[str, Any]] = []
        if p.is_file():
            try:
                entries = [dict(e, file=e["file"]) for e in json.loads(p.read_text())["episodes"]]  # list of dicts
            except (json.JSONDecodeError, KeyError, TypeError):
                log.warning("index %s is corrupt; rebuilding it from the episode files", p)
                entries = []
        known = {e["file"] for e in entries}
        if known != set(files):
            entries = [e for e in entries if e["file"] in set(files)]
            for name in sorted(set(files) - known):
                try:
                    ep = Episode.from_file(self.root / name)
                except CorruptEpisodeError as e:
                    log.error("%s", e)
                    continue
                entries.append(self._entry(name, ep))
            entries.sort(key=lambda e: e["file"])
        return entries

    @staticmethod
    def _entry(name: str, ep: Episode) -> dict[str, Any]:
        return {
            "file": name,
            "length": len(ep),
            "return": float(ep.rewards.sum()),
            **{k: ep.meta[k] for k in ("game", "policy", "seed", "source") if k in ep.meta},
        }

    def _write_index(self, entries: list[dict[str, Any]]) -> None:
        atomic_write_bytes(self._index_path(), json.dumps({"episodes": entries}, indent=1).encode())

    def add(self, ep: Episode) -> str:
        """Write one episode atomically and update the index; returns its file name.

        Several writers (two collectors, server sessions) may add to one store at once: the
        file is written under a temporary name and then hard-linked to the first free
        `ep_NNNNNN.npz`, which fails rather than overwrites when another writer took it.
        The index may then miss the other writer's entry; `index()` adds it back from the files.
        """
        ep.validate("new episode")
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".ep_{os.getpid()}_{threading.get_ident()}.npz.tmp"
        atomic_write_bytes(tmp, ep.to_bytes())
        try:
            i = len(list(self.root.glob("ep_*.npz")))
            while True:
                name = f"ep_{i:06d}.npz"
                try:
                    os.link(tmp, self.root / name)
                    break
                except FileExistsError:
                    i += 1
        finally:
            tmp.unlink(missing_ok=True)
        entries = self.index()
        if name not in {e["file"] for e in entries}:
            entries.append(self._entry(name, ep))
        self._write_index(entries)
        return name

    def load(self, name: str) -> Episode:
        return Episode.from_file(self.root / name)

    def load_all(self, game: str | None = None) -> tuple[list[Episode], list[str]]:
        """All readable episodes (of one game, if given) and the errors for unreadable ones."""
        episodes, errors = [], []
        for e in self.index():
            if game is not None and e.get("game") not in (None, game):
                continue
            try:
                episodes.append(self.load(e["file"]))
            except CorruptEpisodeError as err:
                errors.append(str(err))
        return episodes, errors

    def num_steps(self, game: str | None = None) -> int:
        return sum(e["length"] for e in self.index() if game is None or e.get("game") in (None, game))

    def __len__(self) -> int:
        return len(self.index())


def remove_stale_temp_files(root: str | Path) -> int:
    """Delete temp files a killed writer left behind; returns how many."""
    n = 0
    for p in Path(root).glob(".*.tmp"):
        os.unlink(p)
        n += 1
    return n
