"""Load test: N concurrent players on loopback, each a websocket client of the play server.

    # against a running server
    python benchmarks/load_test.py --url ws://127.0.0.1:8000/ws --players 4 --duration 30
    # or start one (python -m server) for the test and stop it afterwards
    python benchmarks/load_test.py --serve --checkpoint-dir checkpoints --players 8 --duration 30
    # a sweep in one run (one server, one count after the other): 1, 4, 8 and 16 players
    python benchmarks/load_test.py --serve --checkpoint-dir checkpoints --players 1,4,8,16 --json load.json

Each player starts a session (mode, steps, sampler, fps), sends an input with a new sequence
number every --input-interval seconds and measures input-to-display latency from the echoed
sequence number of the frames. Reports per-session fps, p50/p95 latency, drops and errors, the
worker's batch sizes and the server's memory (RSS, from /api/metrics). Bounded in players and time.
The report starts with the machine (CPU, its SIMD flags, the load average when measured: a figure
taken beside a busy process says so).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import websockets

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from model.device import machine_info  # noqa: E402
from model.world_model.onnx_backend import BACKENDS  # noqa: E402
from server.protocol import decode_frame  # noqa: E402

MAX_PLAYERS = 64
MAX_DURATION = 600.0


@dataclass
class Player:
    index: int
    frames: int = 0
    first_frame: float | None = None
    last_frame: float | None = None
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    drops: int = 0
    server_ms: list[float] = field(default_factory=list)
    close_code: int | None = None
    steps: int | None = None  # what the server dreams with (ready.settings.steps)

    def fps(self) -> float:
        if self.frames < 2 or self.first_frame is None or self.last_frame == self.first_frame:
            return 0.0
        return (self.frames - 1) / (self.last_frame - self.first_frame)


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


async def play(i: int, a: argparse.Namespace, t_end: float, t_measure: float) -> Player:
    pl = Player(i)
    rng = random.Random(i)
    pending: dict[int, float] = {}
    seq = 0
    try:
        async with websockets.connect(a.url, max_size=2**22, open_timeout=60) as ws:
            hello = json.loads(await ws.recv())
            if hello.get("type") != "hello":
                pl.errors.append(f"expected hello, got {hello}")
                return pl
            game = a.game or hello["games"][0]
            start = {"type": "start", "game": game, "mode": a.mode, "sampler": a.sampler}
            if a.steps is not None:  # else the model's own (3; 1 for a distilled model)
                start["steps"] = a.steps
            await ws.send(json.dumps({**start, "fps": a.fps, "control": "human"}))
            next_input = time.monotonic()
            while True:
                now = time.monotonic()
                if now >= t_end:
                    break
                if now >= next_input:
                    seq += 1
                    await ws.send(json.dumps({"type": "input", "seq": seq, "action": rng.randrange(a.actions)}))
                    pending[seq] = time.monotonic()
                    next_input = now + a.input_interval
                try:
                    msg = await asyncio.wait_for(ws.recv(), timeout=max(0.01, min(next_input, t_end) - now))
                except TimeoutError:
                    continue
                if isinstance(msg, str):
                    m = json.loads(msg)
                    if m["type"] == "error":
                        pl.errors.append(f"{m['code']}: {m['message']}")
                    elif m["type"] == "ready":
                        pl.steps = m["settings"]["steps"]
                    continue
                header, _ = decode_frame(msg)
                t = time.monotonic()
                for s in [s for s in pending if s <= header["seq"]]:
                    sent = pending.pop(s)
                    if sent >= t_measure:
                        pl.latencies.append((t - sent) * 1000)
                if t >= t_measure:
                    pl.frames += 1
                    pl.first_frame = pl.first_frame or t
                    pl.last_frame = t
                    pl.drops = header["drops"]
                    pl.server_ms.append(header["ms"])
    except websockets.ConnectionClosed as e:
        pl.close_code = e.rcvd.code if e.rcvd else None
        pl.errors.append(f"closed: {e}")
    except (OSError, TimeoutError) as e:
        pl.errors.append(f"{type(e).__name__}: {e}")
    return pl


def http_json(base: str, path: str) -> dict:
    with urllib.request.urlopen(base + path, timeout=10) as r:
        return json.loads(r.read())


async def run(a: argparse.Namespace, http: str, n_players: int) -> dict:
    t0 = time.monotonic()
    t_measure, t_end = t0 + a.warmup, t0 + a.warmup + a.duration
    rss: list[int] = []

    async def sample_memory() -> None:
        while time.monotonic() < t_end:
            try:
                rss.append((await asyncio.to_thread(http_json, http, "/api/metrics"))["rss_bytes"])
            except OSError:
                pass
            await asyncio.sleep(1.0)

    sampler = asyncio.create_task(sample_memory())
    players = await asyncio.gather(*(play(i, a, t_end, t_measure) for i in range(n_players)))
    sampler.cancel()
    metrics = http_json(http, "/api/metrics")
    lat = [x for p in players for x in p.latencies]
    return {
        "players": n_players,
        "mode": a.mode,
        "steps": sorted({p.steps for p in players if p.steps is not None}),
        "sampler": a.sampler,
        "target_fps": a.fps,
        "duration_s": a.duration,
        "sessions": [
            {
                "player": p.index,
                "fps": round(p.fps(), 2),
                "frames": p.frames,
                "p50_ms": round(pct(p.latencies, 50), 1),
                "p95_ms": round(pct(p.latencies, 95), 1),
                "server_ms": round(statistics.fmean(p.server_ms), 1) if p.server_ms else None,
                "drops": p.drops,
                "errors": p.errors,
            }
            for p in players
        ],
        "mean_fps": round(statistics.fmean(p.fps() for p in players), 2),
        "min_fps": round(min(p.fps() for p in players), 2),
        "p50_ms": round(pct(lat, 50), 1),
        "p95_ms": round(pct(lat, 95), 1),
        "errors": sum(len(p.errors) for p in players),
        "server_rss_mb_peak": round(max(rss or [metrics["rss_bytes"]]) / 2**20, 1),
        "server_rss_mb_end": round(metrics["rss_bytes"] / 2**20, 1),
        "workers": metrics["workers"],
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(a: argparse.Namespace) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, "-m", "server", "--port", str(port), "--max-sessions", str(max(8, *a.players))]
    cmd += ["--checkpoint-dir", str(a.checkpoint_dir)] if a.checkpoint_dir else []
    cmd += [x for c in a.checkpoint or [] for x in ("--checkpoint", str(c))]
    cmd += ["--threads", str(a.threads)] if a.threads else []
    cmd += ["--backend", a.backend] if a.backend else []
    cmd += ["--inference", a.inference] if a.inference else []
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    # Start-up loads every model and, with the auto backend, exports and times ONNX graphs (minutes
    # on a busy machine with an empty cache): wait while the server lives, up to --startup-timeout.
    deadline = time.monotonic() + a.startup_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stderr.read()[-2000:]}")
        try:
            if http_json(base, "/api/health")["games"]:
                return proc, base
        except OSError:
            pass
        time.sleep(0.5)
    proc.terminate()
    raise SystemExit(f"server did not come up within --startup-timeout {a.startup_timeout:g} s")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="ws://127.0.0.1:8000/ws")
    p.add_argument("--serve", action="store_true", help="start python -m server for the test")
    p.add_argument("--checkpoint-dir", type=Path, default=None)
    p.add_argument("--checkpoint", type=Path, action="append")
    p.add_argument("--threads", type=int, default=None, help="torch threads of the started server")
    p.add_argument("--backend", default=None, choices=BACKENDS, help="the started server's")
    p.add_argument(
        "--inference", default=None, choices=["auto", "process", "thread"], help="where the started server dreams"
    )
    p.add_argument(
        "--startup-timeout", type=float, default=1200.0, help="seconds the started server may take to load its models"
    )
    p.add_argument(
        "--players", type=player_counts, default=[1], help="players, or a comma list run one after the other (1,4,8,16)"
    )
    p.add_argument("--duration", type=float, default=30.0, help="measured seconds per count (after the warm-up)")
    p.add_argument("--warmup", type=float, default=5.0)
    p.add_argument("--game", default=None, help="default: the server's first game")
    p.add_argument("--mode", default="dream", choices=["dream", "real", "side"])
    p.add_argument("--steps", type=int, help="Euler steps per frame (default: each model's own)")
    p.add_argument("--sampler", default="euler", choices=["euler", "heun"])
    p.add_argument("--fps", type=int, default=15)
    p.add_argument("--actions", type=int, default=4, help="random actions drawn from 0..N-1")
    p.add_argument("--input-interval", type=float, default=0.2, help="seconds between inputs per player")
    p.add_argument("--json", type=Path, default=None, help="also write the report here")
    a = p.parse_args(argv)
    if not 0 < a.duration + a.warmup <= MAX_DURATION:
        p.error(f"--duration + --warmup must be in (0, {MAX_DURATION:g}] s")
    info = machine_info()
    proc = None
    if a.serve:
        proc, http = start_server(a)
        a.url = http.replace("http", "ws", 1) + "/ws"
    else:
        http = a.url.replace("ws", "http", 1).rsplit("/ws", 1)[0]
    reports = []
    try:
        for n in a.players:
            reports.append(asyncio.run(run(a, http, n)))
            print_report(reports[-1])
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
    print(
        f"CPU {info['cpu']} ({info['cpu_count']} cores), flags: {info['cpu_flags']}; "
        f"load average at the start {info['load_average_1min']}; server threads {a.threads or 'default'}"
    )
    if len(reports) > 1:
        print(f"{'players':>7} {'mean fps':>8} {'min fps':>7} {'p50 ms':>7} {'p95 ms':>7} {'errors':>6}")
        for r in reports:
            print(
                f"{r['players']:>7} {r['mean_fps']:>8.2f} {r['min_fps']:>7.2f} {r['p50_ms']:>7.1f} "
                f"{r['p95_ms']:>7.1f} {r['errors']:>6}"
            )
    if a.json:
        a.json.write_text(json.dumps({"machine": info, "server_threads": a.threads, "runs": reports}, indent=1))
    return 1 if any(r["errors"] for r in reports) else 0


def player_counts(text: str) -> list[int]:
    """'8' or '1,4,8,16' -> [8] / [1, 4, 8, 16], each in 1..MAX_PLAYERS."""
    try:
        counts = [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or a comma list of numbers, got {text!r}") from None
    if not counts or not all(1 <= n <= MAX_PLAYERS for n in counts):
        raise argparse.ArgumentTypeError(f"player counts must be in 1..{MAX_PLAYERS}, got {text!r}")
    return counts


def print_report(report: dict) -> None:
    print(
        f"{report['players']} player(s), mode {report['mode']}, "
        f"{'/'.join(map(str, report['steps'])) or '?'} {report['sampler']} steps, "
        f"target {report['target_fps']} fps, {report['duration_s']:g} s"
    )
    print(f"{'player':>6} {'fps':>6} {'frames':>6} {'p50 ms':>7} {'p95 ms':>7} {'srv ms':>7} {'drops':>5} errors")
    for s in report["sessions"]:
        srv = "-" if s["server_ms"] is None else f"{s['server_ms']:.1f}"
        print(
            f"{s['player']:>6} {s['fps']:>6.2f} {s['frames']:>6} {s['p50_ms']:>7.1f} {s['p95_ms']:>7.1f} {srv:>7}"
            f" {s['drops']:>5} {len(s['errors'])}"
        )
    print(
        f"mean fps {report['mean_fps']}, min fps {report['min_fps']}, latency p50 {report['p50_ms']} ms,"
        f" p95 {report['p95_ms']} ms, errors {report['errors']}, server RSS peak {report['server_rss_mb_peak']} MB"
    )
    for game, w in report["workers"].items():
        where = f"{w.get('backend', '?')} backend, {w.get('inference', '?')}, {w.get('threads', '?')} threads"
        print(f"worker {game} ({where}): batch sizes {w['batch_sizes']}, {w['ms_per_frame']:.1f} ms/frame (recent)")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
