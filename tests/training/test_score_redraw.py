"""fidelity.score_redraw on real Boxing play: a dream that draws the real next frame redraws every
score, one that repeats the last frame none, a real (tiny, untrained) model runs through it, and a
game without a known score region has no figure."""

from __future__ import annotations

import numpy as np
import pytest

from games.episode_store import Episode
from games.experts import EXPERTS
from tests.conftest import make_tiny_model
from training.world_model.fidelity import format_table, score_redraw
from training.world_model.playability import core


@pytest.fixture(scope="module")
def boxing_episode() -> Episode:
    """120 steps of the Boxing expert (it lands punches: 8 points in this stretch)."""
    g, rng = core.RealGame("Boxing"), np.random.default_rng(0)
    g.reset(core.SEED)
    obs, acts, rews = [g.frames[-1]], [], []
    for _ in range(120):
        a = EXPERTS["Boxing"](g.env, rng)
        r = g.step(a)[0]
        obs.append(g.frames[-1]), acts.append(a), rews.append(r)
    n = len(acts)
    return Episode(np.stack(obs), np.array(acts), np.array(rews, np.float32), np.zeros(n, bool), np.zeros(n, bool), {})


def test_the_real_next_frame_redraws_every_score_and_the_last_frame_none(boxing_episode: Episode) -> None:
    e = boxing_episode
    model = make_tiny_model(0, "Boxing", core.RealGame("Boxing").meanings)

    def real_next(frames: np.ndarray, actions: np.ndarray, seed: int) -> np.ndarray:
        # the real next frame of each context, found in the episode by its frames
        starts = [next(t for t in range(3, len(e.actions)) if np.array_equal(e.obs[t - 3 : t + 1], f)) for f in frames]
        return np.stack([e.obs[t + 1] for t in starts])

    def last_frame(frames: np.ndarray, actions: np.ndarray, seed: int) -> np.ndarray:
        return frames[:, -1]

    real = score_redraw(model, [e], seeds=2, dream_next=real_next)
    assert real["points"] >= 3 and real["dreams"] == 2 * real["points"] and real["redrawn"] == 1.0
    assert score_redraw(model, [e], seeds=2, dream_next=last_frame)["redrawn"] == 0.0
    tiny = score_redraw(model, [e], seeds=1)  # the model itself, through Dreams
    assert tiny["points"] == real["points"] and 0.0 <= tiny["redrawn"] <= 1.0
    text = format_table({"horizons": {}, "score_redraw": real})
    assert "100.0% of" in text and f"({real['points']} held-out points" in text


def test_a_game_without_a_score_region_has_no_figure(tiny_model, boxing_episode: Episode) -> None:
    assert tiny_model.cfg.game == "Breakout" and score_redraw(tiny_model, [boxing_episode]) is None
