"""Checkpoints that load without executing pickle: safetensors tensors + a JSON sidecar.

Two kinds (nanoGPT / EDM habit):
- an inference snapshot: `<name>.safetensors` (weights) + `<name>.json` (config and metadata);
- a full resume state: any nested dict of tensors and plain values (weights, optimiser, step,
  RNG), split into the same two files.

Every file is written to a temporary name, flushed to disk and renamed over the old one
(games/files.py), so a kill or a full disk leaves the previous checkpoint intact. The JSON is
written last and names the weights' checksum, so a half-written pair is detected on load.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from games.files import atomic_write_bytes

FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint is missing, truncated, corrupt or does not match the model."""


def _flatten(tree: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Move tensors out of a nested structure into `tensors`; return the JSON-able remainder."""
    if isinstance(tree, torch.Tensor):
        tensors[prefix] = tree.detach().cpu().contiguous()
        return {"__tensor__": prefix}
    if isinstance(tree, dict):
        return {"__dict__": [[k, _flatten(v, f"{prefix}/{k}", tensors)] for k, v in tree.items()]}
    if isinstance(tree, (list, tuple)):
        kind = "__list__" if isinstance(tree, list) else "__tuple__"
        return {kind: [_flatten(v, f"{prefix}/{i}", tensors) for i, v in enumerate(tree)]}
    if tree is None or isinstance(tree, (bool, int, float, str)):
        return tree
    raise TypeError(f"cannot store a {type(tree).__name__} at {prefix!r} in a checkpoint")


def _unflatten(tree: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(tree, dict):
        if "__tensor__" in tree:
            return tensors[tree["__tensor__"]]
        if "__dict__" in tree:
            return {k: _unflatten(v, tensors) for k, v in tree["__dict__"]}
        if "__list__" in tree:
            return [_unflatten(v, tensors) for v in tree["__list__"]]
        if "__tuple__" in tree:
            return tuple(_unflatten(v, tensors) for v in tree["__tuple__"])
    return tree


def save(path: str | Path, tree: dict[str, Any], meta: dict[str, Any] | None = None) -> None:
    """Save a nested dict (tensors anywhere) as `path.safetensors` + `path.json`.

    The safetensors file is self-describing (its metadata header holds the structure and meta), so
    it alone is the checkpoint and it is replaced in one atomic rename; the JSON is a readable copy.
    """
    path = Path(path)
    tensors: dict[str, torch.Tensor] = {}
    structure = _flatten(tree, "", tensors)
    doc = {"format_version": FORMAT_VERSION, "meta": meta or {}, "structure": structure}
    tensors = tensors or {"__empty__": torch.zeros(0)}
    plain = st_save(tensors)
    doc["data_sha256"] = hashlib.sha256(plain[8 + int.from_bytes(plain[:8], "little") :]).hexdigest()
    blob = st_save(tensors, metadata={"dream_arcade": json.dumps(doc)})
    atomic_write_bytes(path.with_suffix(".safetensors"), blob)
    doc["weights_sha256"] = hashlib.sha256(blob).hexdigest()
    atomic_write_bytes(path.with_suffix(".json"), json.dumps(doc, indent=1).encode())


def _header_doc(blob: bytes) -> dict[str, Any] | None:
    """The document stored in a safetensors file's metadata header, if any."""
    if len(blob) < 8:
        return None
    n = int.from_bytes(blob[:8], "little")
    try:
        header = json.loads(blob[8 : 8 + n])
        text = header.get("__metadata__", {}).get("dream_arcade")
        return json.loads(text) if text else None
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return None


def read_meta(path: str | Path) -> dict[str, Any]:
    """A checkpoint's meta (kind, config, ...) without reading its weights: the safetensors header,
    else the JSON sidecar. Raises CheckpointError naming the file."""
    path = Path(path)
    wpath, jpath = path.with_suffix(".safetensors"), path.with_suffix(".json")
    try:
        with open(wpath, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            doc = _header_doc(n.to_bytes(8, "little") + f.read(min(n, 16 << 20)))
        if doc is None:
            doc = json.loads(jpath.read_text())
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"corrupt checkpoint config {jpath}: {e}") from None
    meta = doc.get("meta", {}) if isinstance(doc, dict) else None
    if not isinstance(meta, dict):
        raise CheckpointError(f"checkpoint {path} has no meta")
    return meta


def load(path: str | Path, verify: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
    """Load what `save` wrote -> (tree, meta). Raises CheckpointError naming the bad file."""
    path = Path(path)
    jpath, wpath = path.with_suffix(".json"), path.with_suffix(".safetensors")
    if not wpath.is_file():
        raise CheckpointError(f"checkpoint file missing: {wpath}")
    blob = wpath.read_bytes()
    try:
        tensors = st_load(blob)
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"corrupt or truncated checkpoint weights {wpath}: {e}") from None
    doc = _header_doc(blob)
    if doc is not None and verify and "data_sha256" in doc:
        data = blob[8 + int.from_bytes(blob[:8], "little") :]
        if hashlib.sha256(data).hexdigest() != doc["data_sha256"]:
            raise CheckpointError(f"corrupt checkpoint weights {wpath}: checksum mismatch")
    if doc is None:  # a file without the self-describing header: use the JSON sidecar
        if not jpath.is_file():
            raise CheckpointError(f"checkpoint file missing: {jpath}")
        try:
            doc = json.loads(jpath.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CheckpointError(f"corrupt checkpoint config {jpath}: {e}") from None
        if verify and doc.get("weights_sha256") and hashlib.sha256(blob).hexdigest() != doc["weights_sha256"]:
            raise CheckpointError(f"corrupt or truncated checkpoint weights {wpath}: checksum mismatch")
    try:
        structure, meta = doc["structure"], doc.get("meta", {})
        return _unflatten(structure, tensors), meta
    except (KeyError, TypeError) as e:
        raise CheckpointError(f"checkpoint {path} does not match its config: missing {e}") from None


def load_snapshot(
    path: str | Path, kind: str, label: str, config_cls: type
) -> tuple[dict[str, Any], dict[str, Any], Any]:
    """Load a snapshot of one kind -> (tree, meta, config_cls(**meta["config"])).

    A snapshot of another kind or with a bad config is one CheckpointError naming the file.
    """
    tree, meta = load(path)
    if meta.get("kind") != kind:
        raise CheckpointError(f"{path} is not {label} snapshot (kind={meta.get('kind')!r})")
    try:
        cfg = config_cls(**meta["config"])
    except (TypeError, ValueError, KeyError) as e:
        raise CheckpointError(f"{path}: bad {label.split(' ', 1)[1]} config: {e}") from None
    return tree, meta, cfg


def load_state_dict_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """load_state_dict that reports a mismatched checkpoint as one clear CheckpointError."""
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[0:3]
        raise CheckpointError(f"checkpoint {source} does not match the model: {' '.join(first)}") from None
