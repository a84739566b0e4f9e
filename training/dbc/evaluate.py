"""Evaluate DBC / BC / Diffusion Policy policies on their task and write JSON (+ a PNG plot).

    python -m training.dbc.evaluate --task fetch --episodes 500 \\
        --policies policies/fetch/{bc,dbc,diffusion_policy}_s{0,1,2,3,4} --out policies/fetch/eval.json

Every policy plays the same episodes (reset seeds episode_seed .. episode_seed + N - 1, printed),
so methods are compared on identical starts and goals. The seeds must lie in one split of
training/dbc/demos.py's EPISODE_SPLITS ('test' 0..999 by default, 'selection' 1000..1999 for
choosing settings); the demonstrations' seeds (1,000,000 and up) are refused.

Policies are grouped by their algorithm; a group's score is the mean ± sample std over its
policies (one per training seed). Beside it, for every method against BC (and DBC against
Diffusion Policy), the difference in mean score with a paired bootstrap 95 % CI: episodes are
resampled with replacement, the same draw for both methods (paired by episode seed), and the
per-episode score averaged over each method's training seeds; a second CI also resamples the
training seeds (a wider interval that counts the seed-to-seed spread as well).

Maze: success rate in % (within 0.5 of the goal before 400 steps). FetchPick: success rate in %
(cube within 5 cm of the goal at the 50th step; `--noise` perturbs the starts, see games/fetch.py).
Breakout: game return (unclipped score, real game, no life-loss termination), cap --max-steps.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from games.files import atomic_write_bytes
from model.checkpoint import CheckpointError
from training.dbc.demos import (
    PAPER_TABLES,
    UnknownTaskError,
    check_task,
)
from training.dbc.scoring import COLORS, PAPER_NAMES, evaluate, merge, report


def plot(doc: dict, path: Path) -> None:
    """Bar chart per method (mean ± std over seeds, dots per seed), the paper's bars beside them (Maze, FetchPick)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = doc["summary"]
    order = ("bc", "dbc", "diffusion_policy")
    algos = [a for a in order if a in summary] + [a for a in summary if a not in order]
    fig, ax = plt.subplots(figsize=(6.5, 3.8), dpi=110)
    labels, x = [], 0
    for a in algos:
        s = summary[a]
        ax.bar(x, s["mean"], yerr=s["std"], color=COLORS.get(a, "#5b9bd5"), capsize=4)
        ax.scatter([x] * len(s["per_seed"]), s["per_seed"], color="black", s=10, zorder=3)
        labels.append(f"{PAPER_NAMES[a]} (ours)" if a in PAPER_NAMES else f"{a} (scripted)" if a == "expert" else a)
        x += 1
    if doc["task"] in PAPER_TABLES:
        for a in [a for a in order if a in summary]:
            m, sd = PAPER_TABLES[doc["task"]][PAPER_NAMES[a]]
            ax.bar(x, m, yerr=sd, color="none", edgecolor=COLORS[a], hatch="//", capsize=4)
            labels.append(f"{PAPER_NAMES[a]} (paper)")
            x += 1
        ax.set_ylabel("success rate (%)")
        ax.set_ylim(0, 105)
    else:
        ax.set_ylabel(f"return (cap {doc.get('max_steps')} steps)")
    ax.set_xticks(range(len(labels)), labels, rotation=20, fontsize=8)
    noise = f", noise {doc['noise']}" if doc.get("noise") else ""
    ax.set_title(f"{doc['task']}: {doc['episodes']} episodes x {max(s['n'] for s in summary.values())} seeds{noise}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m training.dbc.evaluate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--task", default="maze", help="maze, fetch or breakout")
    p.add_argument("--policies", nargs="+", type=Path, default=[], help="policy checkpoints (.json/.safetensors)")
    p.add_argument("--merge", nargs="+", type=Path, default=[], help="merge evaluation JSONs (e.g. parallel runs)")
    p.add_argument("--episodes", type=int, default=100, help="episodes per policy")
    p.add_argument("--episode-seed", type=int, default=0, help="reset seed of the first episode")
    p.add_argument("--split", default="test", help="episode-seed split: test (0..999) or selection (1000..1999)")
    p.add_argument("--noise", type=float, default=0.0, help="FetchPick: start/goal perturbation in metres")
    p.add_argument("--bootstrap", type=int, default=10_000, help="bootstrap resamples for the CIs")
    p.add_argument("--max-steps", type=int, default=2000, help="Breakout: agent-step cap per episode")
    p.add_argument("--baselines", action="store_true", help="also the task's scripted expert (Breakout: and random)")
    p.add_argument(
        "--sample",
        action="store_true",
        help="Breakout: draw actions from the policy (FIRE, the serve, is 0.4%% of the demonstrations: "
        "an argmax policy can wait forever for it)",
    )
    p.add_argument("--out", type=Path, default=None, help="JSON output (default runs/dbc/<task>/eval.json)")
    p.add_argument("--plot", type=Path, default=None, help="PNG plot (default: beside the JSON)")
    a = p.parse_args(argv)
    try:
        check_task(a.task)
        if a.episodes < 1 or a.max_steps < 1 or a.bootstrap < 1:
            raise ValueError("--episodes, --max-steps and --bootstrap must be >= 1")
        if bool(a.policies or a.baselines) == bool(a.merge):
            raise ValueError("give either --policies (to evaluate) or --merge (to combine evaluation JSONs)")
        doc = (
            merge(a.task, a.merge, a.bootstrap)
            if a.merge
            else evaluate(
                a.task,
                a.policies,
                a.episodes,
                a.episode_seed,
                a.max_steps,
                a.baselines,
                a.sample,
                a.noise,
                a.split,
                a.bootstrap,
            )
        )
    except (UnknownTaskError, ValueError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = a.out or Path("runs/dbc") / a.task / "eval.json"
    atomic_write_bytes(out, json.dumps(doc, indent=1).encode())
    plot(doc, a.plot or out.with_suffix(".png"))
    print("\n".join(report(doc)))
    print(f"wrote {out} and {a.plot or out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    torch.set_num_threads(1)
    sys.exit(main())
