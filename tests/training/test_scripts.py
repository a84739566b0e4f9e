"""Every entry script run for a few steps through its command line (cleanrl-style smoke tests), resume
after a stop and after kill -9, bad input, and data-parallel training under torchrun."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from script_helpers import TINY, one_error

from games.episode_store import EpisodeStore
from model import checkpoint
from model.world_model import WorldModel
from model.world_model.onnx_backend import gated_backend
from training.world_model.playability import breakout, core

REPO = Path(__file__).resolve().parents[2]
TORCHRUN = str(Path(sys.executable).with_name("torchrun"))


def file_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def step_of(run_dir: Path) -> int:
    tree, meta = checkpoint.load(run_dir / "state")
    assert meta["kind"] == "train_state"
    return int(tree["step"])


@pytest.fixture(scope="module")
def work(tmp_path_factory, store_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("scripts")
    shutil.copytree(store_dir, root / "data")
    return root


@pytest.fixture(scope="module")
def trained(work: Path, run_script) -> subprocess.CompletedProcess:
    """6 steps, checkpoints at 3 and 6, fidelity evaluation at 6 on held-out play that train.py collects;
    windows from an empty field, and the serve, drawn more often."""
    return run_script(
        "training/train.py",
        *TINY,
        "--empty-field-weight",
        "2",
        "--serve-weight",
        "4",
        "--steps",
        "6",
        "--collect-steps",
        "300",
        "--heldout-steps",
        "60",
        "--policy",
        "expert",
        "--eval-every",
        "6",
        "--eval-starts",
        "2",
        "--ckpt-every",
        "3",
        "--log-every",
        "3",
        "--run-dir",
        work / "run",
        "--data",
        work / "data",
        "--heldout",
        work / "heldout",
    )


@pytest.fixture(scope="module")
def resumed(work: Path, trained, run_script) -> subprocess.CompletedProcess:
    assert trained.returncode == 0, trained.stderr
    return run_script(
        "training/train.py",
        *TINY,
        "--steps",
        "8",
        "--eval-every",
        "0",
        "--ckpt-every",
        "3",
        "--run-dir",
        work / "run",
        "--data",
        work / "data",
        "--resume",
    )


def test_collect_cli(collected) -> None:
    proc, out = collected
    assert proc.returncode == 0, proc.stderr
    assert "wrote 1 episodes" in proc.stdout and "(200 steps in store)" in proc.stdout
    store = EpisodeStore(out)
    episodes, errors = store.load_all("Breakout")
    assert errors == [] and len(episodes[0]) == 200 and episodes[0].meta["policy"] == "expert"
    assert store.index()[0]["return"] > 0  # the expert scores within 200 steps


def test_train_cli(work: Path, trained) -> None:
    assert trained.returncode == 0, trained.stderr
    run = work / "run"
    assert step_of(run) == 6
    model = WorldModel.from_snapshot(run / "snapshot", precision="fp32")
    assert model.cfg.preset == "tiny" and model.meta["step"] == 6
    metrics = (run / "metrics.jsonl").read_text().splitlines()
    assert [int(line.split('"step": ')[1].split(",")[0]) for line in metrics][:2] == [3, 6]
    assert '"denoiser/train/loss"' in metrics[0] and '"eval/h50/psnr_dream"' in (run / "metrics.jsonl").read_text()
    train_logs = [json.loads(line) for line in metrics if '"denoiser/train/loss"' in line]
    assert train_logs and {x["denoiser/train/dreamed_samples"] for x in train_logs} == {0}  # no --ar-frames
    assert (run / "eval" / "fidelity_0000006.json").is_file() and (run / "eval" / "strip_0000006.png").is_file()
    pooled = json.loads((run / "eval" / "fidelity_0000006.json").read_text())["ball"]["pooled"]
    logged = {k: v for k, v in json.loads(metrics[-1]).items() if k.startswith("eval/ball_recall/")}
    assert logged == {f"eval/ball_recall/{k}": v for k, v in pooled.items() if v is not None}
    assert list((run / "tb").iterdir())
    assert EpisodeStore(work / "heldout").num_steps() == 60  # collected by train.py
    assert "of transitions reweighted" in trained.stdout


@pytest.mark.parametrize("flag", ["--serve-weight", "--empty-field-weight", "--life-loss-weight", "--reward-weight"])
def test_train_refuses_bad_sampling_weights(work: Path, trained, run_script, flag: str) -> None:
    proc = run_script("training/train.py", *TINY, flag, "0", "--run-dir", work / "bad-weights", "--data", work / "data")
    assert "must be > 0" in one_error(proc)
    assert not (work / "bad-weights").exists()


def test_train_resume_continues(work: Path, resumed) -> None:
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed" in resumed.stdout and "at step 6" in resumed.stdout
    assert step_of(work / "run") == 8
    assert WorldModel.from_snapshot(work / "run" / "snapshot", precision="fp32").meta["step"] == 8


def test_resume_keeps_the_recorded_settings(work: Path, resumed) -> None:
    """The resume above gave --steps and --eval-every again but not the sampling weights nor the
    collection policy: those come from the run's args.json, not from the flags' defaults."""
    assert resumed.returncode == 0, resumed.stderr
    assert "of transitions reweighted" in resumed.stdout  # the recorded --empty-field-weight 2 is in force
    record = json.loads((work / "run" / "args.json").read_text())
    assert record["empty_field_weight"] == 2.0 and record["serve_weight"] == 4.0 and record["policy"] == "expert"
    assert record["steps"] == 8 and record["eval_every"] == 0 and record["resume"] is True


def test_fine_tune_from_a_snapshot_with_dreamed_context(work: Path, resumed, run_script, tmp_path: Path) -> None:
    """--init-from starts from a snapshot's weights and config; --ar-frames trains on dreamed
    contexts; loss settings can be overridden; the steps behind the snapshot are counted, and
    ship.py reports both stages."""
    assert resumed.returncode == 0
    ft = work / "finetune"
    proc = run_script(
        "training/train.py",
        *TINY,
        "--motion-weight",
        "9",
        "--region-weight",
        "5",
        "--region",
        "0,4,0,64",
        "--steps",
        "3",
        "--eval-every",
        "0",
        "--log-every",
        "1",
        "--ar-frames",
        "2",
        "--ar-fraction",
        "0.5",
        "--init-from",
        work / "run" / "snapshot",
        "--run-dir",
        ft,
        "--data",
        work / "data",
    )
    assert proc.returncode == 0, proc.stderr
    assert "starting from" in proc.stdout and "8 steps behind it" in proc.stdout
    base = WorldModel.from_snapshot(work / "run" / "snapshot", precision="fp32")
    model = WorldModel.from_snapshot(ft / "snapshot", precision="fp32")
    assert model.meta["train_steps"] == 8 + 3 and model.meta["base_training"]["steps"] == 8
    assert model.cfg.denoiser.motion_weight == 9 != base.cfg.denoiser.motion_weight
    assert (model.cfg.denoiser.region_weight, model.cfg.denoiser.region) == (5, (0, 4, 0, 64))
    model.cfg.denoiser.motion_weight = base.cfg.denoiser.motion_weight
    model.cfg.denoiser.region_weight, model.cfg.denoiser.region = base.cfg.denoiser.region_weight, (0, 0, 0, 0)
    assert model.cfg == base.cfg
    # A resumed run keeps the loss settings it started with.
    again = run_script(
        "training/train.py",
        *TINY,
        "--steps",
        "4",
        "--eval-every",
        "0",
        "--resume",
        "--motion-weight",
        "2",
        "--run-dir",
        ft,
        "--data",
        work / "data",
    )
    assert "keeps its loss settings" in one_error(again) and "motion_weight=9.0" in again.stderr
    moved = [k for k, v in model.state_dict().items() if not torch.equal(v, base.state_dict()[k])]
    assert moved  # it trained from there
    logs = [json.loads(line) for line in (ft / "metrics.jsonl").read_text().splitlines()]
    losses = [x["denoiser/train/loss"] for x in logs]
    assert len(losses) == 3 and all(x == x and x < 10 for x in losses)
    # --ar-fraction 0.5 of a batch of 4: two samples of every step saw a dreamed context
    assert [x["denoiser/train/dreamed_samples"] for x in logs] == [2, 2, 2]

    ship = run_script(
        "training/ship.py",
        "--run-dir",
        ft,
        "--data",
        work / "data",
        "--heldout",
        work / "heldout",
        "--out-dir",
        tmp_path / "ckpt",
        "--docs",
        tmp_path / "docs",
        "--starts",
        "2",
        "--stability-steps",
        "20",
        "--playability-starts",
        "2",
    )
    assert ship.returncode == 0, ship.stderr
    assert f"no Breakout model in {tmp_path / 'ckpt'}: this one is the first" in ship.stdout
    card = (tmp_path / "docs" / "Breakout.md").read_text()
    assert "## Playability" in card and "dreams that serve a ball without FIRE" in card
    assert (tmp_path / "docs" / "Breakout-playability.png").is_file()
    assert "11 denoiser steps" in card and "First 8 steps" in card and "then 3 steps" in card
    assert "last 2 context frames were dreamed" in card
    assert "Ball recall" in card and (tmp_path / "docs" / "Breakout-ball.png").is_file()
    shipped = WorldModel.from_snapshot(tmp_path / "ckpt" / "Breakout", precision="fp32")
    assert shipped.meta["training"]["steps"] == 11

    # The gate: against a shipped model that obeys every rule, this one is refused and nothing
    # changes; --force ships it.
    play_json = tmp_path / "docs" / "Breakout-playability.json"
    perfect = json.loads(play_json.read_text())
    perfect.update({p.key: float(p.higher_is_better) for p in breakout.PROBES})
    play_json.write_text(json.dumps(perfect))
    before = {**file_bytes(tmp_path / "ckpt"), **file_bytes(tmp_path / "docs")}
    again = run_script("training/ship.py", *ship.args[2:])
    assert "worse than the shipped model" in one_error(again) and "this one is the first" not in again.stdout
    assert {**file_bytes(tmp_path / "ckpt"), **file_bytes(tmp_path / "docs")} == before
    bad = run_script("training/ship.py", *ship.args[2:], "--force", "--action-guidance", "-1")
    assert "must be >= 0" in one_error(bad)
    bad_band = run_script("training/ship.py", *ship.args[2:], "--force", "--still-band", "300")
    assert "--still-band is in grey levels" in one_error(bad_band)
    assert {**file_bytes(tmp_path / "ckpt"), **file_bytes(tmp_path / "docs")} == before
    # --force ships it, here with action guidance and a still band written into its sampler settings
    forced = run_script("training/ship.py", *ship.args[2:], "--force", "--action-guidance", "1.5", "--still-band", "1")
    assert forced.returncode == 0, forced.stderr
    assert json.loads(play_json.read_text()) != perfect  # the forced model's own figures
    assert json.loads(play_json.read_text())["sampler"]["action_guidance"] == 1.5  # measured as shipped
    assert json.loads(play_json.read_text())["sampler"]["still_band"] == 1.0
    guided = WorldModel.from_snapshot(tmp_path / "ckpt" / "Breakout", precision="fp32")
    assert guided.sampler_config().action_guidance == 1.5 and guided.sampler_config().still_band == 1.0
    card = (tmp_path / "docs" / "Breakout.md").read_text()
    assert "action guidance 1.5 at noise >= 1" in card and "still band 1 grey levels" in card

    # A card's figures from other arithmetic (another CPU: bf16 rounds elsewhere, dreams part) do not
    # stand for the shipped model: the gate measures it again on this machine. Here it is the same
    # weights and sampler as the candidate, so the candidate passes where the card's (perfect)
    # figures would have refused it.
    other = json.loads(play_json.read_text())
    other.update({p.key: float(p.higher_is_better) for p in breakout.PROBES})
    other["arithmetic"] = {**other["arithmetic"], "cpu": "another CPU"}
    play_json.write_text(json.dumps(other))
    remeasured = run_script("training/ship.py", *ship.args[2:], "--action-guidance", "1.5", "--still-band", "1")
    assert remeasured.returncode == 0, remeasured.stderr
    assert "playability suite on the shipped model ..." in remeasured.stdout
    assert json.loads(play_json.read_text())["arithmetic"]["cpu"] != "another CPU"

    # The quality gate: against a shipped model 10 dB sharper at every horizon (and no better on any
    # probe), this one is refused on fidelity and nothing changes; --force ships it and says so.
    worst = json.loads(play_json.read_text())
    worst.update({p.key: float(not p.higher_is_better) for p in breakout.PROBES})
    play_json.write_text(json.dumps(worst))
    eval_json = tmp_path / "docs" / "Breakout-eval.json"
    sharper = json.loads(eval_json.read_text())
    for row in sharper["fidelity"]["horizons"].values():
        row["psnr_dream"] += 10
    eval_json.write_text(json.dumps(sharper))
    before = {**file_bytes(tmp_path / "ckpt"), **file_bytes(tmp_path / "docs")}
    refused = run_script("training/ship.py", *ship.args[2:], "--action-guidance", "1.5")
    assert "below the shipped model's fidelity: PSNR at h=1" in one_error(refused)
    assert {**file_bytes(tmp_path / "ckpt"), **file_bytes(tmp_path / "docs")} == before
    forced = run_script("training/ship.py", *ship.args[2:], "--force", "--action-guidance", "1.5")
    assert forced.returncode == 0, forced.stderr
    assert (
        "Shipped with --force**, below the model it replaced on: PSNR at h=1"
        in (tmp_path / "docs" / "Breakout.md").read_text()
    )

    # --snapshot ships a snapshot as it is: here the shipped model again, with a guidance reference
    shipped_ckpt = tmp_path / "ckpt" / "Breakout"
    rest = [str(x) for x in ship.args[4:]]  # the flags after --run-dir <run>
    assert ship.args[2] == "--run-dir" and "--data" in rest
    both = run_script("training/ship.py", "--snapshot", shipped_ckpt, "--run-dir", ft, *rest)
    assert "not both" in one_error(both)
    before = {**file_bytes(tmp_path / "ckpt"), **file_bytes(tmp_path / "docs")}
    wrong = run_script("training/ship.py", "--snapshot", shipped_ckpt, *rest, "--guidance-reference", "JUMP")
    assert "'JUMP' is not an action of Breakout" in one_error(wrong)
    assert {**file_bytes(tmp_path / "ckpt"), **file_bytes(tmp_path / "docs")} == before
    no_steps = run_script("training/ship.py", "--snapshot", shipped_ckpt, *rest, "--force", "--steps", "0")
    assert "num_steps must be in [1, 50], got 0" in one_error(no_steps)
    assert {**file_bytes(tmp_path / "ckpt"), **file_bytes(tmp_path / "docs")} == before
    weights = WorldModel.from_snapshot(shipped_ckpt, precision="fp32").state_dict()
    card_path = tmp_path / "docs" / "Breakout.md"
    card_path.write_text(card_path.read_text().replace("(to be filled in from looking at the strips)", "Late ball."))
    reshipped = run_script(
        "training/ship.py", "--snapshot", shipped_ckpt, *rest, "--force", "--guidance-reference", "FIRE", "--steps", "2"
    )
    assert reshipped.returncode == 0, reshipped.stderr
    again = WorldModel.from_snapshot(shipped_ckpt, precision="fp32")
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in weights.items())
    assert again.sampler_config().guidance_reference == 1 and again.sampler_config().action_guidance == 1.5
    assert again.sampler_config().num_steps == 2  # the sampler it was shipped with, read by every consumer
    assert json.loads(play_json.read_text())["euler_steps"] == 2  # its suite measured as shipped
    assert again.meta["training"]["steps"] == 11  # its training record kept
    card = (tmp_path / "docs" / "Breakout.md").read_text()
    assert "action guidance 1.5 at noise >= 1 against FIRE" in card
    # the shipped weights again: the card keeps their training story and the commands that made them
    assert "11 denoiser steps (reward/end model alongside)" in card and "Shipped again on" in card
    assert f"Reproduce: `python training/ship.py --run-dir {ft} --action-guidance 1.5" in card
    assert f"ship.py --snapshot {shipped_ckpt} --guidance-reference FIRE --steps 2 --data" in card
    assert "2 Euler steps" in card
    assert "## Where the dream is wrong\n\nLate ball.\n\nReproduce" in card  # its notes kept too

    # The shipped model's one-step student: its card keeps the teacher's story and commands, then its own
    student = work / "student"
    distilled = run_script(
        "training/train.py",
        *TINY,
        "--steps",
        "2",
        "--eval-every",
        "0",
        "--distill-from",
        f"{shipped_ckpt}.safetensors",
        "--student-sigma-max",
        "80",
        "--run-dir",
        student,
        "--data",
        work / "data",
    )
    assert distilled.returncode == 0, distilled.stderr
    teacher_files = {d: file_bytes(tmp_path / d) for d in ("ckpt", "docs")}
    shipped_student = run_script("training/ship.py", "--run-dir", student, *rest, "--force")
    assert shipped_student.returncode == 0, shipped_student.stderr
    card = (tmp_path / "docs" / "Breakout.md").read_text()
    assert "11 denoiser steps (reward/end model alongside)" in card and "Shipped again on" in card
    assert "Then distilled into one Euler step at sigma 80" in card and "2 Euler steps and action guidance" in card
    assert f"--distill-from {shipped_ckpt}.safetensors --student-sigma-max 80.0" in card
    assert "--eval-every 0 --ckpt-every 250 --steps 2" in card  # --eval-every 0 is a setting (default 1000)
    assert f"python training/ship.py --run-dir {student} --data" in card
    assert "Dreamed with\n1 Euler step;" in card and "\nLate ball.\n" in card
    shipped_meta = WorldModel.from_snapshot(shipped_ckpt, precision="fp32").meta
    assert shipped_meta["training"]["steps"] == 13  # the teacher's 11, then its own 2
    assert shipped_meta["distilled_from"]["snapshot"] == f"{shipped_ckpt}.safetensors"  # whose student it is

    # The same student as a snapshot kept without its run (e.g. in checkpoints/wip/), shipped with
    # --snapshot in place of the teacher: the same story, its steps after the teacher's, and the
    # flags its snapshot records where the run's args.json is gone
    for d, files in teacher_files.items():
        for name, data in files.items():
            (tmp_path / d / name).write_bytes(data)
    kept = tmp_path / "wip"
    kept.mkdir()
    for ext in (".safetensors", ".json"):
        (kept / f"student{ext}").write_bytes((student / f"snapshot{ext}").read_bytes())
    alone = run_script("training/ship.py", "--snapshot", kept / "student", *rest, "--force")
    assert alone.returncode == 0, alone.stderr
    card = (tmp_path / "docs" / "Breakout.md").read_text()
    assert "11 denoiser steps (reward/end model alongside)" in card and "Then distilled into one Euler step" in card
    assert "2 steps from the weights of" in card
    assert f"--distill-from {shipped_ckpt}.safetensors --student-sigma-max 80 --steps 2" in card
    assert f"ship.py --snapshot {kept / 'student'} --data {work / 'data'} --heldout" in card
    assert "--starts 2 --playability-starts 2 --force" in card  # the gates' figures depend on them
    assert WorldModel.from_snapshot(shipped_ckpt, precision="fp32").meta["training"]["steps"] == 13
    # the snapshot names the path its gates measured (torch without --backend): auto serves it untimed
    assert WorldModel.from_snapshot(kept / "student", precision="fp32").meta.get("backend") is None  # a run's
    assert gated_backend(WorldModel.from_snapshot(shipped_ckpt, precision="fp32")) == "torch"
    assert "the denoiser runs on the `torch` backend" in card

    # --backend: the same weights offered on a faster path, gated against the shipped model on its
    # own (torch), and shipped naming it as the model's own: the server's default `auto` runs it,
    # and the card says which path its figures come from.
    def ship_fused(precision: str):
        args = ["--snapshot", shipped_ckpt, *rest, "--force", "--backend", "torch-fused", "--precision", precision]
        return run_script("training/ship.py", *args)

    fused = ship_fused("bf16")
    assert fused.returncode == 0, fused.stderr
    assert "playability suite on the shipped model ..." in fused.stdout  # its figures were on torch
    served = WorldModel.from_snapshot(shipped_ckpt, precision="bf16", backend="auto")
    assert served.meta["backend"] == "torch-fused" and served.backend == "torch-fused"
    assert served.meta["shipped_from"] == str(kept / "student")  # shipped again: where the weights came from
    assert WorldModel.from_snapshot(shipped_ckpt, precision="bf16").backend == "torch"  # named, not forced
    assert json.loads(play_json.read_text())["arithmetic"]["backend"] == "torch-fused"  # measured on it
    assert json.loads(play_json.read_text())["arithmetic"]["backend_revision"] >= 2  # its rounding's revision
    card = (tmp_path / "docs" / "Breakout.md").read_text()
    assert "the denoiser runs on the `torch-fused` backend" in card
    assert "Shipped again on" in card and "dreamed on the torch-fused backend" in card
    assert f"ship.py --snapshot {shipped_ckpt} --backend torch-fused --data" in card
    # where it cannot run (fp32: the copy is a bf16 one), a clear error and nothing changed
    before = {f.name: f.read_bytes() for f in (tmp_path / "ckpt").iterdir()}
    fp32 = ship_fused("fp32")
    assert "the torch-fused backend does not run this model here (torch instead)" in one_error(fp32)
    assert {f.name: f.read_bytes() for f in (tmp_path / "ckpt").iterdir()} == before


def test_fine_tune_grows_the_context(work: Path, resumed, run_script) -> None:
    """--context-frames grows an --init-from snapshot's context (the older frames through new
    zero-initialised input channels, the last 4 actions embedded); the grown model trains, dreams
    from the playability suite's starts, and a resumed run keeps its context."""
    assert resumed.returncode == 0
    run = work / "grown"
    common = [*TINY, "--steps", "2", "--eval-every", "0", "--run-dir", run, "--data", work / "data"]
    proc = run_script("training/train.py", *common, "--init-from", work / "run" / "snapshot", "--context-frames", "6")
    assert proc.returncode == 0, proc.stderr
    assert "context grown to 6 frames (the last 4 actions embedded)" in proc.stdout
    model = WorldModel.from_snapshot(run / "snapshot", precision="fp32")
    assert (model.cfg.context_frames, model.cfg.denoiser.unet.action_frames) == (6, 4)
    starts = breakout.make_starts("Breakout", 2, progress=False)
    d = core.ModelDreamer(model, steps=1)
    frames, _, _ = core.dream_batch(d, starts["in_play"], torch.zeros(2, 3, dtype=torch.long).numpy())
    assert frames.shape == (2, 3, 64, 64, 3)
    again = run_script("training/train.py", *common, "--resume", "--steps", "3", "--context-frames", "8")
    assert "keeps its context" in one_error(again)
    fewer = run_script(
        "training/train.py", *TINY, "--eval-every", "0", "--run-dir", work / "fewer", "--data", work / "data",
        "--init-from", run / "snapshot", "--context-frames", "5",
    )  # fmt: skip
    assert "below the model's 6" in one_error(fewer) and not (work / "fewer").exists()


def test_fine_tune_adds_the_reward_input(work: Path, resumed, run_script) -> None:
    """--reward-input gives an --init-from snapshot's denoiser the step's reward as an input (a
    zero-initialised embedding, model/world_model/unet.add_reward_input); the model trains and
    dreams; a resumed run keeps it, and one without it cannot be given it."""
    assert resumed.returncode == 0
    run = work / "told"
    common = [*TINY, "--steps", "2", "--eval-every", "0", "--run-dir", run, "--data", work / "data"]
    proc = run_script("training/train.py", *common, "--init-from", work / "run" / "snapshot", "--reward-input")
    assert proc.returncode == 0, proc.stderr
    assert "the denoiser takes the step's reward as an input" in proc.stdout
    model = WorldModel.from_snapshot(run / "snapshot", precision="fp32")
    assert model.cfg.denoiser.unet.reward_input
    assert model.denoiser.net.reward_emb.weight.abs().sum() > 0  # trained from zero
    starts = breakout.make_starts("Breakout", 2, progress=False)
    frames, _, _ = core.dream_batch(
        core.ModelDreamer(model, steps=1), starts["in_play"], torch.zeros(2, 3, dtype=torch.long).numpy()
    )
    assert frames.shape == (2, 3, 64, 64, 3)
    again = run_script("training/train.py", *common, "--resume", "--steps", "3")
    assert again.returncode == 0, again.stderr
    assert WorldModel.from_snapshot(run / "snapshot", precision="fp32").cfg.denoiser.unet.reward_input
    plain = run_script(
        "training/train.py", *TINY, "--steps", "3", "--eval-every", "0", "--run-dir", work / "run", "--data",
        work / "data", "--resume", "--reward-input",
    )  # fmt: skip
    assert "keeps its inputs" in one_error(plain)


def test_reward_end_only_retrains_the_heads_alone(work: Path, resumed, run_script) -> None:
    """--reward-end-only trains the reward/end model from a snapshot and leaves the denoiser as it
    was; --re-blank goes into the snapshot's config."""
    assert resumed.returncode == 0
    run = work / "heads"
    proc = run_script(
        "training/train.py", *TINY, "--steps", "3", "--eval-every", "0", "--run-dir", run, "--data", work / "data",
        "--init-from", work / "run" / "snapshot", "--reward-end-only", "--re-blank", "0,5,36,50", "--ema-decay", "0",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    before = WorldModel.from_snapshot(work / "run" / "snapshot", precision="fp32")
    after = WorldModel.from_snapshot(run / "snapshot", precision="fp32")
    assert after.cfg.reward_end.blank == (0, 5, 36, 50) and before.cfg.reward_end.blank == (0, 0, 0, 0)
    den_a, den_b = before.denoiser.state_dict(), after.denoiser.state_dict()
    assert all(torch.equal(den_a[k], den_b[k]) for k in den_a)
    re_a, re_b = before.reward_end.state_dict(), after.reward_end.state_dict()
    assert any(not torch.equal(re_a[k], re_b[k]) for k in re_a)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--re-blank", "0,70,0,5"], "--re-blank"),
        (["--re-blank", "a,b"], "--re-blank"),
        (["--init-from", "MISSING"], "cannot start from"),
        (["--ar-frames", "-1"], "--ar-frames"),
        (["--context-frames", "-1"], "--context-frames"),
        (["--ar-fraction", "1.5"], "--ar-fraction"),
        (["--motion-weight", "-1"], "--motion-weight"),
        (["--context-noise-clean-prob", "2"], "--context-noise-clean-prob"),
    ],
)
def test_bad_fine_tune_arguments(work: Path, run_script, tmp_path: Path, args: list[str], says: str) -> None:
    out = tmp_path / "out"
    args = [str(tmp_path / "missing") if x == "MISSING" else x for x in args]
    proc = run_script("training/train.py", *TINY, "--eval-every", "0", "--run-dir", out, "--data", work / "data", *args)
    assert says in one_error(proc)
    assert not out.exists()


def test_evaluate_cli(work: Path, resumed, run_script) -> None:
    assert resumed.returncode == 0
    proc = run_script(
        "training/evaluate.py",
        "--checkpoint",
        work / "run" / "snapshot",
        "--data",
        work / "heldout",
        "--starts",
        "2",
        "--stability-steps",
        "100",
        "--steps",  # one denoising step per frame keeps the smoke test cheap
        "1",
        "--out",
        work / "evalout",
    )
    assert proc.returncode == 0, proc.stderr
    res = json.loads((work / "evalout" / "fidelity.json").read_text())
    assert set(res["horizons"]) == {"1", "5", "15", "50"} and len(res["starts"]) == 2
    assert res["horizons"]["1"]["psnr_repeat"] > 0 and len(res["stability"]["per_100_steps"]) == 1
    assert "| 50 |" in proc.stdout and (work / "evalout" / "strip.png").is_file()
    assert set(res["ball"]["pooled"]) == {"1-1", "2-5", "6-15", "16-50"} and "ball recall" in proc.stdout
    assert (work / "evalout" / "ball.png").is_file()
    assert len(res["ball"]["recall"]) == 50 and sum(res["ball"]["real_balls"]) <= 2 * 50
    assert res["reward_end"]["transitions"] == 60  # teacher-forced reward/end accuracy on the held-out play
    assert res["backend"] == "torch"

    # --backend measures the path players get with that backend: ONNX Runtime's fp32 graph dreams what
    # torch dreams (float tolerance and the torch path's bf16 apart: within a dB at every horizon)
    onnx = run_script("training/evaluate.py", *proc.args[2:-1], work / "evalonnx", "--backend", "onnx-fp32")
    assert onnx.returncode == 0, onnx.stderr
    res_onnx = json.loads((work / "evalonnx" / "fidelity.json").read_text())
    assert res_onnx["backend"] == "onnx-fp32"
    for h, row in res["horizons"].items():
        assert abs(res_onnx["horizons"][h]["psnr_dream"] - row["psnr_dream"]) < 1.0, h
    bad = run_script("training/evaluate.py", *proc.args[2:], "--backend", "tensorrt")
    assert bad.returncode == 2 and "invalid choice: 'tensorrt'" in bad.stderr


def test_train_refuses_to_overwrite_a_run(work: Path, resumed, run_script) -> None:
    assert resumed.returncode == 0
    before = file_bytes(work / "run")
    proc = run_script(
        "training/train.py",
        *TINY,
        "--steps",
        "9",
        "--eval-every",
        "0",
        "--run-dir",
        work / "run",
        "--data",
        work / "data",
    )
    assert "--resume" in one_error(proc)
    assert file_bytes(work / "run") == before


@pytest.mark.parametrize("damage", ["truncate", "missing-weights"])
def test_resume_from_damaged_checkpoint_fails_cleanly(work: Path, resumed, run_script, damage: str) -> None:
    assert resumed.returncode == 0
    run = work / f"damaged-{damage}"
    shutil.copytree(work / "run", run)
    if damage == "truncate":
        w = run / "state.safetensors"
        w.write_bytes(w.read_bytes()[:5000])
    else:
        (run / "state.safetensors").unlink()
    before = file_bytes(run)
    proc = run_script(
        "training/train.py",
        *TINY,
        "--steps",
        "12",
        "--eval-every",
        "0",
        "--run-dir",
        run,
        "--data",
        work / "data",
        "--resume",
    )
    assert "state." in one_error(proc)
    assert file_bytes(run) == before


def test_resume_without_a_run_fails_cleanly(work: Path, run_script) -> None:
    proc = run_script(
        "training/train.py",
        *TINY,
        "--eval-every",
        "0",
        "--run-dir",
        work / "nothing",
        "--data",
        work / "data",
        "--resume",
    )
    assert "state" in one_error(proc)
    assert not (work / "nothing").exists()


@pytest.mark.parametrize(
    ("script", "args", "says"),
    [
        ("training/collect.py", ["--game", "NotAGame", "--steps", "5", "--out", "OUT"], "unknown game"),
        ("training/collect.py", ["--bogus-flag", "--out", "OUT"], "unrecognized arguments"),
        ("training/collect.py", ["--steps", "0", "--out", "OUT"], "--steps"),
        ("training/train.py", ["--game", "NotAGame", "--run-dir", "OUT"], "unknown game"),
        ("training/train.py", ["--bogus-flag", "--run-dir", "OUT"], "unrecognized arguments"),
        ("training/train.py", ["--preset", "huge", "--run-dir", "OUT"], "invalid choice"),
        ("training/train.py", ["--steps", "0", "--run-dir", "OUT"], "--steps"),
        ("training/train.py", ["--region", "4,0,0,64", "--run-dir", "OUT"], "--region must be"),
        ("training/train.py", ["--region-weight", "-1", "--run-dir", "OUT"], "--region-weight"),
        ("training/evaluate.py", ["--data", "OUT"], "--checkpoint"),
        ("training/evaluate.py", ["--checkpoint", "OUT", "--data", "OUT", "--precision", "fp64"], "invalid choice"),
    ],
)
def test_bad_command_lines(tmp_path: Path, run_script, script: str, args: list[str], says: str) -> None:
    out = tmp_path / "out"
    proc = run_script(script, *[str(out) if x == "OUT" else x for x in args])
    assert says in one_error(proc)
    assert not out.exists()  # nothing written


def test_evaluate_bad_checkpoint_and_data(work: Path, resumed, run_script, tmp_path: Path) -> None:
    assert resumed.returncode == 0
    proc = run_script("training/evaluate.py", "--checkpoint", tmp_path / "missing", "--data", work / "heldout")
    assert "missing.safetensors" in one_error(proc)

    shutil.copy(work / "run" / "snapshot.json", tmp_path / "snap.json")
    w = (work / "run" / "snapshot.safetensors").read_bytes()
    (tmp_path / "snap.safetensors").write_bytes(w[: len(w) // 3])
    proc = run_script(
        "training/evaluate.py", "--checkpoint", tmp_path / "snap", "--data", work / "heldout", "--out", tmp_path / "out"
    )
    assert "snap.safetensors" in one_error(proc)
    assert not (tmp_path / "out").exists()

    bad = tmp_path / "bad-data"
    shutil.copytree(work / "heldout", bad)
    for f in bad.glob("ep_*.npz"):
        f.write_bytes(f.read_bytes()[:2000])
    before = file_bytes(bad)
    proc = run_script(
        "training/evaluate.py", "--checkpoint", work / "run" / "snapshot", "--data", bad, "--out", tmp_path / "out"
    )
    assert "no readable" in one_error(proc)
    assert "ep_000000.npz" in proc.stderr  # the warning names the damaged file
    assert file_bytes(bad) == before and not (tmp_path / "out").exists()


def test_kill_9_then_resume(work: Path, script_env, run_script) -> None:
    run, data = work / "killed", work / "data-kill"
    shutil.copytree(work / "data", data)
    cmd = [
        sys.executable,
        str(REPO / "training/train.py"),
        *TINY,
        "--steps",
        "1000",
        "--ckpt-every",
        "2",
        "--eval-every",
        "0",
        "--run-dir",
        str(run),
        "--data",
        str(data),
    ]
    proc = subprocess.Popen(cmd, cwd=REPO, env=script_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 1800
        while not (run / "state.json").exists():
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.time() < deadline, "no checkpoint within 30 minutes"
            time.sleep(0.2)
        time.sleep(1.0)  # kill somewhere in the following steps, possibly mid-checkpoint
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # Everything on disk still loads.
    saved = step_of(run)
    assert saved >= 2 and saved % 2 == 0
    WorldModel.from_snapshot(run / "snapshot", precision="fp32")
    episodes, errors = EpisodeStore(data).load_all()
    assert errors == [] and episodes
    res = run_script(
        "training/train.py",
        *TINY,
        "--steps",
        str(saved + 2),
        "--ckpt-every",
        "2",
        "--eval-every",
        "0",
        "--run-dir",
        run,
        "--data",
        data,
        "--resume",
    )
    assert res.returncode == 0, res.stderr
    assert f"at step {saved}" in res.stdout
    assert step_of(run) == saved + 2


def test_ddp_torchrun_gloo(work: Path, script_env) -> None:
    run = work / "ddp"
    cmd = [
        TORCHRUN,
        "--standalone",
        "--nproc_per_node=2",
        str(REPO / "training/train.py"),
        *TINY,
        "--steps",
        "4",
        "--ckpt-every",
        "2",
        "--eval-every",
        "0",
        "--device",
        "cpu",
        "--run-dir",
        str(run),
        "--data",
        str(work / "data"),
    ]
    proc = subprocess.run(cmd, cwd=REPO, env=script_env, capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert step_of(run) == 4
    assert WorldModel.from_snapshot(run / "snapshot", precision="fp32").meta["step"] == 4
