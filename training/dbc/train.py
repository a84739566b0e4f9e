"""Train DBC (diffusion model-augmented behavioural cloning, arXiv 2302.13335) or plain BC.

Two stages (docs/design.md §5): first fit the joint diffusion model phi on expert (s, a) pairs, then
train policies with L = L_BC + lambda * L_DM (plain BC is the same code with lambda = 0).

    python -m training.dbc.train --task maze --algo diffusion --out policies/maze
    python -m training.dbc.train --task maze --algo bc,dbc --seeds 0,1,2 --lam 30 \\
        --diffusion policies/maze/diffusion --out policies/maze

    python -m training.dbc.train --task fetch --algo diffusion --out policies/fetch
    python -m training.dbc.train --task fetch --algo bc,dbc,diffusion_policy --seeds 0,1,2,3,4 \\
        --out policies/fetch

    python -m training.dbc.train --task breakout --algo diffusion --out policies/breakout
    python -m training.dbc.train --task breakout --algo bc,dbc --seeds 0,1 \\
        --diffusion policies/breakout/diffusion --out policies/breakout

Every (algo, seed) pair is one policy, saved as `<out>/<algo>_s<seed>`; phi as `<out>/diffusion`.
Maze and FetchPick BC / DBC policies of all pairs train together as one batched ensemble
(identical maths, members share nothing; small MLPs on a CPU are overhead-bound, so this is
several times faster). `diffusion_policy` is the Diffusion Policy baseline (model/dbc/diffusion_policy.py):
a conditional DDPM over actions, trained on the same demonstrations, one network per seed.

Breakout's phi diffuses over a 32-d state embedding (the bottleneck of a conv net trained by
BC on the same demonstrations, frozen, shipped inside the diffusion checkpoint), plus a one-hot
action: in pixel space the action part would vanish inside the image.

Writes `<name>.safetensors` + `<name>.json` (weights + config + meta; no pickle) and
`<out>/<algo>.metrics.jsonl`. Paper settings: batch 128, Adam, lr decayed linearly to 0, grad clip 0.5.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from games import fetch, maze
from model.checkpoint import CheckpointError
from model.dbc.core import (
    DiffusionConfig,
    JointDiffusion,
    PolicyConfig,
    dbc_loss_continuous,
    dbc_loss_discrete,
    load_diffusion,
    make_policy_net,
    save_dbc_policy,
    save_diffusion,
)
from model.dbc.diffusion_policy import DiffusionPolicy, DiffusionPolicyConfig, save_diffusion_policy
from model.dbc.ensemble import EnsembleMLPPolicy
from training.cli import dataclass_parser
from training.dbc.demos import (
    DEFAULT_DEMOS,
    DEFAULT_LAMBDA,
    LOWDIM_TASKS,
    UnknownTaskError,
    breakout_demos,
    check_task,
    fetch_demos,
    maze_demos,
    store_demos,
)

ALGOS = ("bc", "dbc", "diffusion_policy", "diffusion")
DIMS = {"maze": (maze.OBS_DIM, maze.ACTION_DIM), "fetch": (fetch.OBS_DIM, fetch.ACTION_DIM)}
"""(state, action) sizes of the low-dim tasks."""


@dataclass
class Args:
    task: str = "maze"
    """maze (PointMaze_Medium), fetch (FetchPickAndPlace): low-dim, continuous; breakout: pixels, discrete."""
    algo: str = "bc,dbc"
    """Comma list of bc, dbc, diffusion_policy (maze, fetch); or diffusion alone (stage 1: fit phi)."""
    seeds: str = "0"
    """Comma list of training seeds; one policy per (algo, seed)."""
    out: Path | None = None
    """Output folder (default runs/dbc/<task>)."""
    lam: float | None = None
    """lambda of L_DM (default: Maze 30 and FetchPick 0.5 as in the paper, Breakout 1). bc policies use 0."""
    diffusion: Path | None = None
    """The frozen phi for dbc (default <out>/diffusion, written by --algo diffusion)."""
    steps: int | None = None
    """Optimisation steps (default: maze and fetch 4000 policy / 4000 diffusion; breakout 1500 / 1500)."""
    batch_size: int = 128
    """Policy batch (paper: 128)."""
    diffusion_batch_size: int = 256
    lr: float = 1e-3
    """Adam learning rate, decayed linearly to 0."""
    grad_clip: float = 0.5
    clamp: str = "batch"
    """Continuous L_DM clamp: batch (paper's code) or sample."""
    demos: int | None = None
    """Maze / FetchPick: expert trajectories (default 100 / 303). Breakout: expert frames (default 3000)."""
    human: Path | None = Path("data/Breakout")
    """Breakout: also use this EpisodeStore's episodes with meta policy 'human', if any ('none' to skip)."""
    data_dir: Path = Path("data/dbc")
    """Cache for generated demonstrations."""
    hidden: int = 256
    layers: int = 3
    embed_steps: int = 1500
    """Breakout diffusion stage: BC steps for the frozen state embedder."""
    dp_steps: int = 100
    """diffusion_policy: DDPM steps N for training and for every action's reverse chain (Chi et al.: 100)."""
    log_every: int = 100

    def __post_init__(self) -> None:
        check_task(self.task)
        self.algos = [a.strip() for a in self.algo.split(",") if a.strip()]
        for a in self.algos:
            if a not in ALGOS:
                raise ValueError(f"unknown algo {a!r}: expected bc, dbc, diffusion_policy or diffusion")
        if "diffusion" in self.algos and len(self.algos) > 1:
            raise ValueError("--algo diffusion trains phi alone; train policies in a second command")
        if "diffusion_policy" in self.algos and self.task not in LOWDIM_TASKS:
            raise ValueError(f"diffusion_policy is for the low-dim tasks ({', '.join(LOWDIM_TASKS)}), not {self.task}")
        try:
            self.seed_list = [int(x) for x in str(self.seeds).split(",") if x.strip()]
        except ValueError:
            raise ValueError(f"--seeds must be a comma list of integers, got {self.seeds!r}") from None
        if not self.seed_list:
            raise ValueError("--seeds is empty")
        if self.out is None:
            self.out = Path("runs/dbc") / self.task
        if self.diffusion is None:
            self.diffusion = Path(self.out) / "diffusion"
        if self.lam is None:
            self.lam = DEFAULT_LAMBDA[self.task]
        if self.lam < 0:
            raise ValueError(f"lambda must be >= 0, got {self.lam}")
        if self.steps is None:
            self.steps = 1500 if self.task == "breakout" else 4000
        if self.demos is None:
            self.demos = DEFAULT_DEMOS[self.task]
        if min(self.steps, self.batch_size, self.diffusion_batch_size, self.demos, self.hidden, self.layers) < 1:
            raise ValueError("steps, batch sizes, demos, hidden and layers must be >= 1")
        if self.dp_steps < 2:
            raise ValueError(f"--dp-steps must be >= 2, got {self.dp_steps}")
        if self.lr <= 0 or self.grad_clip <= 0:
            raise ValueError("lr and grad_clip must be positive")
        if self.clamp not in ("batch", "sample"):
            raise ValueError(f"unknown clamp {self.clamp!r}: expected batch or sample")

    @property
    def members(self) -> list[tuple[str, int]]:
        return [(a, s) for a in self.algos for s in self.seed_list]


def parse_args(argv: list[str] | None) -> Args:
    p = dataclass_parser(
        Args,
        prog="python -m training.dbc.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ns = vars(p.parse_args(argv))
    if ns["human"] is not None and str(ns["human"]).lower() in ("", ".", "none"):
        ns["human"] = None
    return Args(**ns)


# ---------------------------------------------------------------------------------------------
def load_data(args: Args) -> dict[str, np.ndarray]:
    """Expert demonstrations for the task: maze / fetch {'states','actions'}, breakout {'obs','actions'}."""
    if args.task in LOWDIM_TASKS:
        demos = {"maze": maze_demos, "fetch": fetch_demos}[args.task]
        return demos(args.demos, cache=args.data_dir / f"{args.task}_{args.demos}.npz")
    data = breakout_demos(args.demos, cache=args.data_dir / f"breakout_{args.demos}.npz")
    if args.human is not None and Path(args.human).is_dir():
        human = store_demos(args.human, "Breakout", "human")
        if human is not None:
            tqdm.write(f"adding {len(human['actions'])} human demonstration frames from {args.human}")
            data = {k: np.concatenate([data[k], human[k]]) for k in ("obs", "actions")}
    return data


def linear_decay(opt: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda i: max(0.0, 1.0 - i / steps))


def policy_config(args: Args) -> PolicyConfig:
    if args.task in LOWDIM_TASKS:
        obs_dim, action_dim = DIMS[args.task]
        return PolicyConfig(obs_dim=obs_dim, action_dim=action_dim, hidden=args.hidden, layers=args.layers)
    return PolicyConfig(action_dim=4, discrete=True, pixels=True, hidden=args.hidden, frame_diff=True)


@torch.no_grad()
def embed_all(embedder: torch.nn.Module, obs: np.ndarray, batch: int = 512) -> torch.Tensor:
    """Frame stacks (N, 4, 64, 64, 3) -> embeddings (N, embed_dim)."""
    return torch.cat([embedder.embed(torch.from_numpy(obs[i : i + batch])) for i in range(0, len(obs), batch)])


def fit(
    args: Args,
    net: torch.nn.Module,
    loss_fn,
    n: int,
    steps: int,
    batch: int,
    desc: str,
    log: list,
    seeds: list[int] | None = None,
    names: list[str] | None = None,
):
    """The training loop: Adam, lr linearly to 0, grad clip 0.5, random minibatches of the data.

    seeds: for an ensemble, one data-order seed per member (indices (E, B)); else args.seeds' first.
    """
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=args.lr)
    sched = linear_decay(opt, steps)
    gens = [torch.Generator().manual_seed(s) for s in (seeds or args.seed_list[:1])]
    bar = tqdm(range(steps), desc=desc, mininterval=2.0)
    items: dict[str, float] = {}
    for step in bar:
        idx = torch.stack([torch.randint(0, n, (batch,), generator=g) for g in gens])  # (E, B)
        loss = loss_fn(idx if seeds else idx[0])
        opt.zero_grad(set_to_none=True)
        loss.total.sum().backward()  # members are independent: the sum's gradient is each member's own
        if hasattr(net, "clip_grad_norm_"):
            net.clip_grad_norm_(args.grad_clip)
        else:
            torch.nn.utils.clip_grad_norm_(net.parameters(), args.grad_clip)
        opt.step()
        sched.step()
        if step % args.log_every == 0 or step == steps - 1:
            items = {f"{desc}/train/{k}": v for k, v in loss.items().items()}
            for e, name in enumerate(names or []):  # ensemble: each member's own losses
                items.update(
                    {
                        f"{name}/train/{k}": float(getattr(loss, k)[e].detach())
                        for k in ("total", "bc", "dm", "agent", "expert")
                    }
                )
            bar.set_postfix(
                {
                    k.split("/")[-1]: f"{v:.4f}"
                    for k, v in items.items()
                    if k.startswith(desc) and k.endswith(("bc", "dm"))
                }
            )
            log.append({"step": step, **items})
    return items


@dataclass
class _Loss:
    total: torch.Tensor

    def items(self) -> dict[str, float]:
        return {"loss": float(self.total.detach())}


def train_diffusion(args: Args, data: dict[str, np.ndarray], log: list[dict]) -> None:
    """Stage 1: phi on expert pairs (pixel tasks: over a frozen BC embedder's features)."""
    embedder = None
    torch.manual_seed(args.seed_list[0])
    if args.task in LOWDIM_TASKS:
        s = torch.from_numpy(data["states"]).float()
        a = torch.from_numpy(data["actions"]).float()
        obs_dim, action_dim = DIMS[args.task]
        cfg = DiffusionConfig(state_dim=obs_dim, action_dim=action_dim, hidden=args.hidden, layers=args.layers)
    else:
        obs, a = data["obs"], torch.from_numpy(data["actions"])
        embedder = make_policy_net(policy_config(args))
        frames = torch.from_numpy(obs)
        fit(
            args,
            embedder,
            lambda idx: dbc_loss_discrete(embedder(frames[idx]), a[idx], None, None, 0.0),
            len(a),
            args.embed_steps,
            min(args.batch_size, 64),
            "embedder",
            log,
        )
        embedder.eval().requires_grad_(False)
        s = embed_all(embedder, obs)
        cfg = DiffusionConfig(state_dim=s.shape[1], action_dim=4, discrete=True, hidden=args.hidden, layers=args.layers)
    phi = JointDiffusion(cfg)
    phi.state_norm.fit(s)
    if not cfg.discrete:
        phi.action_norm.fit(a)
    final = fit(
        args,
        phi,
        lambda idx: _Loss(phi.pretrain_loss(s[idx], a[idx])),
        len(s),
        args.steps,
        args.diffusion_batch_size,
        "diffusion",
        log,
    )
    save_diffusion(
        Path(args.out) / "diffusion", phi, meta_of(args, data, final, "diffusion", args.seed_list[0]), embedder
    )
    tqdm.write(f"saved {Path(args.out) / 'diffusion'}: {final}")


def train_policies(args: Args, data: dict[str, np.ndarray], log: list[dict]) -> None:
    """Stage 2: L = L_BC + lambda * L_DM with phi frozen, one policy per (algo, seed) (bc: lambda = 0);
    diffusion_policy members train their own conditional DDPM instead."""
    if args.task in LOWDIM_TASKS:
        members = [(algo, seed) for algo, seed in args.members if algo in ("bc", "dbc")]
        if members:
            train_ensemble(args, data, log, members)
        for algo, seed in args.members:
            if algo == "diffusion_policy":
                train_diffusion_policy(args, data, log, seed)
        return
    phi = embedder = None
    if "dbc" in args.algos:
        phi, embedder, _ = load_diffusion(args.diffusion, task=args.task)
    members = args.members
    lams = [args.lam if algo == "dbc" else 0.0 for algo, _ in members]
    frames, a = torch.from_numpy(data["obs"]), torch.from_numpy(data["actions"])
    s_emb = embed_all(embedder, data["obs"]) if embedder is not None else None
    for (algo, seed), lam in zip(members, lams, strict=True):
        torch.manual_seed(seed)
        policy = make_policy_net(policy_config(args))

        def loss_fn(idx: torch.Tensor, policy=policy, lam=lam):
            return dbc_loss_discrete(policy(frames[idx]), a[idx], None if s_emb is None else s_emb[idx], phi, lam)

        final = _fit_single(args, policy, loss_fn, len(a), algo, seed, log)
        save_member(args, data, policy.eval(), algo, seed, lam, final)


def train_ensemble(args: Args, data: dict[str, np.ndarray], log: list[dict], members: list[tuple[str, int]]) -> None:
    """BC and DBC MLP policies of a low-dim task as one batched ensemble (member e = (algo, seed))."""
    phi = load_diffusion(args.diffusion, task=args.task)[0] if any(algo == "dbc" for algo, _ in members) else None
    lams = [args.lam if algo == "dbc" else 0.0 for algo, _ in members]
    s = torch.from_numpy(data["states"]).float()
    a = torch.from_numpy(data["actions"]).float()
    ens = EnsembleMLPPolicy(policy_config(args), [seed for _, seed in members])
    ens.obs_norm.fit(s)
    ens.action_norm.fit(a)
    lam = torch.tensor(lams)

    def loss_fn(idx: torch.Tensor):  # idx: (E, B)
        return dbc_loss_continuous(ens(s[idx]), a[idx], s[idx], phi, lam, args.clamp)

    final = fit(
        args,
        ens,
        loss_fn,
        len(s),
        args.steps,
        args.batch_size,
        "+".join(dict.fromkeys(algo for algo, _ in members)),
        log,
        seeds=[seed for _, seed in members],
        names=[f"{algo}_s{seed}" for algo, seed in members],
    )
    for e, (algo, seed) in enumerate(members):
        save_member(args, data, ens.member(e), algo, seed, lams[e], final)


def train_diffusion_policy(args: Args, data: dict[str, np.ndarray], log: list[dict], seed: int) -> None:
    """The Diffusion Policy baseline: eps_theta(a_n, n, s) by the DDPM loss on the expert's (s, a)."""
    s = torch.from_numpy(data["states"]).float()
    a = torch.from_numpy(data["actions"]).float()
    obs_dim, action_dim = DIMS[args.task]
    torch.manual_seed(seed)  # initial weights and the training noise (n, eps)
    cfg = DiffusionPolicyConfig(
        obs_dim=obs_dim, action_dim=action_dim, hidden=args.hidden, layers=args.layers, num_steps=args.dp_steps
    )
    policy = DiffusionPolicy(cfg)
    policy.obs_norm.fit(s)
    final = _fit_single(
        args, policy, lambda idx: _Loss(policy.loss(s[idx], a[idx]).mean()), len(s), "diffusion_policy", seed, log
    )
    meta = meta_of(args, data, final, "diffusion_policy", seed)
    meta["lambda"] = None
    path = Path(args.out) / f"diffusion_policy_s{seed}"
    save_diffusion_policy(path, policy.eval(), meta)
    tqdm.write(f"saved {path}.safetensors/.json")


def _fit_single(args: Args, policy, loss_fn, n: int, algo: str, seed: int, log: list) -> dict:
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(policy.parameters(), lr=args.lr)
    sched = linear_decay(opt, args.steps)
    items: dict[str, float] = {}
    for step in (bar := tqdm(range(args.steps), desc=f"{algo}_s{seed}", mininterval=2.0)):
        loss = loss_fn(torch.randint(0, n, (args.batch_size,), generator=gen))
        opt.zero_grad(set_to_none=True)
        loss.total.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), args.grad_clip)
        opt.step()
        sched.step()
        if step % args.log_every == 0 or step == args.steps - 1:
            items = {f"{algo}_s{seed}/train/{k}": v for k, v in loss.items().items()}
            bar.set_postfix(
                {k.split("/")[-1]: f"{v:.4f}" for k, v in items.items() if k.endswith(("bc", "dm", "loss"))}
            )
            log.append({"step": step, **items})
    return items


def save_member(args: Args, data: dict, policy: torch.nn.Module, algo: str, seed: int, lam: float, final: dict) -> None:
    meta = meta_of(args, data, final, algo, seed)
    meta["lambda"] = lam
    if algo == "dbc":
        meta["diffusion"] = str(args.diffusion)
    path = Path(args.out) / f"{algo}_s{seed}"
    save_dbc_policy(path, policy, meta)
    tqdm.write(f"saved {path}.safetensors/.json")


def meta_of(args: Args, data: dict[str, np.ndarray], final: dict, algo: str, seed: int) -> dict:
    return {
        "task": args.task,
        "algo": algo,
        "seed": seed,
        "lambda": args.lam,
        "steps": args.steps,
        "demos": args.demos,
        "transitions": int(len(data["actions"])),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(args).items()},
        "final": final,
    }


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
    except (UnknownTaskError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    np.random.seed(args.seed_list[0])
    t0 = time.time()
    log: list[dict] = []
    try:
        if "dbc" in args.algos and not Path(args.diffusion).with_suffix(".json").is_file():
            raise ValueError(f"--algo dbc needs a diffusion model at {args.diffusion} (train it with --algo diffusion)")
        data = load_data(args)
        tqdm.write(f"{args.task}: {len(data['actions'])} expert transitions")
        if args.algos == ["diffusion"]:
            train_diffusion(args, data, log)
        else:
            train_policies(args, data, log)
    except (CheckpointError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    Path(args.out).mkdir(parents=True, exist_ok=True)
    with open(Path(args.out) / f"{'+'.join(args.algos)}.metrics.jsonl", "w") as f:
        for row in log:
            f.write(json.dumps(row) + "\n")
    tqdm.write(f"done in {time.time() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    torch.set_num_threads(1)
    sys.exit(main())
