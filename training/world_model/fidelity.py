"""Measure how faithful a dream is (docs/design.md §6); the command is training/evaluate.py.

Start the dream from a real 4-frame context of a held-out episode, feed it the episode's own
actions, and compare with the real frames at horizons h (`fidelity`): whole-frame PSNR, motion
PSNR and SSIM beside the trivial repeat-the-last-real-frame predictor, and ball recall where the
game has a ball field (training/world_model/measures.py). `stability`: a long rollout with random keys, checked
for collapse. `reward_end_accuracy`: the reward/end model on real transitions. `score_redraw`: whether the dream
draws the new score on a point, one step from its real context. Also the table and
images training/evaluate.py, training/ship.py and train.py's periodic evaluation write.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from games.episode_store import Episode
from model.device import arithmetic_info
from model.world_model import Dreams, WorldModel
from model.world_model.sampler import SamplerConfig
from training.world_model.measures import (
    BALL_RADIUS,
    ball_recall,
    mean_ball_recall,
    motion_mask,
    psnr,
    ssim,
    still_changed,
)

HORIZONS = (1, 5, 15, 50)


def ball_plot(curve: dict, width: int = 520, height: int = 240) -> Image.Image:
    """Ball recall and 'any ball drawn' against the dreamed step, as a small line chart."""
    from PIL import ImageDraw

    img = Image.new("RGB", (width, height), "white")
    g = ImageDraw.Draw(img)
    left, right, top, bottom = 44, width - 12, 24, height - 30
    n = len(curve["recall"])
    xs = lambda k: left + (right - left) * (k / max(1, n - 1))  # noqa: E731  (k: 0-based step)
    ys = lambda v: bottom - (bottom - top) * v  # noqa: E731
    for v in (0, 0.25, 0.5, 0.75, 1):
        g.line([(left, ys(v)), (right, ys(v))], fill=(225, 225, 225))
        g.text((6, ys(v) - 6), f"{v:.2f}", fill="black")
    for k in range(0, n, max(1, n // 10)):
        g.text((xs(k) - 4, bottom + 6), str(k + 1), fill="black")
    g.line([(left, top), (left, bottom), (right, bottom)], fill="black")
    for key, colour in (("drawn", (160, 160, 160)), ("recall", (200, 40, 40))):
        pts = [(xs(k), ys(v)) for k, v in enumerate(curve[key]) if v is not None]
        if len(pts) > 1:
            g.line(pts, fill=colour, width=2)
    g.text((left + 8, 6), f"ball recall (within {BALL_RADIUS} px)", fill=(200, 40, 40))
    g.text((left + 200, 6), "any ball drawn", fill=(130, 130, 130))
    g.text((right - 90, 6), "dreamed step", fill="black")
    return img


def pick_starts(episodes: list[Episode], n: int, horizon: int, context: int, seed: int) -> list[tuple[int, int]]:
    """n (episode, t0) pairs with a full context before t0 and `horizon` real steps after it."""
    rng = np.random.default_rng(seed)
    ok = [i for i, e in enumerate(episodes) if len(e) >= horizon + context]
    if not ok:
        raise ValueError(f"no held-out episode is long enough for horizon {horizon}")
    starts = []
    for k in range(n):
        i = ok[k % len(ok)]
        t0 = int(rng.integers(context - 1, len(episodes[i]) - horizon + 1))
        starts.append((i, t0))
    return starts


def rollout(
    model: WorldModel,
    episodes: list[Episode],
    starts: list[tuple[int, int]],
    horizon: int,
    sampler: SamplerConfig,
    seed: int = 0,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Dream `horizon` steps from each start with the real actions -> (dream, real) uint8 (N, h, H, W, C)."""
    L = model.cfg.context_frames
    frames = torch.from_numpy(np.stack([episodes[i].obs[t0 - L + 1 : t0 + 1] for i, t0 in starts]))
    acts = torch.from_numpy(np.stack([episodes[i].actions[t0 - L + 1 : t0] for i, t0 in starts]))
    dreams = Dreams(model, sampler, seed=seed)
    dreams.reset(frames, acts)
    out = []
    for h in tqdm(range(horizon), desc="dream", disable=not progress, leave=False):
        a = torch.tensor([int(episodes[i].actions[t0 + h]) for i, t0 in starts])
        nxt, _, _ = dreams.step(a)
        out.append(nxt.numpy())
    dream = np.stack(out, axis=1)
    real = np.stack([episodes[i].obs[t0 + 1 : t0 + horizon + 1] for i, t0 in starts])
    return dream, real


def fidelity(
    model: WorldModel,
    episodes: list[Episode],
    horizons=HORIZONS,
    starts: int = 8,
    sampler: SamplerConfig | None = None,
    seed: int = 0,
    progress: bool = False,
) -> dict:
    """Per-horizon PSNR / motion PSNR / SSIM of the dream and of repeat-last, averaged over starts,
    and `still_off_dream`: the share of the pixels the real game leaves unchanged that the dream
    draws other than they are (by a grey level or more in any channel: noise on a still background)."""
    sampler = sampler or model.sampler_config()
    H = max(horizons)
    st = pick_starts(episodes, starts, H, model.cfg.context_frames, seed)
    dream, real = rollout(model, episodes, st, H, sampler, seed, progress)
    last = np.stack([episodes[i].obs[t0] for i, t0 in st])
    prev_real = np.concatenate([last[:, None], real[:, :-1]], axis=1)
    rows = {}
    for h in horizons:
        k = h - 1
        m = {
            "psnr_dream": [],
            "psnr_repeat": [],
            "motion_psnr_dream": [],
            "motion_psnr_repeat": [],
            "ssim_dream": [],
            "ssim_repeat": [],
            "still_off_dream": [],
        }
        for n in range(len(st)):
            mask = motion_mask(real[n, k], prev_real[n, k])
            m["still_off_dream"].append(still_changed(dream[n, k], real[n, k], prev_real[n, k]))
            m["psnr_dream"].append(psnr(dream[n, k], real[n, k]))
            m["psnr_repeat"].append(psnr(last[n], real[n, k]))
            m["motion_psnr_dream"].append(psnr(dream[n, k], real[n, k], mask))
            m["motion_psnr_repeat"].append(psnr(last[n], real[n, k], mask))
            m["ssim_dream"].append(ssim(dream[n, k], real[n, k]))
            m["ssim_repeat"].append(ssim(last[n], real[n, k]))
        rows[str(h)] = {key: float(np.nanmean(v)) if np.isfinite(v).any() else None for key, v in m.items()}
    game = model.cfg.game
    ball = ball_recall(dream, real, game)
    if ball is not None:
        for h in horizons:
            rows[str(h)]["ball_recall"] = ball["recall"][h - 1]
        ball["pooled"] = {
            f"{a}-{b}": mean_ball_recall(ball, a, b) for a, b in ((1, 1), (2, 5), (6, 15), (16, H)) if a <= H
        }
    return {
        "horizons": rows,
        "ball": ball,
        "score_redraw": score_redraw(model, episodes, sampler, seed=seed),
        "starts": [list(s) for s in st],
        "sampler": vars(sampler),
        "arithmetic": arithmetic_info(model),
        "_dream": dream,
        "_real": real,
    }


def score_region(game: str) -> tuple[slice, slice] | None:
    """Rows and columns of the game's score digits in the 64x64 frame, where the playability suite
    reads them (None for a game it does not read them in)."""
    from training.world_model.playability.boxing import BOXING_SCORE
    from training.world_model.playability.pong import PONG_SCORE

    return {"Pong": PONG_SCORE, "Boxing": BOXING_SCORE}.get(game)


def score_redraw(
    model: WorldModel,
    episodes: list[Episode],
    sampler: SamplerConfig | None = None,
    seeds: int = 4,
    seed: int = 0,
    dream_next: Callable[[np.ndarray, np.ndarray, int], np.ndarray] | None = None,
) -> dict | None:
    """Does the dream redraw the score when a point is scored? From the real context of each held-out
    point whose score digits change visibly on the next frame (reward != 0, either side), `seeds`
    dreams of that next frame: the share whose score region changes visibly too (`frames_differ`,
    2 pixels; whether to the right digit is not checked). One step from real frames, not a rollout:
    whether the denoiser has learned to draw a new digit at all, apart from where an open-loop dream
    has gone. None for a game without a `score_region`.

    dream_next(frames (B, L, H, W, C) uint8, actions (B, L) with the step's own last, seed) -> next
    frames (B, H, W, C) uint8; default: the model through `Dreams`."""
    from training.world_model.playability.core import frames_differ

    region = score_region(model.cfg.game)
    if region is None:
        return None
    L = model.cfg.context_frames
    cases = [
        (e, int(t))
        for e in episodes
        for t in np.nonzero(e.rewards != 0)[0]
        if t >= L - 1 and frames_differ(e.obs[t + 1][region], e.obs[t][region], min_pixels=2)
    ]
    if dream_next is None:

        def dream_next(frames: np.ndarray, actions: np.ndarray, k: int) -> np.ndarray:
            dreams = Dreams(model, sampler or model.sampler_config(), seed=k)
            dreams.reset(torch.from_numpy(frames), torch.from_numpy(actions[:, :-1]))
            return dreams.step(torch.from_numpy(actions[:, -1]))[0].numpy()

    redrawn = 0
    for k in range(seeds):
        for i in range(0, len(cases), 32):
            chunk = cases[i : i + 32]
            frames = np.stack([e.obs[t - L + 1 : t + 1] for e, t in chunk])
            actions = np.stack([e.actions[t - L + 1 : t + 1] for e, t in chunk])
            nxt = dream_next(frames, actions, seed + k)
            redrawn += sum(frames_differ(n[region], e.obs[t][region], min_pixels=2) for n, (e, t) in zip(nxt, chunk))
    n = len(cases) * seeds
    return {"points": len(cases), "dreams": n, "redrawn": redrawn / n if n else None}


QUALITY_HORIZONS = (1, 15, 50)
QUALITY_DB = 1.0
"""The quality gate: a model may replace another only if its PSNR and motion PSNR at these horizons
are at most this many dB below the other's, both measured on the same held-out starts."""


def fidelity_worse(new: dict, ref: dict, tol_db: float = QUALITY_DB, horizons=QUALITY_HORIZONS) -> list[str]:
    """Where `new` (a `fidelity` result) falls more than `tol_db` below `ref` (one measured on the
    same starts): one line per figure, empty when it passes."""
    if new.get("starts") != ref.get("starts"):
        raise ValueError("fidelity results from different start states cannot be compared")
    out = []
    for h in horizons:
        a, b = new["horizons"].get(str(h)), ref["horizons"].get(str(h))
        if a is None or b is None:
            continue
        for key, name in (("psnr_dream", "PSNR"), ("motion_psnr_dream", "motion PSNR")):
            if a.get(key) is not None and b.get(key) is not None and a[key] < b[key] - tol_db:
                out.append(f"{name} at h={h} {a[key]:.2f} dB against {b[key]:.2f} (more than {tol_db:g} dB below)")
    return out


def strip_image(
    dream: np.ndarray, real: np.ndarray, steps=(1, 2, 3, 5, 8, 12, 15, 20, 30, 40, 50), scale: int = 2
) -> Image.Image:
    """Real row over dream row at the given steps (1-based), upscaled pixel-sharp."""
    steps = [s for s in steps if s <= dream.shape[0]]
    top = np.concatenate([real[s - 1] for s in steps], axis=1)
    bottom = np.concatenate([dream[s - 1] for s in steps], axis=1)
    sep = np.full((2, top.shape[1], 3), 255, np.uint8)
    img = Image.fromarray(np.concatenate([top, sep, bottom], axis=0))
    return img.resize((img.width * scale, img.height * scale), Image.NEAREST)


def stability(
    model: WorldModel,
    episodes: list[Episode],
    steps: int = 500,
    batch: int = 4,
    sampler: SamplerConfig | None = None,
    seed: int = 0,
    progress: bool = False,
) -> dict:
    """Dream `steps` steps with random keys from real starts; report collapse indicators per 100 steps.

    blank: frame std < 2; saturated: > 50 % of pixels at 0 or 255 beyond what real frames show;
    frozen: no pixel changes for 25 consecutive steps; sharpness: mean |Laplacian| relative to
    real frames (smearing drives it down).
    """
    sampler = sampler or model.sampler_config()
    rng = np.random.default_rng(seed)
    L = model.cfg.context_frames
    st = pick_starts(episodes, batch, 1, L, seed)
    frames = torch.from_numpy(np.stack([episodes[i].obs[t0 - L + 1 : t0 + 1] for i, t0 in st]))
    acts = torch.from_numpy(np.stack([episodes[i].actions[t0 - L + 1 : t0] for i, t0 in st]))
    dreams = Dreams(model, sampler, seed=seed)
    dreams.reset(frames, acts)

    def lap(x: np.ndarray) -> float:
        g = x.astype(np.float32).mean(-1)
        return float(np.abs(4 * g[1:-1, 1:-1] - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:]).mean())

    ref = [e.obs[j] for e in episodes for j in range(0, len(e), 50)][:200]
    ref_sharp = float(np.mean([lap(f) for f in ref]))
    ref_sat = float(np.mean([((f == 0) | (f == 255)).all(-1).mean() for f in ref]))
    prev = frames[:, -1].numpy()
    still = np.zeros(batch, dtype=int)
    chunks, cur = [], {"blank": 0, "saturated": 0, "frozen": 0, "sharp": []}
    for t in tqdm(range(steps), desc="stability", disable=not progress, leave=False):
        nxt, _, _ = dreams.step(torch.from_numpy(rng.integers(model.num_actions, size=batch)))
        f = nxt.numpy()
        for n in range(batch):
            cur["blank"] += int(f[n].std() < 2)
            cur["saturated"] += int(((f[n] == 0) | (f[n] == 255)).all(-1).mean() - ref_sat > 0.5)
            still[n] = still[n] + 1 if np.array_equal(f[n], prev[n]) else 0
            cur["frozen"] += int(still[n] >= 25)
            cur["sharp"].append(lap(f[n]) / max(ref_sharp, 1e-6))
        prev = f
        if (t + 1) % 100 == 0:
            n_fr = 100 * batch
            chunks.append(
                {
                    "steps": f"{t - 98}-{t + 1}",
                    "blank_frac": cur["blank"] / n_fr,
                    "saturated_frac": cur["saturated"] / n_fr,
                    "frozen_frac": cur["frozen"] / n_fr,
                    "sharpness_vs_real": float(np.mean(cur["sharp"])),
                }
            )
            cur = {"blank": 0, "saturated": 0, "frozen": 0, "sharp": []}
    collapsed = any(
        c["blank_frac"] > 0.1 or c["saturated_frac"] > 0.1 or c["frozen_frac"] > 0.5 or c["sharpness_vs_real"] < 0.5
        for c in chunks
    )
    return {"steps": steps, "dreams": batch, "per_100_steps": chunks, "collapse": collapsed, "last_frames": prev}


@torch.no_grad()
def reward_end_accuracy(model: WorldModel, episodes: list[Episode], end_on_life_loss: bool = True) -> dict:
    """Teacher-forced accuracy of the reward/end model on real transitions, with per-class recall
    (rewards and ends are rare, so plain accuracy alone flatters the model)."""
    from model.world_model import frames_to_tensor
    from model.world_model.reward_end import reward_to_class

    pred_r, true_r, pred_e, true_e = [], [], [], []
    for ep in episodes:
        obs = frames_to_tensor(torch.from_numpy(ep.obs)).to(model.device)[None]  # (1, T+1, C, H, W)
        act = torch.from_numpy(ep.actions).to(model.device)[None]
        logits_r, logits_e, _ = model.reward_end(obs[:, :-1], obs[:, 1:], act)
        pred_r.append(logits_r[0].argmax(-1).cpu())
        pred_e.append(logits_e[0].argmax(-1).cpu())
        true_r.append(reward_to_class(torch.from_numpy(ep.rewards)))
        end = ep.terminated | ep.life_lost if end_on_life_loss else ep.terminated
        true_e.append(torch.from_numpy(end.astype(np.int64)))
    pr, tr, pe, te = (torch.cat(x) for x in (pred_r, true_r, pred_e, true_e))

    def recall(p, t, c):
        n = int((t == c).sum())
        return None if n == 0 else float(((p == c) & (t == c)).sum() / n)

    return {
        "transitions": int(len(tr)),
        "reward_accuracy": float((pr == tr).float().mean()),
        "reward_recall": {"negative": recall(pr, tr, 0), "zero": recall(pr, tr, 1), "positive": recall(pr, tr, 2)},
        "reward_counts": {
            "negative": int((tr == 0).sum()),
            "zero": int((tr == 1).sum()),
            "positive": int((tr == 2).sum()),
        },
        "end_accuracy": float((pe == te).float().mean()),
        "end_recall": {"continue": recall(pe, te, 0), "end": recall(pe, te, 1)},
        "end_counts": {"continue": int((te == 0).sum()), "end": int((te == 1).sum())},
    }


def format_table(result: dict) -> str:
    lines = [
        "| h | PSNR dream | PSNR repeat-last | motion PSNR dream | motion PSNR repeat-last "
        "| SSIM dream | SSIM repeat-last | still pixels the dream changes |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    f = lambda v: "n/a" if v is None else f"{v:.2f}" if abs(v) < 2 else f"{v:.1f}"  # noqa: E731
    for h, r in result["horizons"].items():
        lines.append(
            f"| {h} | {f(r['psnr_dream'])} | {f(r['psnr_repeat'])} | {f(r['motion_psnr_dream'])} | "
            f"{f(r['motion_psnr_repeat'])} | {f(r['ssim_dream'])} | {f(r['ssim_repeat'])} | "
            f"{'n/a' if r.get('still_off_dream') is None else format(r['still_off_dream'], '.1%')} |"
        )
    ball = result.get("ball")
    if ball:
        pooled = ball["pooled"]
        lines += [
            "",
            "| dreamed steps | " + " | ".join(pooled) + " |",
            "| --- |" + " --- |" * len(pooled),
            f"| ball recall (within {BALL_RADIUS} px) | " + " | ".join(f(v) for v in pooled.values()) + " |",
        ]
    redraw = result.get("score_redraw")
    if redraw and redraw["points"]:
        lines += [
            "",
            f"Score digits redrawn on a point, one step from its real context: {redraw['redrawn']:.1%} of "
            f"{redraw['dreams']} dreams ({redraw['points']} held-out points whose digits change on the next frame).",
        ]
    return "\n".join(lines)
