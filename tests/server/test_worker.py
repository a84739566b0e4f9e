"""The inference worker on its own: batching across sessions that drift out of step, each dream
with its own noise."""

from __future__ import annotations

import asyncio

import torch

from model.world_model import DreamNoise, open_action_slot
from model.world_model.sampler import SamplerConfig
from server.worker import InferenceWorker


def _dream_args(model, seed: int):
    g = torch.Generator().manual_seed(seed)
    obs = torch.rand(1, 4, 3, 64, 64, generator=g) * 2 - 1
    act = open_action_slot(torch.randint(0, 4, (1, 3), generator=g))
    hidden = model.burn_in(obs, act[:, :-1])
    return obs, act, hidden, SamplerConfig(num_steps=1)


def test_worker_waits_for_sessions_that_drifted_out_of_step(model_factory) -> None:
    """Three sessions that dreamed recently but ask apart still share one batch; a batch does not
    wait for a session that went quiet (paused, gone) longer than QUIET_S ago. "Recently" is read
    from the test's own clock, and the gather window is a minute, so how fast the machine runs
    changes nothing: a batch that waited for a quiet session would take the whole minute."""
    model = model_factory(0)
    now = [0.0]
    worker = InferenceWorker(model, max_batch=8, gather_ms=60_000, clock=lambda: now[0])
    worker.start()

    async def session(owner: int, delay: float) -> None:
        await asyncio.sleep(delay)
        nxt, reward, end, hidden, ms = await worker.dream(*_dream_args(model, owner), owner=owner)
        assert nxt.shape == (1, 3, 64, 64) and hidden[0].shape[1] == 1

    async def main() -> None:
        # All three become "recent" in one batch: the worker is held off (its lock, re-entrant for
        # this thread) until the three have asked, so none is left waiting for the others.
        with worker._cv:
            first = [asyncio.ensure_future(session(o, 0)) for o in range(3)]
            while worker.pending < 3:
                await asyncio.sleep(0)
        await asyncio.gather(*first)
        assert dict(worker.stats.batch_sizes) == {3: 1}
        worker.stats.batch_sizes.clear()
        now[0] += 0.5  # still recent
        await asyncio.gather(*(session(o, 0.02 * o) for o in range(3)))  # 0, 20, 40 ms apart
        assert dict(worker.stats.batch_sizes) == {3: 1}
        now[0] += InferenceWorker.QUIET_S + 0.1  # owners 1 and 2 go quiet
        worker.stats.batch_sizes.clear()
        await asyncio.wait_for(session(0, 0), timeout=30)  # did not wait for the quiet ones
        assert dict(worker.stats.batch_sizes) == {1: 1}

    try:
        asyncio.run(main())
    finally:
        worker.stop()


def test_each_dream_uses_its_own_noise_in_a_shared_batch(model_factory) -> None:
    """Sessions batched together each bring their DreamNoise: two with the same inputs and noise
    get the same frame and reward, one with other noise another frame; alone, the same as batched."""
    model = model_factory(0)
    worker = InferenceWorker(model, max_batch=8, gather_ms=200)
    worker.start()
    args = _dream_args(model, 0)
    noise = [DreamNoise.draw(1, (3, 64, 64), torch.Generator().manual_seed(s)) for s in (5, 5, 6)]

    async def main() -> tuple[list, tuple]:
        batched = await asyncio.gather(*(worker.dream(*args, owner=o, noise=noise[o]) for o in range(3)))
        assert dict(worker.stats.batch_sizes) == {3: 1}
        alone = await worker.dream(*args, owner=0, noise=noise[0])
        return batched, alone

    try:
        (a, b, c), alone = asyncio.run(main())
    finally:
        worker.stop()
    assert torch.equal(a[0], b[0]) and a[1] == b[1] and a[2] == b[2]
    assert not torch.allclose(a[0], c[0])
    torch.testing.assert_close(alone[0], a[0], atol=1e-5, rtol=0)
