"""Command lines from argument dataclasses (cleanrl's `Args`): one `--kebab-case` flag per field,
typed from its annotation, its default the field's, its help the docstring under the field.

    p = dataclass_parser(Args, choices={"preset": PRESETS}, description=__doc__)
    a = Args(**vars(p.parse_args(argv)))

`bool` fields get `--flag / --no-flag`; an `X | None` field parses its value as an X (None is
only ever its default); Path fields parse as Path. Checks beyond a type and a choice list stay
with the script (`p.error`) or the dataclass (`__post_init__`).

`add_guidance_flags` and `guidance_overrides`: the sampler's guidance flags of the commands that
dream (training/playability.py, training/evaluate.py, training/ship.py).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import textwrap
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any


def field_docs(cls: type) -> dict[str, str]:
    """The string literal under each field of a dataclass, by field name, its base classes' included
    (a subclass that gives a field another default without a docstring keeps the base's help);
    {} for a class without source."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is object:
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body
        for node, nxt in zip(body, body[1:]):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                docs[node.target.id] = inspect.cleandoc(nxt.value.value)
    return docs


def flag_type(annotation: Any) -> type:
    """int, float, str, bool, Path...: the annotation with `| None` taken off."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [t for t in typing.get_args(annotation) if t is not type(None)]
        if len(args) != 1:
            raise TypeError(f"no command-line type for {annotation}: only X and X | None")
        return args[0]
    return annotation


def dataclass_parser(
    cls: type, choices: Mapping[str, Sequence[str]] | None = None, **parser_kwargs: Any
) -> argparse.ArgumentParser:
    """An ArgumentParser with one flag per field of the dataclass `cls`; `choices` by field name.
    parser_kwargs go to ArgumentParser (prog, description, formatter_class...)."""
    choices = dict(choices or {})
    unknown = set(choices) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ValueError(f"choices given for {sorted(unknown)}, not fields of {cls.__name__}")
    hints, docs = typing.get_type_hints(cls), field_docs(cls)
    p = argparse.ArgumentParser(**parser_kwargs)
    for f in dataclasses.fields(cls):
        kind = flag_type(hints[f.name])
        kw: dict[str, Any] = {"help": docs[f.name].replace("%", "%%") if f.name in docs else None}
        if f.default is not dataclasses.MISSING:
            kw["default"] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            kw["default"] = f.default_factory()
        else:
            kw["required"] = True
        if kind is bool:
            kw["action"] = argparse.BooleanOptionalAction
        else:
            kw["type"] = kind
        if f.name in choices:
            kw["choices"] = choices[f.name]
        p.add_argument("--" + f.name.replace("_", "-"), **kw)
    return p


def recorded_defaults(cls: type, record: Mapping[str, Any], skip: Sequence[str] = ()) -> dict[str, Any]:
    """A run's recorded arguments (its `args.json`) as typed defaults for `dataclass_parser(cls)`:
    `p.set_defaults(**recorded_defaults(Args, record))` then `p.parse_args(argv)` gives the recorded
    value for every flag not given again. Values may be JSON-native or strings (older records
    wrote `str(v)`: 'None', 'True', '8.0'); keys that are not fields of `cls`, and `skip`, are left out.
    A value that does not parse as its field's type raises ValueError naming the field."""
    hints, names = typing.get_type_hints(cls), {f.name for f in dataclasses.fields(cls)}
    out: dict[str, Any] = {}
    for name, raw in record.items():
        if name not in names or name in skip:
            continue
        kind = flag_type(hints[name])
        try:
            if raw is None or raw == "None":
                value = None
            elif kind is bool:
                if str(raw) not in ("True", "False", "true", "false"):
                    raise ValueError(raw)
                value = str(raw).lower() == "true"
            else:
                value = kind(raw)
        except (TypeError, ValueError) as e:
            raise ValueError(f"recorded argument {name}={raw!r} is not a {kind.__name__}") from e
        out[name] = value
    return out


# -- the dreaming commands' flags (training/playability.py, evaluate.py, ship.py) -------------------------
def add_backend_flag(p: argparse.ArgumentParser) -> None:
    """--backend: the denoiser backend a measurement runs (`shipping.measure_with_backend`)."""
    from training.world_model.shipping import MEASURED_BACKENDS

    p.add_argument(
        "--backend",
        choices=MEASURED_BACKENDS,
        default="torch",
        help="the denoiser's backend (onnx-int8 calibrated on real play, as the server does it)",
    )


def add_precision_flag(p: argparse.ArgumentParser, help_text: str) -> None:
    """--precision auto|bf16|fp32 (model/device.use_bf16): the arithmetic a measurement dreams in."""
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto", help=help_text)


def add_guidance_flags(p: argparse.ArgumentParser, help_g: str) -> None:
    """--action-guidance G, --guidance-sigma S, --guidance-reference and --still-band GREY
    (model/world_model/sampler.SamplerConfig), all optional."""
    p.add_argument("--action-guidance", type=float, default=None, metavar="G", help=help_g)
    p.add_argument("--guidance-sigma", type=float, default=None, metavar="S", help="guide the steps at noise >= S")
    p.add_argument(
        "--guidance-reference",
        default=None,
        metavar="ACTION",
        help="the action the guidance contrasts with (name or index; NOOP by default; Breakout: FIRE also "
        "pushes dreams that do not press FIRE away from a serve)",
    )
    p.add_argument(
        "--still-band",
        type=float,
        default=None,
        metavar="GREY",
        help="keep a pixel at its last context value where the dream moves it by less than GREY grey levels "
        "(of 255) in every channel (0 = off; default: the model's own setting)",
    )


def guidance_overrides(p: argparse.ArgumentParser, a: argparse.Namespace) -> dict[str, float | str]:
    """The guidance flags that were given, as `WorldModel.sampler_config` overrides (p.error if < 0);
    the reference action stays a name or index string, resolved against the model's actions."""
    flags = {"action_guidance": a.action_guidance, "guidance_sigma": a.guidance_sigma, "still_band": a.still_band}
    given: dict[str, float | str] = {k: v for k, v in flags.items() if v is not None}
    if any(v < 0 for v in given.values()):
        p.error("--action-guidance, --guidance-sigma and --still-band must be >= 0")
    if a.still_band is not None and a.still_band >= 255:
        p.error(f"--still-band is in grey levels (of 255), got {a.still_band}")
    if a.guidance_reference is not None:
        given["guidance_reference"] = a.guidance_reference
    return given
