"""The on-disk episode store: atomic files, a rebuildable index, corrupt files reported by name."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from games.episode_store import INDEX, CorruptEpisodeError, Episode, EpisodeStore, remove_stale_temp_files
from training.world_model.data import WindowSampler


@pytest.fixture
def store(tmp_path: Path, episodes) -> EpisodeStore:
    s = EpisodeStore(tmp_path / "store")
    for ep in episodes:
        s.add(ep)
    return s


def _same(a: Episode, b: Episode) -> bool:
    return (
        all(
            np.array_equal(getattr(a, k), getattr(b, k))
            for k in ("obs", "actions", "rewards", "terminated", "life_lost")
        )
        and a.meta == b.meta
    )


def test_add_load_round_trip(store: EpisodeStore, episodes) -> None:
    names = [e["file"] for e in store.index()]
    assert names == ["ep_000000.npz", "ep_000001.npz"]
    assert [e["length"] for e in store.index()] == [12, 20] and store.num_steps() == 32 and len(store) == 2
    assert store.index()[0]["return"] == pytest.approx(float(episodes[0].rewards.sum()))
    for name, ep in zip(names, episodes, strict=True):
        got = store.load(name)
        assert _same(got, ep) and got.obs.dtype == np.uint8
    loaded, errors = store.load_all("Breakout")
    assert errors == [] and len(loaded) == 2
    assert store.load_all("Pong")[0] == []


@pytest.mark.parametrize("damage", ["delete", "garbage", "wrong-shape"])
def test_index_is_rebuilt_when_missing_or_corrupt(store: EpisodeStore, damage: str, caplog) -> None:
    before = store.index()
    p = store.root / INDEX
    if damage == "delete":
        p.unlink()
    elif damage == "garbage":
        p.write_text("{ this is not json")
    else:
        p.write_text(json.dumps({"episodes": "nope"}))
    with caplog.at_level(logging.WARNING):
        assert store.index() == before
    assert store.load_all()[1] == []
    assert store.add(store.load("ep_000000.npz")) == "ep_000002.npz"  # and the store keeps working
    assert json.loads(p.read_text())["episodes"][-1]["file"] == "ep_000002.npz"


def test_truncated_episode_is_reported_by_name_while_others_load(store: EpisodeStore) -> None:
    bad = store.root / "ep_000001.npz"
    bad.write_bytes(bad.read_bytes()[:1000])
    episodes, errors = store.load_all()
    assert len(episodes) == 1 and len(episodes[0]) == 12
    assert len(errors) == 1 and "ep_000001.npz" in errors[0]
    with pytest.raises(CorruptEpisodeError, match="ep_000001.npz"):
        store.load("ep_000001.npz")


def test_unindexed_corrupt_file_is_skipped_and_named(store: EpisodeStore, caplog) -> None:
    (store.root / INDEX).unlink()
    (store.root / "ep_000005.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with caplog.at_level(logging.ERROR):
        entries = store.index()
    assert [e["file"] for e in entries] == ["ep_000000.npz", "ep_000001.npz"]
    assert "ep_000005.npz" in caplog.text
    assert store.add(store.load("ep_000000.npz")) not in {"ep_000000.npz", "ep_000001.npz", "ep_000005.npz"}


def test_inconsistent_episode_is_rejected(tmp_path: Path, episodes) -> None:
    ep = episodes[0]
    bad = Episode(ep.obs[:-1], ep.actions, ep.rewards, ep.terminated, ep.life_lost, ep.meta)
    with pytest.raises(CorruptEpisodeError, match="frames for"):
        EpisodeStore(tmp_path).add(bad)
    # The same inconsistency inside a file on disk is named when loading.
    (tmp_path / "ep_000000.npz").write_bytes(bad.to_bytes())
    with pytest.raises(CorruptEpisodeError, match="ep_000000.npz"):
        Episode.from_file(tmp_path / "ep_000000.npz")


def test_stale_temp_files_are_removed(store: EpisodeStore) -> None:
    (store.root / ".ep_000002.npz.abc.tmp").write_bytes(b"half an episode")
    assert remove_stale_temp_files(store.root) == 1
    assert not list(store.root.glob(".*.tmp")) and len(store) == 2


def test_window_sampler_shapes_and_padding(episodes) -> None:
    sampler = WindowSampler(episodes, seed=0)
    b = sampler.sample(6, 4)
    assert b.obs.shape == (6, 5, 3, 64, 64) and b.actions.shape == b.rewards.shape == b.ends.shape == (6, 4)
    assert b.obs.min() >= -1 and b.obs.max() <= 1
    # A window that starts before the episode is padded with its first frame and NOOP.
    sampler.rng = np.random.default_rng(0)
    for _ in range(50):
        b = sampler.sample(1, 4)
        if b.actions[0, 0] == 0 and (b.obs[0, 0] == b.obs[0, 1]).all():
            break
    else:
        pytest.fail("never sampled a padded window")
    with pytest.raises(ValueError):
        WindowSampler([])


def test_window_sampler_weights_pick_the_last_transition(episodes) -> None:
    """Per-transition weights decide which transition ends a window: with all weight on one
    transition, every window ends there; zero-weight transitions are never drawn."""
    ep = episodes[1]
    weights = [np.zeros(len(e)) for e in episodes]
    weights[1][7] = 1.0
    sampler = WindowSampler(episodes, seed=0, weights=weights)
    for _ in range(20):
        b = sampler.sample(4, 3)
        assert (b.actions[:, -1] == int(ep.actions[7])).all()
        assert np.allclose(b.obs[:, -1].permute(0, 2, 3, 1).numpy(), ep.obs[8] / 127.5 - 1, atol=1e-5)
    # Weights 1 and 9 on two transitions: drawn about 1:9.
    weights = [np.zeros(len(e)) for e in episodes]
    weights[0][2], weights[0][5] = 1.0, 9.0
    sampler = WindowSampler(episodes, seed=1, weights=weights)
    target = episodes[0].obs[6] / 127.5 - 1
    last = lambda: sampler.sample(1, 2).obs[0, -1].permute(1, 2, 0).numpy()  # noqa: E731
    lasts = [np.allclose(last(), target, atol=1e-5) for _ in range(400)]
    assert 0.8 < np.mean(lasts) < 0.97
    for bad in ([np.ones(3)], [np.ones(len(e)) * -1 for e in episodes], [np.zeros(len(e)) for e in episodes]):
        with pytest.raises(ValueError):
            WindowSampler(episodes, weights=bad)


def test_field_weights_emphasise_empty_fields_and_the_serve() -> None:
    """Breakout: transitions from a frame without a ball in the open field weigh more, FIRE from
    one more again; a frame with a ball keeps weight 1."""
    from training.world_model.data import field_weights
    from training.world_model.measures import BALL_FIELD

    rows, cols = BALL_FIELD["Breakout"]
    obs = np.zeros((4, 64, 64, 3), np.uint8)
    obs[1, rows.start + 5, cols.start + 5] = 200  # a ball in frame 1
    ep = Episode(obs, np.array([1, 1, 0]), np.zeros(3, np.float32), np.zeros(3, bool), np.zeros(3, bool))
    w = field_weights(ep, "Breakout", fire=1, empty_field=2.0, serve=3.0)
    assert w.tolist() == [6.0, 1.0, 2.0]
    # FIRE on an empty field in the pause before a lost life is counted (the game ignores it).
    obs = np.zeros((31, 64, 64, 3), np.uint8)
    actions = np.ones(30, dtype=np.int64)
    life_lost = np.zeros(30, bool)
    life_lost[20] = True
    ep = Episode(obs, actions, np.zeros(30, np.float32), np.zeros(30, bool), life_lost)
    w = field_weights(ep, "Breakout", fire=1, pause_fire=0.0)
    assert w[:10].tolist() == [1.0] * 10 and w[10:21].tolist() == [0.0] * 11 and w[21:].tolist() == [1.0] * 9


def test_paddle_weights_emphasise_the_ball_at_the_paddle() -> None:
    """Breakout: a transition from a frame with the ball in the bottom rows of the open field, or
    from the frame after it when the ball dipped below the field, weighs more; a ball higher up, an
    empty field after a ball higher up, and an empty field after an empty one keep weight 1."""
    from training.world_model.data import paddle_weights
    from training.world_model.measures import BALL_FIELD, PADDLE_ROWS

    rows, cols = BALL_FIELD["Breakout"]
    obs = np.zeros((7, 64, 64, 3), np.uint8)
    obs[0, rows.start + 5, cols.start + 5] = 200  # high up
    obs[2, rows.stop - 1, cols.start + 9] = 200  # on the paddle's row
    obs[3, rows.stop - 1 - PADDLE_ROWS, cols.start + 9] = 200  # the top row that counts as at the paddle
    # frame 4: none (dipped below the field after frame 3); frame 5: none after none
    ep = Episode(obs, np.zeros(6, np.int64), np.zeros(6, np.float32), np.zeros(6, bool), np.zeros(6, bool))
    w = paddle_weights(ep, "Breakout", 4.0)
    assert w.tolist() == [1.0, 1.0, 4.0, 4.0, 4.0, 1.0]
    obs[3] = 0
    obs[3, rows.stop - 2 - PADDLE_ROWS, cols.start + 9] = 200  # one row higher: not at the paddle
    assert paddle_weights(ep, "Breakout", 4.0).tolist() == [1.0, 1.0, 4.0, 1.0, 1.0, 1.0]


def test_reward_weights_emphasise_points_and_the_step_after() -> None:
    """Any game: a transition that scores (either sign) and the one after it weigh more (Pong draws
    the computer's new score a step after its reward); the others keep weight 1."""
    from training.world_model.data import reward_weights

    rewards = np.array([0, 0, 1, 0, 0, -1, 0, 0], np.float32)
    no = np.zeros(8, bool)
    ep = Episode(np.zeros((9, 64, 64, 3), np.uint8), np.zeros(8, np.int64), rewards, no, no)
    assert reward_weights(ep, 4.0).tolist() == [1, 1, 4, 4, 1, 4, 4, 1]
    assert reward_weights(ep, 4.0, after=0).tolist() == [1, 1, 4, 1, 1, 4, 1, 1]
    rewards[-1] = 1  # a point on the last transition: nothing after it to mark
    assert reward_weights(ep, 3.0).tolist() == [1, 1, 3, 3, 1, 3, 3, 3]


def _add_many(root: str, n: int, seed: int) -> None:
    from tests.conftest import synthetic_episode

    rng = np.random.default_rng(seed)
    s = EpisodeStore(root)
    for _ in range(n):
        s.add(synthetic_episode(rng, 5))


def test_concurrent_writers_lose_no_episode(tmp_path: Path) -> None:
    """Two collectors writing into one store at once (seen: four episodes overwritten)."""
    import multiprocessing as mp

    root = str(tmp_path / "store")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_add_many, args=(root, 12, seed)) for seed in (1, 2, 3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    s = EpisodeStore(root)
    assert len(list(Path(root).glob("ep_*.npz"))) == 36
    assert len(s) == 36 and s.num_steps() == 36 * 5
    assert not list(Path(root).glob(".*.tmp"))
