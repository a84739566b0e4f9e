"""Every game's suite (`SUITES`), running one on a world model (`evaluate_model`), and comparing and
reporting results: the ship gate (`worse_than`, `TOLERANCE`), the goals, the table, the worst cases.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageDraw

from model.device import arithmetic_info
from training.world_model.playability.boxing import (
    BOXING_COUNTS,
    BOXING_PROBES,
    BOXING_SUITE,
    boxing_starts,
    run_boxing,
)
from training.world_model.playability.breakout import BREAKOUT_COUNTS, PROBES, SUITE, make_starts, run
from training.world_model.playability.core import SEED, ModelDreamer, Probe, Start
from training.world_model.playability.pong import PONG_COUNTS, PONG_PROBES, PONG_SUITE, pong_starts, run_pong


@dataclass
class Suite:
    """One game's probes: how its start states are made, how its probes run, what they report."""

    version: int
    probes: list[Probe]
    make_starts: Callable[..., dict[str, list[Start]]]
    run: Callable[..., dict]
    counts: dict[str, str]
    """probe key -> the result key holding how many cases its figure counts (the table's n)."""


SUITES: dict[str, Suite] = {
    "Breakout": Suite(SUITE, PROBES, make_starts, run, BREAKOUT_COUNTS),
    "Pong": Suite(PONG_SUITE, PONG_PROBES, pong_starts, run_pong, PONG_COUNTS),
    "Boxing": Suite(BOXING_SUITE, BOXING_PROBES, boxing_starts, run_boxing, BOXING_COUNTS),
}
"""Per game, its playability suite. `game in SUITES` says whether a game can be gated (Breakout's
suite keeps `SUITE`, `PROBES`, `make_starts` and `run` as they were)."""


def suite_of(res: dict) -> Suite:
    """The suite a result came from (results without a game are Breakout's, the first suite)."""
    return SUITES[res.get("game", "Breakout")]


def probe_keys(res: dict) -> list[str]:
    """The keys of the probes of the result's game."""
    return [p.key for p in suite_of(res).probes]


# -- comparing, reporting ------------------------------------------------------------------------
TOLERANCE = 0.03
"""A probe is worse than a reference when it is more than this (3 points) on the wrong side, or more
than one of its cases where one case is more (`probe_tolerance`)."""


def probe_tolerance(key: str, new: dict, ref: dict, tolerance: float = TOLERANCE) -> float:
    """How far `new` may fall below `ref` on the probe `key`: `tolerance`, or one case of the probe
    where one case is more (1 / n, n the smaller of the two results' counts: the table's n). A
    single case never decides: on 5 rollouts one is 20 points, and the same shipped Boxing model
    gave 1 and 2 phantom points of 5 on two CPUs (docs/playability.md, "The ship gate"). From 34
    cases up one case is under 3 points and the tolerance is the 3 points."""
    count_key = suite_of(new).counts.get(key)
    ns = [r.get(count_key) for r in (new, ref)] if count_key else []
    ns = [n for n in ns if isinstance(n, (int, float)) and not isinstance(n, bool) and n > 0]
    return max(tolerance, 1 / min(ns)) if ns else tolerance


def worse_than(new: dict, ref: dict, tolerance: float = TOLERANCE) -> list[str]:
    """Probes on which `new` is worse than `ref` (both suite results) by more than
    `probe_tolerance`: `tolerance`, or one case where one case is more."""
    out = []
    for p in suite_of(new).probes:
        a, b = new.get(p.key), ref.get(p.key)
        if not p.gated or a is None or b is None:
            continue
        allowed = probe_tolerance(p.key, new, ref, tolerance)
        if (b - a if p.higher_is_better else a - b) > allowed + 1e-9:  # 1e-9: 2/5 - 1/5 is one case
            out.append(
                f"{p.key}: {a:.3f} vs {b:.3f}" + (f" (one case is {allowed:.3f})" if allowed > tolerance else "")
            )
    return out


def goals_missed(res: dict) -> list[str]:
    """The probes of the result's game whose figure misses its goal."""
    out = []
    for p in suite_of(res).probes:
        v = res.get(p.key)
        if p.goal is None or v is None:
            continue
        if (v < p.goal) if p.higher_is_better else (v > p.goal):
            out.append(f"{p.key}: {v:.3f} (goal {'>=' if p.higher_is_better else '<='} {p.goal})")
    return out


def table(res: dict, ref: dict | None = None, ref_name: str = "reference") -> str:
    """Markdown table of the probes of the result's game (with a reference column when given)."""
    head = "| probe | dream | " + (f"{ref_name} | " if ref else "") + "goal | n |"
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    suite = suite_of(res)
    counts = suite.counts
    fmt = lambda v: "–" if v is None else f"{100 * v:.1f} %"  # noqa: E731
    for p in suite.probes:
        goal = "" if p.goal is None else f"{'≥' if p.higher_is_better else '≤'} {100 * p.goal:.0f} %"
        goal = goal if p.gated else "reported, not gated"
        row = f"| {p.label} | {fmt(res.get(p.key))} | "
        if ref:
            row += f"{fmt(ref.get(p.key))} | "
        lines.append(row + f"{goal} | {res.get(counts.get(p.key, ''), '')} |")
    return "\n".join(lines)


CASE_CAPTIONS = {
    "phantom_serve": ", no FIRE pressed, around the dream's first ball",
    "multi_ball": ", around the frame with the most dreamed balls",
    "play": ", the first played rollout, steps 1-10",
    "branching": ", each action held 8 steps, in action order, the state where they agree least",
}


def cases_image(cases: dict, scale: int = 2) -> Image.Image:
    """Per probe, its worst case: the real frames over the dreamed ones, labelled."""
    rows = []
    for name, (real, dream) in cases.items():
        real, dream = real[0], dream[0]
        n = min(len(real), len(dream), 12)
        top = np.concatenate(list(real[:n]), 1)
        bot = np.concatenate(list(dream[:n]), 1)
        strip = np.concatenate([top, np.full((2, top.shape[1], 3), 255, np.uint8), bot], 0)
        img = Image.fromarray(strip).resize((strip.shape[1] * scale, strip.shape[0] * scale), Image.NEAREST)
        canvas = Image.new("RGB", (img.width, img.height + 14), (20, 20, 20))
        what = CASE_CAPTIONS.get(name, "")
        ImageDraw.Draw(canvas).text((2, 1), f"{name}: real (top) / dream (bottom){what}", fill=(230, 230, 230))
        canvas.paste(img, (0, 14))
        rows.append(canvas)
    w = max(r.width for r in rows)
    out = Image.new("RGB", (w, sum(r.height + 4 for r in rows)), (20, 20, 20))
    y = 0
    for r in rows:
        out.paste(r, (0, y))
        y += r.height + 4
    return out


# -- one world model ---------------------------------------------------------------------------------
def evaluate_model(
    model, starts_n: int = 32, seed: int = SEED, steps: int | None = None, progress: bool = True, **sampler: float
) -> dict:
    """The whole suite for a world model (its game's probes) on `starts_n` starts from `seed`, dreamed
    with the model's own sampler, `steps` Euler steps and the `sampler` overrides; the result
    records the sampler settings used."""
    game = model.cfg.game
    if game not in SUITES:
        raise ValueError(f"no playability probes for {game!r} yet; they exist for {', '.join(SUITES)}")
    suite = SUITES[game]
    starts = suite.make_starts(game, starts_n, seed, progress)
    dreamer = ModelDreamer(model, steps, **sampler)
    res = suite.run(game, dreamer, starts, progress=progress)
    res.update(
        {"suite": suite.version, "seed": seed, "euler_steps": dreamer.sampler.num_steps, "starts_requested": starts_n}
    )
    res["sampler"] = asdict(dreamer.sampler)
    res["arithmetic"] = arithmetic_info(model)
    return res
