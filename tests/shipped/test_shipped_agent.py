"""The shipped agent (trained in the dream): loads without pickle beside its world model, is
served as the control "agent", and its recorded real-game evaluation replays exactly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from model.agent import AgentPolicy
from model.checkpoint import read_meta
from server.engine import discover_snapshots, snapshot_kind
from training.agent.real_game import agent_player, play

ROOT = Path(__file__).resolve().parents[2]
AGENT = ROOT / "checkpoints" / "Breakout-agent"
EVAL = ROOT / "docs" / "models" / "Breakout-agent-eval.json"


def test_shipped_agent_loads_beside_its_world_model() -> None:
    for ext in (".safetensors", ".json"):
        assert AGENT.with_suffix(ext).stat().st_size < 25 * 2**20
    assert int.from_bytes(AGENT.with_suffix(".safetensors").read_bytes()[:8], "little") > 0  # not a pickle
    assert read_meta(AGENT)["kind"] == "agent"
    found = discover_snapshots(ROOT / "checkpoints")
    assert AGENT in found and {snapshot_kind(p) for p in found} == {"world_model", "agent"}
    policy = AgentPolicy.from_snapshot(AGENT)
    assert policy.game == "Breakout" and (ROOT / "checkpoints" / "Breakout.safetensors").is_file()
    assert policy.model.meta["training"]["settings"]["world_model"] == "checkpoints/Breakout"


def test_recorded_evaluation_replays() -> None:
    """The first episodes of the README's evaluation, replayed on the real emulator with the shipped
    agent, give the recorded returns (each episode is seeded on its own)."""
    doc = json.loads(EVAL.read_text())
    policy = AgentPolicy.from_snapshot(AGENT, greedy=doc["greedy"], epsilon=doc["epsilon"], seed=doc["seed"])
    meta = policy.model.meta
    assert {k: doc["agent_meta"][k] for k in ("epoch", "agent_steps")} == {k: meta[k] for k in ("epoch", "agent_steps")}
    agent = doc["policies"]["agent"]
    # The claim, recomputed from the recorded returns (not the JSON's own verdict): a one-sided
    # permutation test of agent vs random play over the same episode seeds.
    a, r = np.array(agent["returns"], float), np.array(doc["policies"]["random"]["returns"], float)
    observed, pooled, rng = a.mean() - r.mean(), np.concatenate([a, r]), np.random.default_rng(0)
    perms = [rng.permutation(pooled) for _ in range(5000)]
    p = np.mean([p[: len(a)].mean() - p[len(a) :].mean() >= observed for p in perms])
    assert observed > 1.0 and p < 0.01, (observed, p)
    assert np.isclose(np.mean(agent["returns"]), agent["mean"]) and len(agent["returns"]) == doc["episodes"] >= 20
    n = 3
    rows = play("Breakout", agent_player(policy), n, doc["seed"], doc["max_steps"], progress=False)
    assert [r["return"] for r in rows] == agent["returns"][:n]
