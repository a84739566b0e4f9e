"""Imports run one way (docs/design.md §7): games <- model <- training; the server stands on model
and games, never on training; training never reaches into the server.

Every .py file of the four packages is parsed with `ast`; every import counts, wherever it sits (top
of the file, inside a function, under `if TYPE_CHECKING:`), and so does `importlib.import_module` /
`__import__` with a literal name. Relative imports are resolved against the file's package.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

FORBIDDEN = {
    "games": {"model", "training", "server"},
    "model": {"training", "server"},
    "server": {"training"},
    "training": {"server"},
}
"""Layer -> the top-level packages its files must not import."""


def imported_modules(source: str, package: str) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import in a file whose package is `package`."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # from .x import y / from .. import z
                parts = package.split(".")
                base = parts[: max(0, len(parts) - node.level + 1)]
                module = ".".join([*base, module] if module else base)
            yield node.lineno, module
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                yield node.lineno, node.args[0].value


def violations(root: Path) -> list[str]:
    """'path:line: layer imports module' for every import against FORBIDDEN under `root`."""
    found = []
    for layer, banned in FORBIDDEN.items():
        for path in sorted((root / layer).rglob("*.py")):
            rel = path.relative_to(root)
            package = ".".join(rel.parts[:-1])  # games/sub/x.py and games/sub/__init__.py: games.sub
            for line, module in imported_modules(path.read_text(encoding="utf-8"), package):
                if module.split(".")[0] in banned:
                    found.append(f"{rel.as_posix()}:{line}: {layer} imports {module}")
    return found


def test_imports_run_one_way() -> None:
    found = violations(ROOT)
    assert not found, "imports against the layers (docs/design.md §7):\n" + "\n".join(found)


def test_every_layer_has_files_to_check() -> None:
    for layer in FORBIDDEN:
        assert len(list((ROOT / layer).rglob("*.py"))) > 1, layer


def test_the_check_sees_every_form_of_import(tmp_path: Path) -> None:
    files = {
        "games/__init__.py": "from .envs import make_env\nfrom . import files\n",
        "games/envs.py": "import numpy as np\nimport training.data\n",
        "games/sub/deep.py": (
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n"
            "    from model.world_model import WorldModel\n"
            "def later():\n"
            "    from server import app\n"
            "    import importlib\n"
            "    return importlib.import_module('training.envs'), __import__('server.viewer')\n"
            "from .. import envs\n"
        ),
        "model/m.py": "def f():\n    from training.data import WindowSampler\n",
        "server/s.py": "from games.envs import make_env\nfrom model import m\nfrom training import collect\n",
        "training/t.py": "from server.app import create_app\nfrom games import envs\nfrom model import m\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert sorted(violations(tmp_path)) == sorted(
        [
            "games/envs.py:2: games imports training.data",
            "games/sub/deep.py:3: games imports model.world_model",
            "games/sub/deep.py:5: games imports server",
            "games/sub/deep.py:7: games imports training.envs",
            "games/sub/deep.py:7: games imports server.viewer",
            "model/m.py:2: model imports training.data",
            "server/s.py:3: server imports training",
            "training/t.py:1: training imports server.app",
        ]
    )
