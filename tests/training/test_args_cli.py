"""training/cli.py: a dataclass of arguments -> its command line (flags, types, defaults, choices, help)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import pytest

from training.cli import dataclass_parser, field_docs, recorded_defaults


@dataclass
class Toy:
    """Not a field's help."""

    name: str = "Breakout"
    """ALE game name (100% of it)."""
    steps: int = 10
    lr: float = 1e-3
    out: Path | None = None
    """Output folder."""
    weight: float | None = None
    source: str | None = None
    fast: bool = False
    on_prediction: bool | None = None


def parser() -> argparse.ArgumentParser:
    return dataclass_parser(Toy, choices={"source": ["target", "context"]}, prog="toy")


def parse(*argv: str) -> Toy:
    return Toy(**vars(parser().parse_args(list(argv))))


def test_defaults_are_the_dataclass_defaults() -> None:
    assert parse() == Toy()


def test_values_are_parsed_to_the_annotated_types() -> None:
    a = parse(
        "--name", "Pong", "--steps", "5", "--lr", "2", "--out", "runs/x", "--weight", "0.5",
        "--source", "context", "--fast", "--no-on-prediction",
    )  # fmt: skip
    assert a == Toy("Pong", 5, 2.0, Path("runs/x"), 0.5, "context", True, False)
    assert type(a.steps) is int and type(a.lr) is float and isinstance(a.out, Path) and type(a.weight) is float
    assert parse("--on-prediction").on_prediction is True and parse("--no-fast").fast is False


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--source", "both"], "argument --source: invalid choice: 'both'"),
        (["--steps", "1.5"], "argument --steps: invalid int value: '1.5'"),
        (["--weight", "heavy"], "argument --weight: invalid float value: 'heavy'"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_values_exit_2_naming_the_flag(capsys: pytest.CaptureFixture, argv: list[str], says: str) -> None:
    with pytest.raises(SystemExit) as e:
        parse(*argv)
    assert e.value.code == 2
    assert says in capsys.readouterr().err


def test_help_is_the_field_docstring() -> None:
    assert field_docs(Toy) == {"name": "ALE game name (100% of it).", "out": "Output folder."}
    text = parser().format_help()
    assert "ALE game name (100% of it)." in text and "Output folder." in text
    assert "--fast, --no-fast" in text and "{target,context}" in text


@dataclass
class FastToy(Toy):
    """A subclass that changes a default and adds a field."""

    name: str = "Pong"
    extra: int = 1
    """Its own field."""


def test_a_subclass_keeps_its_bases_help_and_takes_its_own_defaults() -> None:
    assert field_docs(FastToy) == {**field_docs(Toy), "extra": "Its own field."}
    p = dataclass_parser(FastToy, prog="fast")
    text = p.format_help()
    assert "ALE game name (100% of it)." in text and "Its own field." in text
    assert FastToy(**vars(p.parse_args([]))) == FastToy(name="Pong", extra=1)


def test_choices_for_a_field_that_does_not_exist() -> None:
    with pytest.raises(ValueError, match="sources"):
        dataclass_parser(Toy, choices={"sources": ["target"]})


def test_recorded_settings_are_the_defaults_flags_given_again_win() -> None:
    """A run's args.json (old runs wrote every value as a string) fills in what is not given again."""
    old_style = {"name": "Pong", "steps": "40", "lr": "0.0001", "out": "runs/x", "weight": "None", "fast": "True"}
    p = parser()
    p.set_defaults(**recorded_defaults(Toy, {**old_style, "gone": "1"}, skip=("steps",)))
    a = Toy(**vars(p.parse_args(["--lr", "0.5"])))
    assert a == Toy(name="Pong", steps=10, lr=0.5, out=Path("runs/x"), weight=None, fast=True)
    native = {"steps": 40, "lr": 1e-4, "weight": 2.0, "on_prediction": False, "source": None}
    assert recorded_defaults(Toy, native) == native


@pytest.mark.parametrize("record", [{"steps": "many"}, {"fast": "yes"}, {"lr": [1]}])
def test_a_bad_recorded_setting_names_its_field(record: dict) -> None:
    (name,) = record
    with pytest.raises(ValueError, match=f"recorded argument {name}="):
        recorded_defaults(Toy, record)
