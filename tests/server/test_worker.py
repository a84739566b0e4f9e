"""The inference worker on its own: batching across sessions that drift out of step."""

from __future__ import annotations

import asyncio

import torch

from model.sampler import SamplerConfig
from model.world_model import open_action_slot
from server.worker import InferenceWorker


def _dream_args(model, seed: int):
    g = torch.Generator().manual_seed(seed)
    obs = torch.rand(1, 4, 3, 64, 64, generator=g) * 2 - 1
    act = open_action_slot(torch.randint(0, 4, (1, 3), generator=g))
    hidden = model.burn_in(obs, act[:, :-1])
    return obs, act, hidden, SamplerConfig(num_steps=1)


def test_worker_waits_for_sessions_that_drifted_out_of_step(model_factory) -> None:
    """Three sessions that dreamed recently but ask a few ms apart still share one batch; a batch
    does not wait for a session that went quiet (paused, gone) longer than a second ago."""
    model = model_factory(0)
    worker = InferenceWorker(model, max_batch=8, gather_ms=200)
    worker.start()

    async def session(owner: int, delay: float) -> None:
        await asyncio.sleep(delay)
        nxt, reward, end, hidden, ms = await worker.dream(*_dream_args(model, owner), owner=owner)
        assert nxt.shape == (1, 3, 64, 64) and hidden[0].shape[1] == 1

    async def main() -> None:
        await asyncio.gather(*(session(o, 0) for o in range(3)))  # all three become "recent"
        worker.stats.batch_sizes.clear()
        await asyncio.gather(*(session(o, 0.02 * o) for o in range(3)))  # 0, 20, 40 ms apart
        assert dict(worker.stats.batch_sizes) == {3: 1}
        await asyncio.sleep(1.1)  # owners 1 and 2 go quiet
        worker.stats.batch_sizes.clear()
        t = asyncio.get_running_loop().time()
        await session(0, 0)
        assert dict(worker.stats.batch_sizes) == {1: 1}
        assert asyncio.get_running_loop().time() - t < 1.0  # did not wait for the quiet ones

    try:
        asyncio.run(main())
    finally:
        worker.stop()
