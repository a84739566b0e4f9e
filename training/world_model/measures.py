"""Read Atari frames and score them: where Breakout's ball and paddle are, and how close a dreamed
frame is to the real one (PSNR, over all pixels or only the moving ones; SSIM; ball recall).

Plain functions of uint8 frames (H, W, C), used by the fidelity measures (training/world_model/fidelity.py),
the playability suite (training/world_model/playability/), the agent's evaluation and the dream check
(training/agent/), and the training windows' sampling weights (training/world_model/data.py).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

MOTION_THRESHOLD = 8  # of 255, any channel
# The open field where only the ball is drawn, (rows, cols) of the 64x64 frame: below the bricks,
# above the paddle, between the walls.
BALL_FIELD = {"Breakout": (slice(29, 57), slice(3, 61))}
BALL_BRIGHTNESS = 50  # of 255, any channel
BALL_RADIUS = 3  # pixels (Chebyshev) between the dreamed and the real ball for a hit
PADDLE_ROWS = 3  # a ball this close (rows of 64) to the bottom of the open field is at the paddle


def ball_position(frame: np.ndarray, game: str) -> tuple[float, float] | None:
    """Centroid (row, col) of the bright pixels in the game's open field, or None without a ball."""
    rows, cols = BALL_FIELD[game]
    lit = frame[rows, cols].max(-1) > BALL_BRIGHTNESS
    if not lit.any():
        return None
    y, x = np.nonzero(lit)
    return float(y.mean()), float(x.mean())


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


def still_changed(dream: np.ndarray, real: np.ndarray, prev: np.ndarray) -> float:
    """Of the pixels the real game leaves as they were (real == prev, uint8 (H, W, C)), the share
    the dream draws otherwise by a grey level or more in any channel: noise on a still background,
    which whole-frame PSNR in the 50s dB is mostly made of. nan where nothing is still."""
    still = (real == prev).all(-1)
    return float((dream != real).any(-1)[still].mean()) if still.any() else float("nan")


def motion_mask(real: np.ndarray, prev: np.ndarray) -> np.ndarray:
    """Pixels that change between consecutive real frames by more than the threshold."""
    return (np.abs(real.astype(np.int16) - prev.astype(np.int16)) > MOTION_THRESHOLD).any(-1)


def small_changes(episodes: list, bands: tuple[int, ...] = (1, 2, 3, 4, 6, 8)) -> dict:
    """How a real pixel changes from one frame to the next (SamplerConfig.still_band's premise):
    over every pair of consecutive frames of `episodes`, the pixels that change at all, and for each
    band b the share of them whose change is below b grey levels in every channel (b = 1 is 0 by
    construction). A sampler band at b erases no real change where that share is 0."""
    changed = 0
    below = np.zeros(len(bands), dtype=np.int64)
    for ep in episodes:
        obs = ep.obs.astype(np.int16)
        diff = np.abs(obs[1:] - obs[:-1]).max(-1)  # (T-1, H, W): the largest channel change
        moved = diff[diff > 0]
        changed += moved.size
        below += np.array([(moved < b).sum() for b in bands])
    shares = {b: float(n / max(changed, 1)) for b, n in zip(bands, below)}
    return {"changed_pixels": int(changed), "share_below": shares}
