"""Speed of the world model on this machine: what players and training actually get.

    python benchmarks/bench.py --out benchmarks/results.json           # paper + cpu presets, all modes
    python benchmarks/bench.py --presets cpu --repeats 3                # one preset, fewer repeats
    python benchmarks/bench.py --quick                                   # seconds: checks the script works
    python benchmarks/bench.py --backends                                # torch / ONNX fp32 / ONNX int8, shipped model
    python benchmarks/bench.py --guided-rows --repeats 30                # a guided step in one network call or two
    python benchmarks/bench.py --versus-diamond --repeats 30             # shipped models against DIAMOND's reference

Measures, per preset and precision mode:
- dreamed frames/s through `Dreams.step` (denoiser sampling + reward/end model, uint8 frames out) at
  batch 1 and 8 with 1 and 3 Euler steps;
- one denoiser forward (`Denoiser.denoise`) at batch 1, in ms;
- one denoiser training step at batch 32: forward + backward + grad clip + AdamW step, in s.

Modes: `fp32` (contiguous tensors, no autocast), `bf16+cl` (bf16 autocast + channels_last, the
default on CPUs where `model.device.cpu_has_fast_bf16()`) and `fp32+cl+frozen` (channels_last and
the traced, frozen U-Net of `Denoiser.freeze`: the default on other CPUs). Each measurement runs warm-up iterations
first and reports the median of the timed repeats. Run it on an otherwise idle machine.

`--backends` compares the denoiser backends of model/world_model/onnx_backend.py side by side in one process:
torch (what `WorldModel.configure` picks here), ONNX Runtime fp32 and ONNX Runtime int8 (static QDQ,
calibrated on real emulator contexts), dreamed frames/s through `Dreams.step` from real contexts of
the shipped snapshot (`--checkpoint`), at batch 1 and 8 with 1, 2 and 3 Euler steps; the timed
repeats of all backends are interleaved in an order shuffled every round (`interleaved`), so a load
that comes and goes, and what the call before leaves in the caches, hit them alike.

`--versus-diamond` times DIAMOND's reference and every world model in `--checkpoint-dir` at its
default settings in one process, repeats interleaved, and prints each model's frames/s as a multiple
of the reference's (`run_versus_diamond`).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from games.contexts import play_contexts
from model.device import autocast, cpu_has_fast_bf16, machine_info
from model.world_model import PRESETS, Dreams, WorldModel, preset_config
from model.world_model.onnx_backend import use_backend, use_own_backend
from model.world_model.sampler import sample_next_frame

ACTIONS = ["NOOP", "FIRE", "RIGHT", "LEFT"]  # Breakout's minimal action set
MODES = ("fp32", "bf16+cl", "fp32+cl+frozen")
BACKENDS = ("torch", "onnx-fp32", "onnx-int8")


def timed(fn: Callable[[], object], warmup: int, repeats: int) -> float:
    """Median wall time of fn() in seconds, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def interleaved(fns: dict, warmup: int, repeats: int, seed: int = 0) -> dict[object, list[float]]:
    """Wall times in seconds of every fn of `fns` over `repeats` rounds, after `warmup` untimed ones.
    Each round calls every fn once, in an order shuffled afresh (seeded): a load that comes and goes
    hits them alike, and so does what the call before leaves behind. In a fixed order each fn always
    follows the same one, and a small model timed right after DIAMOND's reference at batch 8 (a large
    fp32 call) ran 10-20 % slower than the same model timed elsewhere in the round."""
    order, rng = list(fns), random.Random(seed)
    times: dict[object, list[float]] = {k: [] for k in order}
    for i in range(warmup + repeats):
        rng.shuffle(order)
        for key in order:
            t = time.perf_counter()
            fns[key]()
            if i >= warmup:
                times[key].append(time.perf_counter() - t)
    return times


def build(preset: str, mode: str, seed: int = 0) -> WorldModel:
    torch.manual_seed(seed)
    model = WorldModel(preset_config(preset, "Breakout", ACTIONS))
    with torch.no_grad():  # a trained-looking output layer instead of the zero init
        torch.nn.init.normal_(model.denoiser.net.conv_out.weight, std=0.02)
    if mode == "bf16+cl":
        return model.configure(torch.device("cpu"), "bf16")  # channels_last + bf16 autocast
    if mode == "fp32+cl+frozen":  # channels_last + traced, frozen U-Net (Denoiser.freeze)
        return model.configure(torch.device("cpu"), "fp32")
    model.bf16 = False
    return model.eval()


def bench_dreams(model: WorldModel, batch: int, steps: int, warmup: int, repeats: int) -> float:
    """Dreamed frames per second (all dreams of the batch together) through Dreams.step."""
    dreams = Dreams(model, model.sampler_config(num_steps=steps), seed=0)
    g = torch.Generator().manual_seed(0)
    dreams.reset(
        torch.randint(0, 256, (batch, 4, 64, 64, 3), dtype=torch.uint8, generator=g),
        torch.randint(0, model.num_actions, (batch, 3), generator=g),
    )
    actions = torch.randint(0, model.num_actions, (batch,), generator=g)
    return batch / timed(lambda: dreams.step(actions), warmup, repeats)


def _inputs(model: WorldModel, batch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ctx = torch.rand(batch, 4, 3, 64, 64, generator=g) * 2 - 1
    nxt = torch.rand(batch, 3, 64, 64, generator=g) * 2 - 1
    if model.bf16:
        nxt = nxt.contiguous(memory_format=torch.channels_last)
    return ctx, torch.randint(0, model.num_actions, (batch, 4), generator=g), nxt


@torch.no_grad()
def bench_forward(model: WorldModel, warmup: int, repeats: int) -> float:
    """One denoiser evaluation at batch 1, in seconds."""
    ctx, act, nxt = _inputs(model, 1)
    sigma = torch.full((1,), 1.0)
    level = torch.zeros(1, dtype=torch.long)

    def run() -> None:
        with autocast(torch.device("cpu"), model.bf16):
            model.denoiser.denoise(nxt, sigma, ctx, act, level)

    return timed(run, warmup, repeats)


def bench_train_step(model: WorldModel, batch: int, warmup: int, repeats: int) -> float:
    """One denoiser training step (forward + backward + clip + AdamW), in seconds."""
    den = model.denoiser.train()
    opt = torch.optim.AdamW(den.parameters(), lr=1e-4, weight_decay=1e-2)
    ctx, act, nxt = _inputs(model, batch)

    def run() -> None:
        with autocast(torch.device("cpu"), model.bf16):
            loss, _ = den.loss(ctx, act, nxt)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(den.parameters(), 1.0)
        opt.step()

    t = timed(run, warmup, repeats)
    den.eval()
    return t


def run(
    presets: list[str],
    modes: list[str],
    dream_batches: list[int],
    dream_steps: list[int],
    train_batch: int,
    warmup: int,
    repeats: int,
    train_repeats: int,
) -> list[dict]:
    rows = []
    for preset in presets:
        for mode in modes:
            model = build(preset, mode)
            row = {
                "preset": preset,
                "mode": mode,
                "params_denoiser": sum(p.numel() for p in model.denoiser.parameters()),
            }
            row["forward_b1_ms"] = 1000 * bench_forward(model, warmup, repeats)
            for b in dream_batches:
                for s in dream_steps:
                    row[f"dream_b{b}_n{s}_fps"] = bench_dreams(model, b, s, warmup, repeats)
            row[f"train_b{train_batch}_s"] = bench_train_step(model, train_batch, min(warmup, 1), train_repeats)
            rows.append(row)
            print(f"  done {preset} {mode}", file=sys.stderr)
    return rows


def run_backends(
    checkpoint: Path,
    batches: list[int],
    steps: list[int],
    warmup: int,
    repeats: int,
    calibration_contexts: int,
    guidance: float = 0.0,
) -> list[dict]:
    """Dreamed frames/s per backend, batch and Euler steps, from real contexts, repeats interleaved.
    With `guidance` > 0 each backend also gets a row '<backend>+guided' where every dream acts (NOOP
    replaced by action 1), the worst case of action guidance: one more evaluation per guided step."""
    game = WorldModel.from_snapshot(checkpoint, freeze=False).cfg.game
    calibration = play_contexts(game, calibration_contexts, seed=0)
    frames, actions = (torch.from_numpy(a) for a in play_contexts(game, max(batches), seed=1))
    runs = {}
    for name in BACKENDS:
        model = WorldModel.from_snapshot(checkpoint)  # torch as configure picks it here
        model.backend = use_backend(model, name, calibration if name == "onnx-int8" else None)
        variants = [(name, {}, actions[:, -1])]
        if guidance > 0:
            variants.append((f"{name}+guided", {"action_guidance": guidance}, actions[:, -1].clamp(min=1)))
        for label, sampler, act in variants:
            for b in batches:
                for n in steps:
                    dreams = Dreams(model, model.sampler_config(num_steps=n, **sampler), seed=0)
                    dreams.reset(frames[:b], actions[:b, :-1])
                    runs[label, b, n] = lambda d=dreams, a=act[:b]: d.step(a)
        print(f"  ready: {name} ({model.backend}{', bf16' if model.bf16 else ''})", file=sys.stderr)
    times = interleaved(runs, warmup, repeats)  # every backend in every round
    rows = []
    for name in dict.fromkeys(k[0] for k in runs):
        row: dict = {"preset": checkpoint.name, "mode": name}
        for b in batches:
            for n in steps:
                row[f"dream_b{b}_n{n}_fps"] = b / statistics.median(times[name, b, n])
        rows.append(row)
    return rows


def run_guided_rows(checkpoint: Path, batches: list[int], warmup: int, repeats: int) -> list[dict]:
    """Dreamed frames/s of a guided step (guidance 2 against FIRE where the game has it, so every
    dream is guided) with the guided dreams' reference rows in the same network call as the dreams
    ('one call') and in a second call ('two calls'), per batch, from real contexts, repeats
    interleaved: what `model.world_model.sampler.ONE_CALL_ROWS` is chosen from."""
    from model.world_model import sampler as S

    model = WorldModel.from_snapshot(checkpoint)
    names = model.cfg.action_meanings
    cfg = model.sampler_config(action_guidance=model.cfg.sampler.action_guidance or 2.0)
    if "FIRE" in names:
        cfg = model.sampler_config(action_guidance=cfg.action_guidance, guidance_reference="FIRE")
    frames, actions = (torch.from_numpy(a) for a in play_contexts(model.cfg.game, max(batches), seed=1))
    runs = {}
    for b in batches:
        dreams = Dreams(model, cfg, seed=0)
        dreams.reset(frames[:b], actions[:b, :-1])
        runs[b] = (dreams, actions[:b, -1])
    variants = {"one call": 10**9, "two calls": 0}

    def step(b: int, rows: int) -> None:
        S.ONE_CALL_ROWS = rows
        dreams, action = runs[b]
        dreams.step(action)

    keep = S.ONE_CALL_ROWS
    try:
        fns = {(v, b): lambda b=b, r=rows: step(b, r) for v, rows in variants.items() for b in batches}
        times = interleaved(fns, warmup, repeats)
    finally:
        S.ONE_CALL_ROWS = keep
    return [
        {
            "preset": checkpoint.name,
            "mode": v,
            **{f"dream_b{b}_fps": b / statistics.median(times[v, b]) for b in batches},
        }
        for v in variants
    ]


def run_versus_diamond(
    checkpoints: list[Path], batches: list[int], warmup: int, repeats: int, fused: bool = False
) -> list[dict]:
    """Frames/s of DIAMOND's reference and of each model at its default settings, in one process with
    the timed repeats interleaved, and each model's multiple of the reference at every batch.

    The reference is DIAMOND's Atari denoiser (the `paper` preset: its U-Net exactly, 4.41 M
    parameters; untrained weights, speed does not depend on them) in fp32 with contiguous tensors, as
    DIAMOND's code runs it, sampled with its default 3 Euler steps by `sample_next_frame` alone: no
    reward/end model, no uint8 frames. Each model runs through `Dreams.step`, with all a player's frame
    costs: its own sampler (steps, guidance), the precision `WorldModel.configure` picks on this
    machine, its own backend where its snapshot names one that runs here (`use_own_backend`, else
    torch), the reward/end model and uint8 frames out, from real contexts of its game. The comparison
    leans towards the reference. `fused`: also each bf16 model whose own backend is not `torch-fused`
    on it (`Denoiser.freeze_bf16`'s inference copy of the U-Net)."""
    ref = build("paper", "fp32")
    ref_sampler = ref.sampler_config(num_steps=3, action_guidance=0.0)
    runs: dict[tuple[str, int], Callable[[], object]] = {}
    g = torch.Generator().manual_seed(0)
    for b in batches:
        ctx = torch.rand(b, 4, 3, 64, 64, generator=g) * 2 - 1
        act = torch.randint(0, ref.num_actions, (b, 4), generator=g)
        runs["DIAMOND reference", b] = lambda c=ctx, a=act: sample_next_frame(ref.denoiser, c, a, ref_sampler)
    labels = {"DIAMOND reference": "paper preset, fp32, 3 Euler steps, denoiser and sampler only"}
    models = [(path.name, WorldModel.from_snapshot(path)) for path in checkpoints]
    for _, model in models:  # at its defaults: its own backend, where its ship gate passed one
        model.backend = use_own_backend(model)
    if fused:
        with_fused = [
            (f"{p.name}, torch-fused", WorldModel.from_snapshot(p, backend="torch-fused"))
            for p, (_, m) in zip(checkpoints, models, strict=True)
            if m.backend != "torch-fused"
        ]
        models += [(name, m) for name, m in with_fused if m.backend == "torch-fused"]  # bf16 models only
    for name, model in models:
        sampler = model.sampler_config()
        frames, actions = (
            torch.from_numpy(x)
            for x in play_contexts(model.cfg.game, max(batches), seed=1, context_frames=model.cfg.context_frames)
        )
        labels[name] = f"{sampler.num_steps} Euler step{'s' if sampler.num_steps != 1 else ''}" + (
            f", guidance {sampler.action_guidance:g}" if sampler.action_guidance else ""
        )
        labels[name] += f", {'bf16' if model.bf16 else 'fp32'}, {model.backend}"
        for b in batches:
            dreams = Dreams(model, sampler, seed=0)
            dreams.reset(frames[:b], actions[:b, :-1])
            runs[name, b] = lambda d=dreams, a=actions[:b, -1]: d.step(a)
        print(f"  ready: {name} ({labels[name]})", file=sys.stderr)
    with torch.no_grad():
        times = interleaved(runs, warmup, repeats)  # every model in every round
    fps = {k: k[1] / statistics.median(v) for k, v in times.items()}
    rows = []
    for name in labels:
        row: dict = {"preset": name, "mode": labels[name]}
        row.update({f"dream_b{b}_fps": fps[name, b] for b in batches})
        row.update({f"x_reference_b{b}": fps[name, b] / fps["DIAMOND reference", b] for b in batches})
        rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    keys = [k for k in rows[0] if k not in ("preset", "mode")]
    lines = ["| preset | mode | " + " | ".join(keys) + " |", "| --- | --- |" + " --- |" * len(keys)]
    for r in rows:
        cells = [f"{r[k]:,}" if isinstance(r[k], int) else f"{r[k]:.3g}" for k in keys]
        lines.append(f"| {r['preset']} | {r['mode']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", default="paper,cpu", help=f"comma-separated, from {', '.join(PRESETS)}")
    p.add_argument(
        "--modes",
        default="auto",
        help="fp32, bf16+cl, fp32+cl+frozen, comma-separated; auto = fp32 plus what WorldModel.configure "
        "picks (bf16+cl where the CPU has fast bf16, else fp32+cl+frozen)",
    )
    p.add_argument("--repeats", type=int, default=5, help="timed repeats per dream / forward measurement")
    p.add_argument("--train-repeats", type=int, default=3, help="timed repeats of the training step")
    p.add_argument("--warmup", type=int, default=2, help="untimed warm-up iterations before each measurement")
    p.add_argument("--train-batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="check the script works in seconds: tiny preset, batch-4 training, 1 repeat",
    )
    p.add_argument(
        "--backends",
        action="store_true",
        help="compare torch / ONNX fp32 / ONNX int8 on --checkpoint at batch 1 and 8, 1-3 Euler steps",
    )
    p.add_argument("--checkpoint", type=Path, default=Path("checkpoints/Breakout"), help="snapshot for --backends")
    p.add_argument(
        "--action-guidance",
        type=float,
        default=0.0,
        metavar="G",
        help="with --backends: also time every backend with action guidance G, every dream acting",
    )
    p.add_argument(
        "--guided-rows",
        action="store_true",
        help="time a guided step of --checkpoint with the reference rows in one network call and in two, "
        "at batch 1, 2, 4, 8, 16",
    )
    p.add_argument("--calibration", type=int, default=32, help="real contexts that calibrate int8 (--backends)")
    p.add_argument(
        "--versus-diamond",
        action="store_true",
        help="time DIAMOND's reference (paper U-Net, fp32, 3 Euler steps) and every world model in "
        "--checkpoint-dir at its default settings, at batch 1 and 8, interleaved; print each as a multiple",
    )
    p.add_argument("--checkpoint-dir", type=Path, default=Path("checkpoints"), help="models for --versus-diamond")
    p.add_argument(
        "--with-fused",
        action="store_true",
        help="with --versus-diamond: also each bf16 model with the torch-fused backend (the U-Net's inference copy)",
    )
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    a = p.parse_args(argv)
    presets = a.presets.split(",")
    if a.quick:
        presets, a.repeats, a.train_repeats, a.warmup, a.train_batch = ["tiny"], 1, 1, 1, 4
    auto = ["fp32", "bf16+cl" if cpu_has_fast_bf16() else "fp32+cl+frozen"]
    modes = auto if a.modes == "auto" else a.modes.split(",")
    bad = [x for x in presets if x not in PRESETS] + [m for m in modes if m not in MODES]
    if bad or min(a.repeats, a.train_repeats, a.train_batch) < 1 or min(a.warmup, a.action_guidance) < 0:
        p.error(f"bad --presets/--modes {bad} or non-positive counts")
    if a.threads:
        torch.set_num_threads(a.threads)

    info = machine_info()
    print(
        f"{info['cpu']} | torch {info['torch']} | {info['threads']} threads | {info['cpu_capability']} | "
        f"fast bf16: {info['fast_bf16']} | flags: {info['cpu_flags']}",
        file=sys.stderr,
    )
    if a.versus_diamond:
        from server.engine import discover_snapshots, snapshot_kind  # what the server would serve

        models = [s for s in discover_snapshots(a.checkpoint_dir) if snapshot_kind(s) == "world_model"]
        if not models:
            p.error(f"no world-model snapshots in {a.checkpoint_dir}")
        rows = run_versus_diamond(models, [1, 2] if a.quick else [1, 8], a.warmup, a.repeats, a.with_fused)
    elif a.guided_rows:
        rows = run_guided_rows(a.checkpoint, [1, 2] if a.quick else [1, 2, 4, 8, 16], a.warmup, a.repeats)
    elif a.backends:
        calibration = 8 if a.quick else a.calibration
        rows = run_backends(a.checkpoint, [1, 8], [1, 2, 3], a.warmup, a.repeats, calibration, a.action_guidance)
    else:
        rows = run(presets, modes, [1, 8], [1, 3], a.train_batch, a.warmup, a.repeats, a.train_repeats)
    print(f"CPU flags: {info['cpu_flags']}; {info['threads']} threads")
    print(table(rows))
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(a).items() if k != "out"}
        a.out.write_text(json.dumps({"machine": info, "settings": settings, "results": rows}, indent=1))
        print(f"wrote {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
