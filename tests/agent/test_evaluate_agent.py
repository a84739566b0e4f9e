"""The agent's real-game statistics and per-episode seeding (training/agent/real_game.py; real
emulator, tiny agent)."""

from __future__ import annotations

from model.agent import ActorCritic, AgentPolicy, agent_preset
from training.agent.real_game import agent_player, compare, p_text, play

NAMES = ["NOOP", "FIRE", "RIGHT", "LEFT"]


def test_compare_separates_clear_and_null_cases() -> None:
    clear = compare([5.0, 6, 7, 5, 6, 8, 7, 6], [1.0, 0, 2, 1, 1, 0, 2, 1])
    assert clear["difference"] == 5.25 and clear["p_value"] < 0.01
    assert clear["ci95"][0] > 3 and clear["ci95"][1] < 8
    same = compare([1.0, 2, 3, 1, 2, 3], [3.0, 2, 1, 3, 2, 1])
    assert same["difference"] == 0 and same["p_value"] > 0.3
    worse = compare([0.0, 1, 0, 1], [3.0, 4, 3, 4])
    assert worse["p_value"] > 0.9
    apart = compare([10.0] * 30, [0.0] * 30)  # no shuffle reaches the difference: p = 1 / 20,001
    assert p_text(apart["p_value"]) == "p < 0.0001" and p_text(clear["p_value"]).startswith("p = 0.00")


def test_each_episode_replays_alone() -> None:
    """Episode i depends only on seed + i: replaying it by itself gives the same actions."""
    policy = AgentPolicy(ActorCritic(agent_preset("tiny", "Breakout", NAMES)), seed=0)  # uniform: 4 choices a step

    def recorded() -> tuple[tuple, list[list[int]]]:
        reset, act = agent_player(policy)
        log: list[list[int]] = []

        def start(seed: int) -> None:
            log.append([])
            reset(seed)

        def step(env, obs, rng) -> int:
            log[-1].append(act(env, obs, rng))
            return log[-1][-1]

        return (start, step), log

    player, both = recorded()
    play("Breakout", player, episodes=2, seed=100, max_steps=40, progress=False)
    player, alone = recorded()
    play("Breakout", player, episodes=1, seed=101, max_steps=40, progress=False)
    assert len(both[1]) == 40 and both[1] == alone[0]
    assert both[0] != both[1]
