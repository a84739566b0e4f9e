"""ONNX Runtime backends of the denoiser (model/world_model/onnx_backend.py) on the shipped Breakout model and
real emulator contexts: fp32 parity with torch, int8 dreams within a measured PSNR of torch's, the
cache (keyed by the weights, reused, written atomically), the backend choice, and bad input."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from games.contexts import play_contexts  # noqa: E402
from model.world_model import Dreams, WorldModel, frames_to_tensor  # noqa: E402
from model.world_model.onnx_backend import (  # noqa: E402
    BACKENDS,
    OnnxUNet,
    gated_backend,
    load_onnx_unet,
    prefer_onnx,
    unet_inputs,
    use_backend,
    weights_key,
)
from model.world_model.sampler import SamplerConfig, sample_next_frame  # noqa: E402

log = logging.getLogger(__name__)
SHIPPED = Path(__file__).resolve().parents[2] / "checkpoints" / "Breakout"

INT8_MIN_PSNR = 35.0
"""Lowest PSNR (dB, frames in [0, 255]) of one int8 dream against torch's from the same noise and
real context, 1-3 Euler steps. Measured (2026-12-01) on the shipped model, 32 held-out contexts
(seed 1), calibrated on 32 others (seed 0): worst frame 48.7 / 41.3 / 41.5 dB at 1 / 2 / 3 steps
(docs/benchmarks.md); the threshold leaves about 6 dB of margin below the worst."""


@pytest.fixture(scope="module")
def shipped() -> WorldModel:
    if not SHIPPED.with_suffix(".safetensors").exists():
        pytest.skip("the shipped Breakout snapshot is not in checkpoints/")
    return WorldModel.from_snapshot(SHIPPED, torch.device("cpu"), "fp32", freeze=False)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="module")
def calibration() -> tuple[np.ndarray, np.ndarray]:
    return play_contexts("Breakout", 32, seed=0)


@pytest.fixture(scope="module")
def held_out() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """32 real contexts the int8 graph was not calibrated on: uint8 frames (N, L, H, W, C), the
    same in [-1, 1] as (N, L, C, H, W), and the actions (N, L) with the next one last."""
    frames, actions = (torch.from_numpy(a) for a in play_contexts("Breakout", 32, seed=1))
    return frames, frames_to_tensor(frames), actions


@pytest.fixture(scope="module")
def fp32(shipped: WorldModel, cache: Path) -> OnnxUNet:
    return load_onnx_unet(shipped.denoiser, "fp32", cache=cache)


def dream(model: WorldModel, net, obs: torch.Tensor, act: torch.Tensor, steps: int) -> torch.Tensor:
    """One dreamed frame per context through the denoiser with `net` as its U-Net (None: torch)."""
    model.denoiser.use_inference_net(net)
    try:
        g = torch.Generator().manual_seed(steps)
        return sample_next_frame(model.denoiser, obs, act, SamplerConfig(num_steps=steps), g)
    finally:
        model.denoiser.use_inference_net(None)


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-frame PSNR in dB of frames in [-1, 1] (peak 2 = 255 levels)."""
    mse = ((a - b) / 2).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1 / mse.clamp_min(1e-12))


def test_contexts_are_real_play() -> None:
    frames, actions = play_contexts("Breakout", 5, seed=3)
    assert frames.shape == (5, 4, 64, 64, 3) and frames.dtype == np.uint8
    assert actions.shape == (5, 4) and actions.min() >= 0 and actions.max() < 4
    assert (frames[:, 1:] != frames[:, :-1]).any()  # the frames move


def test_fp32_unet_matches_torch_on_real_inputs(shipped, fp32, held_out) -> None:
    frames, _, act = held_out
    for call in unet_inputs(shipped.denoiser, frames, act):  # the sampler's 3 calls
        args = [torch.from_numpy(call[n]) for n in ("x", "c_noise", "obs_ctx", "act_ctx", "ctx_noise_level")]
        with torch.no_grad():
            ref = shipped.denoiser.net(*args)
        torch.testing.assert_close(fp32(*args), ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("steps", [1, 3])
def test_fp32_dreams_match_torch(shipped, fp32, held_out, steps) -> None:
    _, obs, act = held_out
    ref, out = dream(shipped, None, obs, act, steps), dream(shipped, fp32, obs, act, steps)
    assert (out - ref).abs().max() < 1e-3


@pytest.mark.slow
def test_int8_dreams_within_psnr_of_torch(shipped, cache, calibration, held_out) -> None:
    int8 = load_onnx_unet(shipped.denoiser, "int8", calibration, cache=cache)
    _, obs, act = held_out
    worst = {}
    for steps in (1, 2, 3):
        p = psnr(dream(shipped, int8, obs, act, steps), dream(shipped, None, obs, act, steps))
        worst[steps] = p.min().item()
        logging.getLogger(__name__).info(
            "int8 vs torch, %d steps: PSNR min %.1f median %.1f", steps, p.min(), p.median()
        )
    assert min(worst.values()) >= INT8_MIN_PSNR, worst
    # the output layer stays fp32: no DequantizeLinear feeds the convolution that makes the graph's output
    import onnx

    graph = onnx.load(str(int8.path)).graph
    made_by = {out: node for node in graph.node for out in node.output}
    last = made_by[graph.output[0].name]
    assert last.op_type == "Conv" and all(
        made_by[i].op_type != "DequantizeLinear" for i in last.input if i in made_by
    ), [made_by[i].op_type for i in last.input if i in made_by]
    first = next(n for n in graph.node if n.op_type == "Conv")  # while the others are int8
    assert any(made_by[i].op_type == "DequantizeLinear" for i in first.input if i in made_by)


def test_bad_inputs_give_clear_errors(shipped, fp32) -> None:
    x, c_noise = torch.randn(2, 3, 64, 64), torch.zeros(2)
    ctx, act, level = torch.randn(2, 12, 64, 64), torch.zeros(2, 4, dtype=torch.long), torch.zeros(2, dtype=torch.long)
    with pytest.raises(ValueError, match=r"obs_ctx must have shape \(2, 12, 64, 64\)"):
        fp32(x, c_noise, ctx[:, :9], act, level)
    with pytest.raises(ValueError, match=r"act_ctx must have shape \(2, 4\)"):
        fp32(x, c_noise, ctx, act[:1], level)
    with pytest.raises(ValueError, match=r"x must have shape"):
        fp32(x[..., :32, :32], c_noise[:2], ctx, act, level)
    with pytest.raises(ValueError, match="unknown backend"):
        use_backend(shipped, "onnx-fp16")
    with pytest.raises(ValueError, match="calibration"):
        load_onnx_unet(shipped.denoiser, "int8", None)


def test_cache_is_keyed_by_the_weights_and_reused(shipped, fp32, cache) -> None:
    key = weights_key(shipped.denoiser)
    assert fp32.path == cache / f"unet-{key}-fp32.onnx"
    stamp = fp32.path.stat().st_mtime_ns
    assert load_onnx_unet(shipped.denoiser, "fp32", cache=cache).path.stat().st_mtime_ns == stamp  # no re-export
    assert not [p for p in cache.iterdir() if p.name.endswith(".tmp.onnx")]  # atomic: no leftovers
    other = WorldModel(shipped.cfg)  # same config, other weights
    assert weights_key(other.denoiser) != key


def test_world_model_dreams_through_the_backend(shipped, cache, held_out, monkeypatch) -> None:
    monkeypatch.setenv("DREAM_ONNX_CACHE", str(cache))
    model = WorldModel.from_snapshot(SHIPPED, torch.device("cpu"), "fp32", backend="onnx-fp32")
    assert model.backend == "onnx-fp32" and not model.bf16
    frames, _, act = held_out
    a, b = Dreams(model, seed=0), Dreams(shipped, seed=0)
    for d in (a, b):
        d.reset(frames[:2], act[:2, :3])
    for action in (1, 2, 3):
        fa, fb = a.step(torch.full((2,), action)), b.step(torch.full((2,), action))
        assert (fa[0].int() - fb[0].int()).abs().max() <= 1  # uint8 frames, rounding at most
    model.train()  # training drops the graph, as it drops the frozen one
    assert model.denoiser._frozen is None


def test_auto_takes_onnx_only_where_it_is_faster_at_every_batch_size() -> None:
    """The rule `auto` applies to its timings (seconds per frame): the shipped Breakout model's
    3-step dream_step measured on a 2-core AMX Xeon (docs/serving.md; ONNX a little faster at batch 1,
    half as fast at 8) keeps torch."""
    amx = {1: {"torch": 0.0429, "onnx-fp32": 0.0388}, 8: {"torch": 0.0158, "onnx-fp32": 0.0274}}
    assert not prefer_onnx(amx)
    assert prefer_onnx({1: {"torch": 0.017, "onnx-fp32": 0.010}, 8: {"torch": 0.009, "onnx-fp32": 0.006}})
    assert not prefer_onnx({1: {"torch": 0.010, "onnx-fp32": 0.0095}, 8: {"torch": 0.010, "onnx-fp32": 0.0095}})


def test_auto_never_picks_int8(shipped, cache, monkeypatch) -> None:
    monkeypatch.setenv("DREAM_ONNX_CACHE", str(cache))
    model = WorldModel.from_snapshot(SHIPPED, torch.device("cpu"), "fp32", backend="auto")
    assert model.backend in ("torch", "onnx-fp32")
    assert set(BACKENDS) == {"torch", "torch-fused", "onnx-fp32", "onnx-int8", "auto"}


def test_auto_runs_the_backend_a_snapshot_names_where_it_can() -> None:
    """A shipped snapshot names the backend its ship gate measured (`meta["backend"]`, written by
    training/ship.py): `auto` runs it where it can run (torch always; torch-fused: bf16 on the CPU),
    without timing, and goes by its own timing rule elsewhere; a name that is not a shippable backend
    is ignored."""
    model = WorldModel.from_snapshot(SHIPPED, torch.device("cpu"), "bf16")
    assert model.backend == "torch"  # named, not forced: only `auto` reads the name
    model.meta["backend"] = "torch-fused"
    assert gated_backend(model) == "torch-fused"
    assert use_backend(model, "auto") == "torch-fused" and model.denoiser._frozen is not None
    fp32 = WorldModel.from_snapshot(SHIPPED, torch.device("cpu"), "fp32", freeze=False)
    fp32.meta["backend"] = "torch-fused"
    assert gated_backend(fp32) is None  # the copy is a bf16 one: auto's timing decides
    fp32.meta["backend"] = "torch"
    assert gated_backend(fp32) == "torch"  # torch runs everywhere
    fp32.meta["backend"] = "onnx-int8"  # needs calibration frames: never a model's own
    assert gated_backend(fp32) is None
    del fp32.meta["backend"]  # a run's snapshot, or one shipped before the name existed
    assert gated_backend(fp32) is None
