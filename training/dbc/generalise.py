"""The DBC paper's generalisation experiment on FetchPick: success as the starts move away from the demonstrations.

    python -m training.dbc.generalise --noise-levels 0,0.02,0.04,0.06,0.08 --episodes 500 --baselines \\
        --policies policies/fetch/{bc,dbc,diffusion_policy}_s{0,1,2,3,4} \\
        --out policies/fetch/generalisation.json --plot docs/fetch_generalisation.png

At every noise level each policy plays the same episodes (reset seeds episode_seed ..
episode_seed + N - 1, test split), whose initial gripper position, cube position and goal move by
noise * U(-1, 1) metres per axis (games/fetch.py: the same direction for an episode at every
level, only further). The demonstrations were recorded without noise. Per level and method: mean ±
sample std of the success rate over training seeds, and the paired bootstrap CIs of
training/dbc/evaluate.py; one JSON, one plot (success against noise, one line per method).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from games.files import atomic_write_bytes
from model.checkpoint import CheckpointError
from training.dbc.demos import UnknownTaskError
from training.dbc.scoring import COLORS, PAPER_NAMES, evaluate, report


def parse_levels(text: str) -> list[float]:
    try:
        levels = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--noise-levels must be a comma list of numbers, got {text!r}") from None
    if not levels or min(levels) < 0 or levels != sorted(set(levels)):
        raise ValueError(f"--noise-levels must be increasing numbers >= 0, got {text!r}")
    return levels


def generalise(
    paths: list[Path], levels: list[float], episodes: int, episode_seed: int, baselines: bool, n_boot: int
) -> dict:
    """evaluate.evaluate on FetchPick at every noise level -> {'noise_levels', 'levels': [eval doc per level]}."""
    docs = []
    for noise in levels:
        doc = evaluate("fetch", paths, episodes, episode_seed, baselines=baselines, noise=noise, n_boot=n_boot)
        print("\n".join(f"[noise {noise}] {line}" for line in report(doc)), flush=True)
        docs.append(doc)
    return {"task": "fetch", "episodes": episodes, "episode_seed": episode_seed, "noise_levels": levels, "levels": docs}


def plot(doc: dict, path: Path) -> None:
    """Success rate against noise level: mean ± std over training seeds per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = doc["noise_levels"]
    algos = list(dict.fromkeys(a for d in doc["levels"] for a in d["summary"]))
    dodge = 0.008 * ((max(levels) - min(levels)) or 1.0)  # methods side by side at each level
    fig, ax = plt.subplots(figsize=(5.8, 3.8), dpi=110)
    for k, algo in enumerate(algos):
        rows = [d["summary"].get(algo) for d in doc["levels"]]
        xs = [x + (k - (len(algos) - 1) / 2) * dodge for x, r in zip(levels, rows, strict=True) if r]
        ys = [r["mean"] for r in rows if r]
        es = [r["std"] for r in rows if r]
        n = max(r["n"] for r in rows if r)
        label = f"{PAPER_NAMES[algo]} ({n} seed{'s' if n > 1 else ''})" if algo in PAPER_NAMES else f"{algo} (scripted)"
        ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, color=COLORS.get(algo, "#5b9bd5"), label=label)
    ax.set_xlabel("start / goal noise (m, half-width per axis)")
    ax.set_ylabel("success rate (%)")
    ax.set_ylim(-2, 102)
    ax.set_title(f"FetchPick generalisation: {doc['episodes']} episodes per level")
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m training.dbc.generalise",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--policies", nargs="+", type=Path, default=[], help="FetchPick policy checkpoints")
    p.add_argument("--noise-levels", default="0,0.02,0.04,0.06,0.08", help="comma list, metres")
    p.add_argument("--episodes", type=int, default=100, help="episodes per policy and level")
    p.add_argument("--episode-seed", type=int, default=0, help="reset seed of the first episode (test split)")
    p.add_argument("--baselines", action="store_true", help="also the scripted expert at every level")
    p.add_argument("--bootstrap", type=int, default=10_000, help="bootstrap resamples for the CIs")
    p.add_argument("--out", type=Path, default=Path("runs/dbc/fetch/generalisation.json"))
    p.add_argument("--plot", type=Path, default=Path("docs/fetch_generalisation.png"))
    a = p.parse_args(argv)
    try:
        if not a.policies and not a.baselines:
            raise ValueError("give --policies and/or --baselines")
        if a.episodes < 1 or a.bootstrap < 1:
            raise ValueError("--episodes and --bootstrap must be >= 1")
        doc = generalise(a.policies, parse_levels(a.noise_levels), a.episodes, a.episode_seed, a.baselines, a.bootstrap)
    except (UnknownTaskError, ValueError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    atomic_write_bytes(a.out, json.dumps(doc, indent=1).encode())
    plot(doc, a.plot)
    print(f"wrote {a.out} and {a.plot}")
    return 0


if __name__ == "__main__":
    torch.set_num_threads(1)
    sys.exit(main())
