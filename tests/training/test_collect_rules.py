"""Collection that shows the rules: idle waits without FIRE, and branches of every action from one
cloned emulator state, on the real emulator."""

from __future__ import annotations

import numpy as np
import pytest

from games.episode_store import EpisodeStore
from training.world_model.measures import ball_position
from training.world_model.recording import CONTEXT, collect


def test_branches_show_every_action_from_the_same_state(tmp_path) -> None:
    store = EpisodeStore(tmp_path)
    collect("Breakout", store, 300, policy="rules", seed=7, branch_prob=0.01, branch_len=6, progress=False)
    eps, errors = store.load_all()
    assert not errors
    branches = [e for e in eps if e.meta["source"] == "branch"]
    played = [e for e in eps if e.meta["source"] == "collect"]
    assert played and sum(len(e) for e in played) == 300
    assert len(branches) % 4 == 0 and branches  # the 4 actions of Breakout's minimal set, each time
    for k in range(0, len(branches), 4):
        group = branches[k : k + 4]
        assert [e.meta["branch_action"] for e in group] == [0, 1, 2, 3]
        for e in group[1:]:  # the same real context before the branch point
            assert np.array_equal(e.obs[:CONTEXT], group[0].obs[:CONTEXT])
        for e in group:
            assert (e.actions[CONTEXT - 1 :] == e.meta["branch_action"]).all()
    # The first branch point is the wait for the first serve: only FIRE brings a ball.
    first = branches[:4]
    balls = [sum(ball_position(f, "Breakout") is not None for f in e.obs[CONTEXT:]) for e in first]
    assert balls[1] > 0 and balls[0] == balls[2] == balls[3] == 0


def test_rule_showing_play_waits_without_fire(tmp_path) -> None:
    store = EpisodeStore(tmp_path)
    collect("Breakout", store, 600, policy="rules", seed=3, progress=False)
    ep = store.load_all()[0][0]
    first_fire = int(np.argmax(ep.actions == 1))
    assert first_fire > 5  # it idled first (seed 3 waits this long), never pressing FIRE
    # before the first serve, the field stays empty whatever else is pressed
    assert all(ball_position(f, "Breakout") is None for f in ep.obs[: first_fire + 1])


def test_collecting_the_same_seed_twice_is_refused_and_writes_nothing(tmp_path) -> None:
    store = EpisodeStore(tmp_path)
    collect("Pong", store, 40, policy="random", seed=11, progress=False)
    before = sorted(p.name for p in tmp_path.iterdir()), store.index()
    with pytest.raises(ValueError, match="seed 11"):
        collect("Pong", store, 40, policy="random", seed=11, progress=False)
    assert (sorted(p.name for p in tmp_path.iterdir()), store.index()) == before
    collect("Pong", store, 40, policy="random", seed=12, progress=False)  # another seed is more play
    assert len(store) == 2
