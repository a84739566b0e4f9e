"""benchmarks/bench.py on the shipped models: --guided-rows times both ways of a guided step at each
batch, --versus-diamond every shipped model against DIAMOND's reference, with the machine beside the
figures; the interleaving every timed comparison rests on. Speeds are printed, never asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks.bench import interleaved

ROOT = Path(__file__).resolve().parents[2]


def test_interleaved_calls_every_fn_once_a_round_in_a_shuffled_order() -> None:
    calls: list[str] = []
    fns = {k: (lambda k=k: calls.append(k)) for k in "abcde"}
    times = interleaved(fns, warmup=2, repeats=6)
    rounds = [calls[i : i + 5] for i in range(0, len(calls), 5)]
    assert len(rounds) == 8 and all(sorted(r) == list("abcde") for r in rounds)
    assert len({tuple(r) for r in rounds}) > 1  # a fixed order puts every fn after the same one
    assert {k: len(v) for k, v in times.items()} == dict.fromkeys("abcde", 6)  # warm-up rounds untimed


def test_guided_rows_times_one_call_and_two_calls_per_batch(tmp_path: Path) -> None:
    out = tmp_path / "guided.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench.py"), "--guided-rows", "--quick", "--threads", "1"]
    res = subprocess.run([*cmd, "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    report = json.loads(out.read_text())
    assert [r["mode"] for r in report["results"]] == ["one call", "two calls"]
    for r in report["results"]:
        assert (
            set(r) == {"preset", "mode", "dream_b1_fps", "dream_b2_fps"}
            and min(r["dream_b1_fps"], r["dream_b2_fps"]) > 0
        )
    assert report["machine"]["cpu_flags"] and "CPU flags:" in res.stdout


def test_versus_diamond_times_the_reference_and_every_shipped_model(tmp_path: Path) -> None:
    out = tmp_path / "versus.json"
    from model.device import cpu_has_fast_bf16

    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench.py"), "--versus-diamond", "--quick", "--threads", "1"]
    res = subprocess.run(
        [*cmd, "--with-fused", "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=1800
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    rows = {r["preset"]: r for r in json.loads(out.read_text())["results"]}
    shipped = sorted(p.stem for p in (ROOT / "checkpoints").glob("*.json") if not p.stem.endswith("-agent"))
    bf16 = cpu_has_fast_bf16()  # torch-fused runs only where bf16 does
    metas = {name: json.loads((ROOT / "checkpoints" / f"{name}.json").read_text())["meta"] for name in shipped}
    own = {name: meta.get("backend") for name, meta in metas.items()}
    # each model at its defaults, on the backend its snapshot names where that runs here; torch-fused
    # timed beside it for the bf16 models whose own backend it is not
    fused = [f"{name}, torch-fused" for name in shipped if own[name] != "torch-fused"] if bf16 else []
    assert sorted(rows) == sorted(["DIAMOND reference", *shipped, *fused])
    for name in shipped:
        runs_fused = bf16 and own[name] == "torch-fused"
        assert rows[name]["mode"].endswith("torch-fused") == runs_fused, rows[name]["mode"]
    for name in fused:
        assert rows[name]["mode"].endswith("bf16, torch-fused")
    ref = rows["DIAMOND reference"]
    assert "3 Euler steps" in ref["mode"] and ref["x_reference_b1"] == 1.0
    for name in shipped:  # each model's multiple is its own frames/s over the reference's, per batch
        for b in (1, 2):
            r = rows[name]
            assert r[f"dream_b{b}_fps"] > 0
            assert abs(r[f"x_reference_b{b}"] - r[f"dream_b{b}_fps"] / ref[f"dream_b{b}_fps"]) < 1e-9
    assert "Euler step" in rows["Pong"]["mode"]


def test_versus_diamond_without_models_is_refused(tmp_path: Path) -> None:
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench.py"), "--versus-diamond", "--checkpoint-dir", str(tmp_path)]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 2 and f"no world-model snapshots in {tmp_path}" in res.stderr
