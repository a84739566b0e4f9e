"""Snapshots and resume states: save -> load -> identical output; damaged files give a CheckpointError
that names the file; nothing is ever unpickled."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from model import checkpoint
from model.checkpoint import CheckpointError
from model.world_model import Dreams, WorldModel
from model.world_model.sampler import SamplerConfig

# Count unpickling anywhere in the process: every pickle load resolves classes through find_class,
# which raises this audit event (PEP 578). Hooks cannot be removed, so one hook feeds a counter.
_UNPICKLES = [0]
sys.addaudithook(lambda event, _args: _UNPICKLES.__setitem__(0, _UNPICKLES[0] + (event == "pickle.find_class")))


def _dream(model: WorldModel, steps: int = 3) -> torch.Tensor:
    torch.manual_seed(0)
    frames = torch.randint(0, 256, (2, 4, 64, 64, 3), dtype=torch.uint8)
    acts = torch.tensor([[0, 1, 2], [3, 2, 1]])
    dreams = Dreams(model, SamplerConfig(num_steps=2), seed=123)
    dreams.reset(frames, acts)
    out = []
    for _ in range(steps):
        frames, reward, end = dreams.step(torch.tensor([1, 3]))
        out.append(torch.cat([frames.flatten().float(), reward, end]))
    return torch.stack(out)


@pytest.fixture
def snapshot(tiny_model: WorldModel, tmp_path: Path) -> Path:
    path = tmp_path / "snapshot"
    tiny_model.save_snapshot(path, {"step": 7})
    return path


def test_snapshot_round_trip_gives_identical_dreams(tiny_model: WorldModel, snapshot: Path) -> None:
    loaded = WorldModel.from_snapshot(snapshot, precision="fp32")
    assert loaded.cfg == tiny_model.cfg and loaded.meta["step"] == 7
    for (k, a), (k2, b) in zip(tiny_model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(a, b), k
    assert torch.equal(_dream(tiny_model), _dream(loaded))


def test_snapshot_is_safetensors_plus_json_and_loads_without_pickle(snapshot: Path) -> None:
    assert sorted(p.name for p in snapshot.parent.iterdir()) == ["snapshot.json", "snapshot.safetensors"]
    doc = json.loads(snapshot.with_suffix(".json").read_text())
    assert doc["meta"]["kind"] == "world_model" and doc["meta"]["config"]["preset"] == "tiny"
    with safe_open(snapshot.with_suffix(".safetensors"), framework="pt") as f:
        assert any(k.endswith("conv_out.weight") for k in f.keys())
    before = _UNPICKLES[0]
    WorldModel.from_snapshot(snapshot, precision="fp32")
    checkpoint.load(snapshot)
    assert _UNPICKLES[0] == before
    # The audit hook does see unpickling: torch.load of a pickled file raises the event.
    torch.save({"x": torch.zeros(1)}, snapshot.parent / "pickled.pt")
    torch.load(snapshot.parent / "pickled.pt", weights_only=False)
    assert _UNPICKLES[0] > before


def test_nested_state_round_trip(tmp_path: Path) -> None:
    tree = {
        "model": {"w": torch.arange(6.0).view(2, 3)},
        "step": 12,
        "lrs": [1e-4, 2e-4],
        "pair": (torch.tensor([1, 2], dtype=torch.uint8), "x"),
        "none": None,
    }
    checkpoint.save(tmp_path / "state", tree, {"kind": "train_state"})
    got, meta = checkpoint.load(tmp_path / "state")
    assert meta == {"kind": "train_state"}
    assert torch.equal(got["model"]["w"], tree["model"]["w"]) and got["step"] == 12 and got["lrs"] == [1e-4, 2e-4]
    assert torch.equal(got["pair"][0], tree["pair"][0]) and got["pair"][0].dtype == torch.uint8
    assert isinstance(got["pair"], tuple) and got["none"] is None


def test_optimizer_state_round_trip(tiny_model: WorldModel, tmp_path: Path) -> None:
    opt = torch.optim.AdamW(tiny_model.denoiser.parameters(), lr=1e-3)
    tiny_model.train()
    loss, _ = tiny_model.denoiser.loss(
        torch.rand(2, 4, 3, 64, 64), torch.zeros(2, 4, dtype=torch.long), torch.rand(2, 3, 64, 64)
    )
    loss.backward()
    opt.step()
    checkpoint.save(tmp_path / "state", {"opt": opt.state_dict()})
    tree, _ = checkpoint.load(tmp_path / "state")
    opt2 = torch.optim.AdamW(tiny_model.denoiser.parameters(), lr=1e-3)
    opt2.load_state_dict(tree["opt"])
    s1, s2 = opt.state_dict()["state"], opt2.state_dict()["state"]
    assert s1.keys() == s2.keys()
    assert all(torch.equal(s1[k]["exp_avg"], s2[k]["exp_avg"]) for k in s1)


def test_checkpoint_overwrite_leaves_no_temp_files(tiny_model: WorldModel, snapshot: Path) -> None:
    tiny_model.save_snapshot(snapshot, {"step": 8})
    assert WorldModel.from_snapshot(snapshot, precision="fp32").meta["step"] == 8
    assert not list(snapshot.parent.glob(".*.tmp"))


def test_missing_weights_file_is_named(snapshot: Path) -> None:
    snapshot.with_suffix(".safetensors").unlink()
    with pytest.raises(CheckpointError, match="missing.*snapshot.safetensors"):
        WorldModel.from_snapshot(snapshot)


def test_weights_file_alone_is_a_complete_checkpoint(snapshot: Path) -> None:
    """The JSON is a readable copy: the safetensors header carries the config."""
    snapshot.with_suffix(".json").unlink()
    assert WorldModel.from_snapshot(snapshot, precision="fp32").cfg.game == "Breakout"


def test_truncated_weights_are_named(snapshot: Path) -> None:
    w = snapshot.with_suffix(".safetensors")
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="snapshot.safetensors"):
        WorldModel.from_snapshot(snapshot)
    with pytest.raises(CheckpointError, match="snapshot.safetensors"):  # also without the checksum
        checkpoint.load(snapshot, verify=False)


def test_flipped_byte_in_weights_is_detected(snapshot: Path) -> None:
    w = snapshot.with_suffix(".safetensors")
    data = bytearray(w.read_bytes())
    data[-10] ^= 0xFF  # inside the last tensor's data: safetensors alone would not notice
    w.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="snapshot.safetensors.*checksum"):
        WorldModel.from_snapshot(snapshot)


@pytest.mark.parametrize("text", ["{not json", '{"format_version": 1}', ""])
def test_damaged_json_copy_does_not_lose_the_checkpoint(snapshot: Path, text: str) -> None:
    snapshot.with_suffix(".json").write_text(text)
    assert WorldModel.from_snapshot(snapshot, precision="fp32").cfg.game == "Breakout"


def test_config_that_does_not_match_the_weights(snapshot: Path, tmp_path: Path) -> None:
    tree, meta = checkpoint.load(snapshot)
    meta["config"]["denoiser"]["unet"]["channels"] = [24, 24, 24, 24]
    checkpoint.save(tmp_path / "bad", tree, meta)
    with pytest.raises(CheckpointError, match="does not match"):
        WorldModel.from_snapshot(tmp_path / "bad")


def test_train_state_is_not_a_snapshot(tmp_path: Path) -> None:
    checkpoint.save(tmp_path / "state", {"step": 1}, {"kind": "train_state"})
    with pytest.raises(CheckpointError, match="not a world-model snapshot"):
        WorldModel.from_snapshot(tmp_path / "state")


def test_kill_between_weights_and_json_keeps_a_loadable_checkpoint(tiny_model: WorldModel, snapshot: Path) -> None:
    """save() writes the weights, then the JSON. A kill between the two renames leaves new weights
    beside the old JSON: the module docstring promises the previous checkpoint stays intact."""
    with torch.no_grad():
        tiny_model.denoiser.net.conv_out.bias.add_(0.1)  # the next checkpoint has other weights
    tiny_model.save_snapshot(snapshot.parent / "next", {"step": 8})
    (snapshot.parent / "next.safetensors").replace(snapshot.with_suffix(".safetensors"))  # first rename only
    loaded = WorldModel.from_snapshot(snapshot, precision="fp32")  # must still give *a* checkpoint
    assert loaded.meta["step"] in (7, 8)
