"""ONNX Runtime backends for the denoiser's U-Net: cheaper calls per dreamed frame on a CPU.

Only the network F runs in ONNX Runtime; the EDM preconditioning (`Denoiser.conditioners`), the
sampler and the reward/end model stay in torch, so the maths has one definition. The backend plugs
into the denoiser as its inference network (`Denoiser.use_inference_net`, the slot of the frozen
TorchScript graph), so `WorldModel.dream_step`, `Dreams` and the server's worker use it unchanged.

Backends (`use_backend`):
- `torch`: what `WorldModel.configure` chose (bf16 autocast, or the frozen fp32 graph);
- `onnx-fp32`: the U-Net exported with torch's ONNX exporter (`dynamo=True`, which needs
  `onnxscript`), run by ONNX Runtime in fp32; matches torch to float tolerance;
- `onnx-int8`: the same graph after static int8 quantisation (QDQ, per-channel weights; the output
  layer stays fp32), calibrated on the U-Net's own inputs while the torch sampler dreams from real
  context frames; opt-in only;
- `auto`: the model's own backend where its snapshot names one and it runs here (`gated_backend`:
  `training/ship.py` writes the path its gates measured the model on); for a snapshot that names
  none (shipped before 2026-12-04, or a run's), it times torch and onnx-fp32 at batch 1 and 8 on the
  machine at hand and takes onnx-fp32 only where it is 10 % faster at both (a server with one player
  and one with eight both gain). int8 is never an automatic choice: it changes the dreamed pixels
  (tests/model/test_onnx_backend.py measures by how much).

Exported files are built at run time from the weights into a cache folder (`DREAM_ONNX_CACHE`, else
`$XDG_CACHE_HOME/dream-arcade/onnx`, else `~/.cache/dream-arcade/onnx`), named by a hash of the
weights, the config and the exporter's versions (int8 also by its calibration), written atomically.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.device import autocast
from model.world_model.denoiser import Denoiser
from model.world_model.sampler import SamplerConfig, sample_next_frame

log = logging.getLogger(__name__)

BACKENDS = ("torch", "torch-fused", "onnx-fp32", "onnx-int8", "auto")
"""torch: as `WorldModel.configure` made it (bf16 autocast of the U-Net, or the frozen fp32 graph);
torch-fused: in bf16, the U-Net's inference copy (`Denoiser.freeze_bf16`: bf16 weights, the adaptive
norms' linears fused), faster; a model's default only where it passed the quality gate on it
(`gated_backend`; docs/benchmarks.md)."""
SHIPPABLE_BACKENDS = ("torch", "torch-fused", "onnx-fp32")
"""What a snapshot may name as its own backend (`training/ship.py` records the path its gate measured,
`--backend`, default torch): the paths that need nothing but the weights (int8 also needs calibration
frames)."""
BACKEND_REVISIONS = {"torch-fused": 2}
"""A backend whose arithmetic (where bf16 rounds) changed after figures were measured on it, with its
revision (1 where absent): recorded in every suite and fidelity result (`model.device.arithmetic_info`),
so a card's figures from an earlier revision are not taken for the path's now (training/ship.py then
measures the shipped model again). torch-fused 2: batch 1 through a frozen trace (`unet.BatchOneTrace`).
Bump it with any change that moves a rounding; a change that keeps every number needs none."""
INT8_VERSION = "v2"
"""Part of a cached int8 graph's name: v2 keeps the output layer in fp32 (`output_convs`)."""
INT8_CALIBRATION_CONTEXTS = 32
"""Real contexts whose U-Net inputs set the int8 ranges (the server and the measurement scripts)."""
AUTO_CANDIDATES = ("torch", "onnx-fp32")
"""What `auto` may pick. Not int8: it is opt-in by name."""
AUTO_WARMUP, AUTO_REPEATS = 3, 7
"""`auto`'s timing: untimed calls per backend and batch size, then timed calls (the median counts)."""
AUTO_MARGIN = 0.9
"""`auto` takes onnx-fp32 where it needs at most this share of torch's time at batch 1 and at 8: torch
is the trained model's own path, and a server started beside a busy process times noisily."""
EXPORT_VERSION = 1
"""Bump when the export or quantisation recipe changes: old cache entries are then not reused."""
INPUT_NAMES = ("x", "c_noise", "obs_ctx", "act_ctx", "ctx_noise_level")


class BackendError(RuntimeError):
    """An ONNX backend was asked for where it cannot run (no onnxruntime, a CUDA model, ...)."""


def onnx_available() -> bool:
    """True when onnx, onnxruntime and onnxscript import (pip install -e '.[onnx]')."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        return False
    return True


def _require_onnx() -> None:
    if not onnx_available():
        raise BackendError("the ONNX backends need onnx, onnxruntime and onnxscript: pip install -e '.[onnx]'")


def cache_dir() -> Path:
    """Where exported graphs are kept (never committed, never downloaded)."""
    if os.environ.get("DREAM_ONNX_CACHE"):
        return Path(os.environ["DREAM_ONNX_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "dream-arcade" / "onnx"


def weights_key(denoiser: Denoiser) -> str:
    """sha256 of the U-Net's weights and config and of the tools that turn them into a graph."""
    import onnx
    import onnxruntime

    h = hashlib.sha256()
    versions = [EXPORT_VERSION, torch.__version__, onnx.__version__, onnxruntime.__version__]
    h.update(json.dumps([asdict(denoiser.cfg.unet), versions], sort_keys=True).encode())
    for name, t in sorted(denoiser.net.state_dict().items()):
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.detach().cpu().flatten().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:32]


def _atomic_build(path: Path, build: Callable[[Path], None]) -> Path:
    """Build `path` through a temporary file beside it, renamed over it when complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp.onnx")
    os.close(fd)
    try:
        build(Path(tmp))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def example_inputs(denoiser: Denoiser, b: int) -> tuple[torch.Tensor, ...]:
    """U-Net inputs for a batch of b (random frames and context, actions, clean-context level)."""
    u = denoiser.cfg.unet
    g = torch.Generator().manual_seed(b)
    return (
        torch.randn(b, u.image_channels, 64, 64, generator=g),
        torch.randn(b, generator=g),
        torch.randn(b, u.context_frames * u.image_channels, 64, 64, generator=g),
        torch.randint(0, u.num_actions, (b, u.context_frames), generator=g),
        torch.zeros(b, dtype=torch.long),
    )


def export_fp32(denoiser: Denoiser, path: Path) -> None:
    """Export the U-Net F (not the preconditioning) with a free batch size, fp32, to `path`."""
    net = denoiser.net.cpu().eval()
    batch = torch.export.Dim("batch", min=1, max=1024)
    dynamic = {name: {0: batch} for name in INPUT_NAMES}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        torch.onnx.export(
            net,
            example_inputs(denoiser, 2),
            str(path),
            input_names=list(INPUT_NAMES),
            output_names=["f"],
            dynamic_shapes=dynamic,
            dynamo=True,
            external_data=False,
            verbose=False,
        )


def unet_inputs(
    denoiser: Denoiser, frames: torch.Tensor, actions: torch.Tensor, steps: int = 3, seed: int = 0
) -> list[dict[str, np.ndarray]]:
    """The U-Net's inputs at every network call of the torch sampler dreaming one frame from each
    real context (frames uint8 (N, L, H, W, C), actions (N, L) with the next action last): what
    int8 calibration must see (c_in x at each sigma of the schedule, real contexts, real actions).
    One dict per call, batch N."""
    captured: list[dict[str, np.ndarray]] = []

    def capture(*args: torch.Tensor) -> torch.Tensor:
        captured.append({n: a.detach().cpu().contiguous().numpy() for n, a in zip(INPUT_NAMES, args)})
        return denoiser.net(*args)

    previous = denoiser._frozen
    denoiser.use_inference_net(capture)
    try:
        obs = torch.as_tensor(frames).movedim(-1, -3).float() / 127.5 - 1  # uint8 -> [-1, 1], as the dream
        g = torch.Generator().manual_seed(seed)
        sample_next_frame(denoiser, obs, torch.as_tensor(actions).long(), SamplerConfig(num_steps=steps), g)
    finally:
        denoiser.use_inference_net(previous)
    return captured


def output_convs(path: Path) -> list[str]:
    """The graph's last convolution (the U-Net's output layer), which int8 leaves in fp32: its output,
    times c_out (about 0.5 at sigma 5), is the frame, and 8-bit inputs there move every pixel of a
    still background by about a grey level each frame."""
    import onnx

    convs = [n.name for n in onnx.load(str(path), load_external_data=False).graph.node if n.op_type == "Conv"]
    return convs[-1:]


def quantize_int8(fp32_path: Path, path: Path, calibration: list[dict[str, np.ndarray]]) -> None:
    """Static int8 quantisation in QDQ format of the convolutions and matrix products but the output
    layer (`output_convs`): per-channel int8 weights, uint8 activations with MinMax ranges from the
    U-Net's real inputs (`unet_inputs`)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self, batch: int = 8) -> None:
            # feeds of `batch` samples of one sampler call (the exported graph's batch is free)
            self.feeds: Iterator[dict[str, np.ndarray]] = (
                {k: v[i : i + batch] for k, v in call.items()}
                for call in calibration
                for i in range(0, len(call["x"]), batch)
            )

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.feeds, None)

    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(path),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,  # u8 activations, s8 weights: ORT's fast x86 kernels
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["Conv", "Gemm", "MatMul"],
            nodes_to_exclude=output_convs(prepared),
            # the calibrator keeps every calibrated tensor of every feed until the end: about 15 MB
            # per sample for the shipped model, so 32 contexts x 3 calls take 1.5 GB for a minute
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
        )


class OnnxUNet:
    """An ONNX Runtime session with `UNet.forward`'s signature (torch in, torch out)."""

    def __init__(self, path: Path, denoiser: Denoiser, threads: int | None = None, name: str = "onnx") -> None:
        import onnxruntime as ort

        u = denoiser.cfg.unet
        self.name, self.path = name, path
        self.frame_shape = (u.image_channels, 64, 64)
        self.ctx_shape = (u.context_frames * u.image_channels, 64, 64)
        self.context_frames = u.context_frames
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or torch.get_num_threads()
        opts.inter_op_num_threads = 1
        # No spinning between calls: the reward/end model and the frames around the U-Net run in
        # torch, whose own threads would wait for a CPU that ONNX Runtime's spinning threads hold.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]  # an unused input may be dropped

    def __call__(
        self,
        x: torch.Tensor,
        c_noise: torch.Tensor,
        obs_ctx: torch.Tensor,
        act_ctx: torch.Tensor,
        ctx_noise_level: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x: (B, C, H, W); c_noise: (B,); obs_ctx: (B, L*C, H, W); act_ctx: (B, L) -> (B, C, H, W)."""
        b = x.shape[0]
        if ctx_noise_level is None:
            ctx_noise_level = torch.zeros(b, dtype=torch.long)
        expected = {
            "x": (b, *self.frame_shape),
            "c_noise": (b,),
            "obs_ctx": (b, *self.ctx_shape),
            "act_ctx": (b, self.context_frames),
            "ctx_noise_level": (b,),
        }
        given = dict(zip(INPUT_NAMES, (x, c_noise, obs_ctx, act_ctx, ctx_noise_level)))
        for name, shape in expected.items():
            if tuple(given[name].shape) != shape:
                raise ValueError(
                    f"{self.name} U-Net: {name} must have shape {shape} for a batch of {b}, "
                    f"got {tuple(given[name].shape)}"
                )
        if x.device.type != "cpu":
            raise BackendError(f"{self.name} runs on the CPU, got tensors on {x.device}")
        dtypes = {"act_ctx": np.int64, "ctx_noise_level": np.int64}
        feed = {
            n: np.ascontiguousarray(given[n].detach().numpy(), dtype=dtypes.get(n, np.float32)) for n in self.inputs
        }
        return torch.from_numpy(self.session.run(None, feed)[0])


def load_onnx_unet(
    denoiser: Denoiser,
    kind: str = "fp32",
    calibration: tuple[torch.Tensor, torch.Tensor] | None = None,
    cache: Path | None = None,
    threads: int | None = None,
) -> OnnxUNet:
    """The U-Net as an ONNX Runtime session, exported (and for int8 quantised) on first use.

    calibration: real contexts for int8, frames uint8 (N, L, H, W, C) and actions (N, L), e.g. from
    `games.contexts.play_contexts`; the cache entry is keyed by them too.
    """
    _require_onnx()
    if kind not in ("fp32", "int8"):
        raise ValueError(f"kind must be 'fp32' or 'int8', got {kind!r}")
    if kind == "int8" and calibration is None:
        raise ValueError("onnx-int8 needs calibration contexts (real frames and actions)")
    cache = Path(cache) if cache is not None else cache_dir()
    key = weights_key(denoiser)
    fp32 = cache / f"unet-{key}-fp32.onnx"
    if not fp32.exists():
        t = time.perf_counter()
        _atomic_build(fp32, lambda tmp: export_fp32(denoiser, tmp))
        log.info("exported the U-Net to %s in %.1f s", fp32, time.perf_counter() - t)
    if kind == "fp32":
        return OnnxUNet(fp32, denoiser, threads, "onnx-fp32")
    frames, actions = (torch.as_tensor(np.asarray(a)) for a in calibration)
    h = hashlib.sha256(frames.numpy().tobytes() + actions.long().numpy().tobytes()).hexdigest()[:16]
    int8 = cache / f"unet-{key}-int8{INT8_VERSION}-{h}.onnx"
    if not int8.exists():
        t = time.perf_counter()
        inputs = unet_inputs(denoiser, frames, actions)
        _atomic_build(int8, lambda tmp: quantize_int8(fp32, tmp, inputs))
        log.info("quantised the U-Net to %s in %.1f s", int8, time.perf_counter() - t)
    return OnnxUNet(int8, denoiser, threads, "onnx-int8")


class TorchUNet:
    """The torch path as chosen by `WorldModel.configure` (bf16 autocast, else the frozen graph or
    the eager U-Net), as a callable for `Denoiser.use_inference_net`."""

    def __init__(self, denoiser: Denoiser, bf16: bool) -> None:
        self.net = denoiser._frozen if denoiser._frozen is not None else denoiser.net
        self.bf16 = bf16
        self.name = "torch"

    def __call__(self, *args: torch.Tensor) -> torch.Tensor:
        with autocast(torch.device("cpu"), self.bf16):
            return self.net(*args).float()


def prefer_onnx(per_frame_at: dict[int, dict[str, float]]) -> bool:
    """`auto`'s rule: per batch size, the seconds per U-Net call and frame of 'torch' and 'onnx-fp32';
    onnx-fp32 only where it takes at most AUTO_MARGIN of torch's time at every batch size timed."""
    return all(t["onnx-fp32"] < AUTO_MARGIN * t["torch"] for t in per_frame_at.values())


def gated_backend(model: Any) -> str | None:
    """The backend a model's snapshot names as its own (`meta["backend"]`, written by `training/ship.py`:
    the path its gates measured the model on), if it can run here: torch always, torch-fused needs a
    bf16 model on the CPU, onnx-fp32 the CPU and onnxruntime. None otherwise (`auto`'s timing rule).
    Serving the named path keeps what players get to what the card measured, and away from a timing
    taken while the machine is busy (a server loading three models timed onnx-fp32 faster for Boxing
    in 2 of 3 starts; quiet, it is 30 % slower at batch 8)."""
    own = getattr(model, "meta", {}).get("backend")
    if own == "torch":
        return own
    if own not in SHIPPABLE_BACKENDS or next(model.denoiser.parameters()).device.type != "cpu":
        return None
    if own == "torch-fused" and not model.bf16:
        return None
    if own == "onnx-fp32" and not onnx_available():
        return None
    return own


def use_own_backend(model: Any) -> str:
    """Make a configured model dream on its own backend (`gated_backend`) where it has one that runs
    here, else on torch; returns what runs. No timing: what the measuring commands compare."""
    own = gated_backend(model)
    return use_backend(model, own) if own is not None else "torch"


def use_backend(
    model: Any,
    backend: str = "auto",
    calibration: tuple[torch.Tensor, torch.Tensor] | None = None,
    cache: Path | None = None,
    threads: int | None = None,
) -> str:
    """Make a configured `WorldModel` (after `configure`) dream with `backend`; returns what runs.

    On CUDA, or for `auto` without onnxruntime installed, the model stays with torch. `torch-fused`
    gives a bf16 model on the CPU the U-Net's inference copy; an fp32 model stays with torch (its
    frozen graph), with a warning. With an ONNX backend the denoiser runs its graph
    (`Denoiser.use_inference_net`) and the model leaves bf16 autocast off (the reward/end model then
    runs in fp32; a bf16 torch path keeps its autocast inside `TorchUNet`). `auto` times torch and
    onnx-fp32 at batch 1 and 8 and keeps the faster (one backend for all batch sizes); never int8
    or torch-fused by timing: a model's own backend (`gated_backend`) comes first.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    den = model.denoiser
    on_cuda = next(den.parameters()).device.type != "cpu"
    if backend == "auto":
        own = gated_backend(model)
        try:
            if own is not None and use_backend(model, own, calibration, cache, threads) == own:
                return own
        except Exception:  # auto never makes a model unservable
            log.warning("backend auto: the model's own backend %s failed, timing the others", own, exc_info=True)
    if backend == "torch" or (backend == "auto" and (on_cuda or not onnx_available())):
        return "torch"
    if backend == "torch-fused":
        if on_cuda:
            raise BackendError("torch-fused runs on the CPU; on CUDA use the torch backend")
        if not model.bf16:
            log.warning("backend torch-fused: this model runs in fp32 here (no bf16), staying with torch")
            return "torch"
        if not den.freeze_bf16():
            log.warning("backend torch-fused: the inference copy disagreed with the U-Net, staying with torch")
            return "torch"
        return backend
    if den.cfg.unet.reward_input:  # the exported graph has no reward input
        if backend == "auto":
            return "torch"
        raise BackendError(f"{backend} has no reward input (UNetConfig.reward_input): use torch or torch-fused")
    if on_cuda:
        raise BackendError(f"{backend} runs on the CPU; on CUDA use the torch backend")
    kind = backend.removeprefix("onnx-")
    try:
        onnx_net = load_onnx_unet(den, "fp32" if backend == "auto" else kind, calibration, cache, threads)
    except Exception:
        if backend != "auto":
            raise
        log.warning("backend auto: the ONNX export failed, staying with torch", exc_info=True)
        return "torch"  # auto never makes a model unservable
    if backend != "auto":
        den.use_inference_net(onnx_net)
        model.bf16 = False
        return backend
    # One backend for every batch size, so a seeded dream replays the same whatever batch it lands
    # in: ONNX only where it is faster at batch 1 and at batch 8 (measured on a 2-core AMX Xeon, it
    # was a little faster at batch 1 and half as fast at batch 8, where eight players are). The two
    # backends' calls are interleaved (a load that comes and goes hits both) after warm-up calls (the
    # first calls at a new batch size pick and cache kernels).
    torch_net = TorchUNet(den, model.bf16)
    nets = (torch_net, onnx_net)
    per_frame_at: dict[int, dict[str, float]] = {}
    for b in (1, 8):
        times = {net.name: [] for net in nets}
        args = example_inputs(den, b)
        with torch.no_grad():
            for i in range(AUTO_WARMUP + AUTO_REPEATS):
                for net in nets:
                    t = time.perf_counter()
                    net(*args)
                    if i >= AUTO_WARMUP:
                        times[net.name].append(time.perf_counter() - t)
        per_frame = per_frame_at[b] = {name: statistics.median(ts) / b for name, ts in times.items()}
        ms = [1000 * per_frame[n] for n in ("torch", "onnx-fp32")]
        log.info("backend auto, batch %d: torch %.1f, onnx-fp32 %.1f ms per U-Net call and frame", b, *ms)
    if not prefer_onnx(per_frame_at):
        return "torch"
    den.use_inference_net(onnx_net)
    model.bf16 = False
    return "onnx-fp32"
