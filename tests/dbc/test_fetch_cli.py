"""FetchPick and the Diffusion Policy baseline through the command lines: train -> save -> evaluate with
error bars -> the generalisation experiment; the Diffusion Policy on the Maze too."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from model.dbc.core import load_dbc_policy
from training.dbc import evaluate, generalise, train
from training.dbc.scoring import load_agent, make_task, rollout_lowdim


def test_fetch_demos_and_checkpoints(fetch_run: Path) -> None:
    with np.load(fetch_run / "data" / "fetch_2.npz") as z:
        assert z["states"].shape == (100, 28) and z["actions"].shape == (100, 4)  # 2 episodes x 50 steps
        assert np.abs(z["actions"]).max() <= 1.0 and sorted(set(z["episode"].tolist())) == [0, 1]
    out = fetch_run / "fetch"
    bc, meta = load_dbc_policy(out / "bc_s0", task="fetch")
    assert meta["lambda"] == 0.0 and json.loads((out / "dbc_s0.json").read_text())["meta"]["lambda"] == 0.5
    dp, dp_meta = load_agent(out / "diffusion_policy_s0", task="fetch")
    assert dp_meta["algo"] == "diffusion_policy" and dp.cfg.num_steps == 5 and dp.cfg.obs_dim == 28
    obs = torch.randn(3, 28)
    noise = torch.randn(3, 5, 4, generator=torch.Generator().manual_seed(0))
    again, _ = load_agent(out / "diffusion_policy_s0.safetensors")
    assert torch.equal(dp.sample(obs, noise), again.sample(obs, noise))


def test_fetch_evaluation_with_error_bars(fetch_run: Path, capsys) -> None:
    out = fetch_run / "eval.json"
    pols = [str(fetch_run / "fetch" / n) for n in ("bc_s0", "dbc_s0", "diffusion_policy_s0")]
    args = ["--task", "fetch", "--policies", *pols, "--episodes", "2", "--episode-seed", "10"]
    assert evaluate.main([*args, "--bootstrap", "200", "--baselines", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "episode seeds 10..11 (test split)" in printed and "training seeds [0]" in printed
    assert "dbc - bc:" in printed and "95% CI" in printed
    doc = json.loads(out.read_text())
    assert set(doc["summary"]) == {"bc", "dbc", "diffusion_policy", "expert"}
    assert doc["summary"]["expert"]["mean"] == 100.0  # the demonstrator solves these episodes
    assert {(c["a"], c["b"]) for c in doc["comparisons"]} == {
        ("dbc", "bc"),
        ("diffusion_policy", "bc"),
        ("dbc", "diffusion_policy"),
    }
    assert all(c["ci95_episodes"][0] <= c["diff"] <= c["ci95_episodes"][1] for c in doc["comparisons"])
    assert doc["paper"]["DBC"] == {"mean": 97.5, "std": 1.9} and out.with_suffix(".png").is_file()
    # Refused: demonstration seeds, --noise off FetchPick, a Diffusion Policy for Breakout.
    assert evaluate.main([*args[:-1], "1000000"]) == 2
    assert evaluate.main(["--task", "maze", "--policies", pols[0], "--noise", "0.1"]) == 2
    assert train.main(["--task", "breakout", "--algo", "diffusion_policy"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("error: ") for line in err), err


def test_generalisation_experiment(fetch_run: Path, tmp_path: Path) -> None:
    pols = [str(fetch_run / "fetch" / n) for n in ("bc_s0", "diffusion_policy_s0")]
    out, png = tmp_path / "gen.json", tmp_path / "gen.png"
    argv = ["--policies", *pols, "--noise-levels", "0,0.05", "--episodes", "1", "--bootstrap", "100"]
    assert generalise.main([*argv, "--out", str(out), "--plot", str(png)]) == 0
    doc = json.loads(out.read_text())
    assert doc["noise_levels"] == [0.0, 0.05] and [d["noise"] for d in doc["levels"]] == [0.0, 0.05]
    assert all(set(d["summary"]) == {"bc", "diffusion_policy"} for d in doc["levels"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert generalise.main(["--policies", *pols, "--noise-levels", "0.05,0"]) == 2  # not increasing


def test_diffusion_policy_on_the_maze(maze_run: Path, tmp_path: Path) -> None:
    common = ["--task", "maze", "--demos", "3", "--data-dir", str(maze_run / "data"), "--hidden", "32"]
    common += ["--layers", "2", "--out", str(tmp_path)]
    assert train.main([*common, "--algo", "diffusion_policy", "--steps", "10", "--dp-steps", "5"]) == 0
    pols = [str(maze_run / "maze" / "bc_s0"), str(tmp_path / "diffusion_policy_s0")]
    out = tmp_path / "eval.json"
    assert evaluate.main(["--task", "maze", "--policies", *pols, "--episodes", "1", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert set(doc["summary"]) == {"bc", "diffusion_policy"} and doc["comparisons"][0]["a"] == "diffusion_policy"
    # Envs are reused across episodes: seed 0 after seed 1 in the same env replays the fixture's seed 0.
    bc = load_agent(maze_run / "maze" / "bc_s0")[0]
    pool = [make_task("maze")]
    replay = rollout_lowdim(bc, "maze", [1, 0], pool=pool)[1]
    pool[0].close()
    first = json.loads((maze_run / "maze" / "eval.json").read_text())["results"][0]
    assert first["policy"].endswith("bc_s0") and replay == first["episodes"][0]
