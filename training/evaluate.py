"""Measure how faithful a dream is (docs/design.md §6).

Start the dream from a real 4-frame context of a held-out episode, feed it the episode's own
actions, and compare with the real frames at horizons h: whole-frame PSNR, motion PSNR (only
pixels that change between consecutive real frames: ball, paddle, breaking bricks) and SSIM,
beside the trivial repeat-the-last-real-frame predictor. Where the game has a ball in an open
field (Breakout), also ball recall: of the real frames with the ball in the field, the share whose
dream draws a ball within 3 pixels of it (the detail a playable dream must keep; whole-frame PSNR
hardly sees it). Also a long rollout with random keys
checks the dream for collapse (blank, frozen, smeared or saturated frames).

    python training/evaluate.py --checkpoint runs/Breakout/snapshot --data data/Breakout-heldout
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from games.episode_store import Episode, EpisodeStore
from model.checkpoint import CheckpointError
from model.sampler import SamplerConfig
from model.world_model import Dreams, WorldModel

HORIZONS = (1, 5, 15, 50)
MOTION_THRESHOLD = 8  # of 255, any channel
# The open field where only the ball is drawn, (rows, cols) of the 64x64 frame: below the bricks,
# above the paddle, between the walls.
BALL_FIELD = {"Breakout": (slice(29, 57), slice(3, 61))}
BALL_BRIGHTNESS = 50  # of 255, any channel
BALL_RADIUS = 3  # pixels (Chebyshev) between the dreamed and the real ball for a hit


def ball_position(frame: np.ndarray, game: str) -> tuple[float, float] | None:
    """Centroid (row, col) of the bright pixels in the game's open field, or None without a ball."""
    rows, cols = BALL_FIELD[game]
    lit = frame[rows, cols].max(-1) > BALL_BRIGHTNESS
    if not lit.any():
        return None
    y, x = np.nonzero(lit)
    return float(y.mean()), float(x.mean())


# Breakout: after the ball leaves the field the game pauses (8 agent steps) before the life counter
# drops; FIRE in that pause is ignored, FIRE after it serves.
LIFE_LOSS_PAUSE = {"Breakout": 10}


def field_weights(
    ep: Episode, game: str, fire: int, empty_field: float = 1.0, serve: float = 1.0, pause_fire: float = 1.0
) -> np.ndarray:
    """Per-transition sampling weights for training (see `WindowSampler`): a transition taken
    from a frame with no ball in the open field (the game waits for a serve, or the ball is up
    among the bricks) weighs `empty_field`; FIRE from such a frame weighs `empty_field * serve`;
    all others 1. These depend only on the frame and the action the model is given, so they change
    how often a situation is trained, not what the model should predict in it.

    `pause_fire` multiplies FIRE from an empty field in the pause before a lost life is counted
    (the next `LIFE_LOSS_PAUSE` steps hold a life loss). The game ignores FIRE there, and the last
    4 frames of the pause look exactly like a game waiting for its serve, so these transitions
    teach a 4-frame model that FIRE on a waiting field may do nothing. Weighting them down
    chooses the prior over that hidden state (players serve from waits far more often than they
    press FIRE in the pause): the dream serves when FIRE comes on a still, empty field."""
    rows, cols = BALL_FIELD[game]
    empty = ~(ep.obs[:-1, rows, cols].max(-1) > BALL_BRIGHTNESS).any((1, 2))
    w = np.ones(len(ep), dtype=np.float64)
    w[empty] *= empty_field
    fire_empty = empty & (ep.actions == fire)
    w[fire_empty] *= serve
    if pause_fire != 1.0:
        lost = np.concatenate([[0], np.cumsum(ep.life_lost.astype(np.int64))])
        t = np.arange(len(ep))
        in_pause = lost[np.minimum(t + LIFE_LOSS_PAUSE[game] + 1, len(ep))] > lost[t]
        w[fire_empty & in_pause] *= pause_fire
    return w


def breakout_paddle_column(frame: np.ndarray) -> float | None:
    """Mean column (in BALL_FIELD's columns) of the lit pixels in the two rows just below Breakout's
    open field, where the paddle is; None when none is lit."""
    rows, cols = BALL_FIELD["Breakout"]
    lit = np.nonzero(frame[rows.stop : rows.stop + 2, cols].max(-1).max(0) > BALL_BRIGHTNESS)[0]
    return float(lit.mean()) if len(lit) else None


def ball_recall(dream: np.ndarray, real: np.ndarray, game: str) -> dict | None:
    """Per dreamed step (1-based index k-1), over starts whose real frame k has a ball in the field:
    `recall` = share of dreams with a ball within BALL_RADIUS of it; `drawn` = share with any ball;
    `real_balls` = how many starts that is, `hits` = how many of them the dream got. dream, real:
    (N, h, H, W, C). None for other games."""
    if game not in BALL_FIELD:
        return None
    n, horizon = real.shape[:2]
    out = {"recall": [], "drawn": [], "real_balls": [], "hits": []}
    for k in range(horizon):
        hits = drawn = count = 0
        for i in range(n):
            r = ball_position(real[i, k], game)
            if r is None:
                continue
            count += 1
            d = ball_position(dream[i, k], game)
            if d is not None:
                drawn += 1
                hits += max(abs(d[0] - r[0]), abs(d[1] - r[1])) <= BALL_RADIUS
        out["real_balls"].append(count)
        out["hits"].append(int(hits))
        out["recall"].append(hits / count if count else None)
        out["drawn"].append(drawn / count if count else None)
    return out


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


def mean_ball_recall(curve: dict, first: int, last: int) -> float | None:
    """Pooled recall over dreamed steps first..last (1-based): hits / real balls."""
    hits, count = sum(curve["hits"][first - 1 : last]), sum(curve["real_balls"][first - 1 : last])
    return hits / count if count else None


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR in dB between uint8 images (H, W, C); over the masked pixels (H, W) if given."""
    err = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    if mask is not None:
        if not mask.any():
            return float("nan")
        err = err[mask]
    mse = max(err.mean(), 1e-10)
    return float(10 * np.log10(255.0**2 / mse))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM (Wang et al. 2004) with an 11x11 Gaussian window (sigma 1.5), averaged over channels."""
    x = torch.from_numpy(a).permute(2, 0, 1)[None].double()
    y = torch.from_numpy(b).permute(2, 0, 1)[None].double()
    g = torch.exp(-((torch.arange(11) - 5) ** 2) / (2 * 1.5**2)).double()
    g = (g[:, None] @ g[None]) / g.sum() ** 2
    w = g.expand(3, 1, 11, 11)
    mu_x, mu_y = F.conv2d(x, w, groups=3), F.conv2d(y, w, groups=3)
    sxx = F.conv2d(x * x, w, groups=3) - mu_x**2
    syy = F.conv2d(y * y, w, groups=3) - mu_y**2
    sxy = F.conv2d(x * y, w, groups=3) - mu_x * mu_y
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return float(s.mean())


def motion_mask(real: np.ndarray, prev: np.ndarray) -> np.ndarray:
    """Pixels that change between consecutive real frames by more than the threshold."""
    return (np.abs(real.astype(np.int16) - prev.astype(np.int16)) > MOTION_THRESHOLD).any(-1)


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
    """Per-horizon PSNR / motion PSNR / SSIM of the dream and of repeat-last, averaged over starts."""
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
        }
        for n in range(len(st)):
            mask = motion_mask(real[n, k], prev_real[n, k])
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
        "starts": [list(s) for s in st],
        "sampler": vars(sampler),
        "_dream": dream,
        "_real": real,
    }


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
    from model.reward_end import reward_to_class
    from model.world_model import frames_to_tensor

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
        "| SSIM dream | SSIM repeat-last |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    f = lambda v: "n/a" if v is None else f"{v:.2f}" if abs(v) < 2 else f"{v:.1f}"  # noqa: E731
    for h, r in result["horizons"].items():
        lines.append(
            f"| {h} | {f(r['psnr_dream'])} | {f(r['psnr_repeat'])} | {f(r['motion_psnr_dream'])} | "
            f"{f(r['motion_psnr_repeat'])} | {f(r['ssim_dream'])} | {f(r['ssim_repeat'])} |"
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
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, required=True, help="snapshot path (without extension)")
    p.add_argument("--data", type=Path, required=True, help="held-out episode store")
    p.add_argument("--starts", type=int, default=8)
    p.add_argument("--horizons", default="1,5,15,50")
    p.add_argument("--steps", type=int, default=3, help="denoising steps")
    p.add_argument("--heun", action="store_true")
    p.add_argument("--sigma-max", type=float, default=SamplerConfig.sigma_max, help="first noise level of the sampler")
    p.add_argument("--stability-steps", type=int, default=500, help="0 to skip the long random-key rollout")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="folder for fidelity.json and strip.png")
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads (0 = torch's default; 1 beside a training run)"
    )
    args = p.parse_args(argv)
    if args.threads < 0:
        p.error(f"--threads must be >= 0, got {args.threads}")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        from model.device import pick_device

        horizons = tuple(int(h) for h in args.horizons.split(","))
        if not horizons or min(horizons) < 1:
            raise ValueError(f"bad --horizons {args.horizons!r}")
        model = WorldModel.from_snapshot(args.checkpoint, pick_device(args.device))
        sampler = model.sampler_config(num_steps=args.steps, order=2 if args.heun else 1, sigma_max=args.sigma_max)
        store = EpisodeStore(args.data)
        episodes, errors = store.load_all(model.cfg.game)
        for e in errors:
            print(f"warning: {e}", file=sys.stderr)
        if not episodes:
            raise ValueError(f"no readable {model.cfg.game} episodes in {args.data}")
        res = fidelity(model, episodes, horizons, args.starts, sampler, args.seed, progress=True)
        res["reward_end"] = reward_end_accuracy(model, episodes)
        stab = None
        if args.stability_steps:
            stab = stability(model, episodes, args.stability_steps, sampler=sampler, seed=args.seed, progress=True)
    except (CheckpointError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = args.out or args.checkpoint.parent / "eval"
    out.mkdir(parents=True, exist_ok=True)
    strip_image(res.pop("_dream")[0], res.pop("_real")[0]).save(out / "strip.png")
    if res.get("ball"):
        ball_plot(res["ball"]).save(out / "ball.png")
    if stab is not None:
        Image.fromarray(np.concatenate(list(stab.pop("last_frames")), axis=1)).resize(
            (64 * 4 * 2, 128), Image.NEAREST
        ).save(out / "stability_last.png")
        res["stability"] = stab
    res["checkpoint"] = str(args.checkpoint)
    res["heldout_episodes"] = len(episodes)
    (out / "fidelity.json").write_text(json.dumps(res, indent=1))
    print(format_table(res))
    re = res["reward_end"]
    print(
        f"reward/end on {re['transitions']} held-out transitions: reward acc {re['reward_accuracy']:.3f} "
        f"(recall {re['reward_recall']}), end acc {re['end_accuracy']:.3f} (recall {re['end_recall']})"
    )
    if stab is not None:
        print(f"stability over {stab['steps']} random-key steps: collapse={stab['collapse']}")
        for c in stab["per_100_steps"]:
            print(f"  {c}")
    print(f"wrote {out / 'fidelity.json'} and {out / 'strip.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
