"""The paired bootstrap of training.dbc.scoring on synthetic data whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from training.dbc.scoring import check_episode_seeds, compare, paired_bootstrap


def test_a_constant_shift_has_a_zero_width_interval() -> None:
    rng = np.random.default_rng(0)
    b = rng.uniform(0, 100, (3, 200))
    r = paired_bootstrap(b + 7.0, b, n_boot=2000)
    assert r["diff"] == pytest.approx(7.0) and r["lo"] == pytest.approx(7.0) and r["hi"] == pytest.approx(7.0)


def test_pairing_narrows_the_interval() -> None:
    """b equals a except on 10 of 1000 episodes, where a succeeds and b fails: a - b = 1 point exactly.
    Paired by episode, the CI is about +-0.6 points; unpaired it would be about +-4.4 (two 50 % rates)."""
    rng = np.random.default_rng(1)
    a = 100.0 * (rng.uniform(size=(1, 1000)) < 0.5)
    b = a.copy()
    b[0, np.flatnonzero(a[0])[:10]] = 0.0
    r = paired_bootstrap(a, b, n_boot=4000)
    assert r["diff"] == pytest.approx(1.0)
    assert r["lo"] > 0 and r["hi"] < 2.0 and r["lo"] < 1.0 < r["hi"]
    shuffled = paired_bootstrap(a, b[:, rng.permutation(1000)], n_boot=4000)  # pairing destroyed
    assert shuffled["hi"] - shuffled["lo"] > 4 * (r["hi"] - r["lo"])


def test_coverage_is_about_95_percent() -> None:
    """Bernoulli successes at 80 % and 70 % (true difference 10 points) on 300 shared episodes:
    over 200 synthetic evaluations the 95 % interval holds the truth about 95 % of the time."""
    rng = np.random.default_rng(2)
    hits = 0
    for rep in range(200):
        u = rng.uniform(size=(2, 300))  # a common random number per episode makes the pair correlated
        a = 100.0 * (u < 0.8)
        b = 100.0 * (u < 0.7)
        r = paired_bootstrap(a, b, n_boot=1000, seed=rep)
        hits += r["lo"] <= 10.0 <= r["hi"]
    assert 0.90 <= hits / 200 <= 0.99


def test_resampling_seeds_widens_the_interval() -> None:
    rng = np.random.default_rng(3)
    offsets = np.array([[-10.0], [0.0], [10.0]])  # a large seed-to-seed spread
    a = 50 + offsets + rng.normal(0, 1, (3, 400))
    b = 45 + rng.normal(0, 1, (3, 400))
    ep = paired_bootstrap(a, b, n_boot=2000)
    both = paired_bootstrap(a, b, n_boot=2000, over_seeds=True)
    assert ep["lo"] < 5 < ep["hi"] and both["hi"] - both["lo"] > 3 * (ep["hi"] - ep["lo"])


def test_compare_pairs_by_episode_seed_and_refuses_mismatches() -> None:
    def res(algo: str, seed: int, wins: list[int], seeds: list[int]) -> dict:
        eps = [{"seed": s, "success": bool(w)} for s, w in zip(seeds, wins, strict=True)]
        return {"policy": f"{algo}_s{seed}", "algo": algo, "seed": seed, "episodes": eps}

    seeds = [0, 1, 2, 3]
    results = [res("bc", 0, [1, 0, 0, 1], seeds), res("dbc", 0, [1, 1, 0, 1], seeds)]
    (c,) = compare("fetch", results, n_boot=500)
    assert (c["a"], c["b"]) == ("dbc", "bc") and c["diff"] == pytest.approx(25.0) and c["episodes"] == 4
    assert c["ci95_episodes"][0] >= 0  # dbc never loses an episode that bc wins
    with pytest.raises(ValueError, match="other episodes"):
        compare("fetch", [results[0], res("dbc", 0, [1, 1, 0, 1], [0, 1, 2, 4])])


def test_episode_seed_splits() -> None:
    check_episode_seeds(list(range(500)), "test")
    check_episode_seeds(list(range(1000, 1100)), "selection")
    for seeds, split in (([999, 1000], "test"), ([5], "selection"), ([1_000_000], "test")):
        with pytest.raises(ValueError):
            check_episode_seeds(seeds, split)
