"""The shape of the code, checked on its source: layers, string imports, module sizes.

The layers go one way, ``dashboard -> registry -> hitsong``: the library never imports
``registry`` or ``dashboard`` (nor mlflow or streamlit), ``registry`` never imports ``dashboard``
(nor streamlit). Every import statement of every module is read from its syntax tree, those inside
functions included, so a lazy import cannot hide an upward one. No project module is imported by
a string (``importlib.import_module``, ``__import__``): sub-commands come from entry points.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Package -> its layer (higher may import lower, never the reverse).
LAYERS = {"hitsong": 0, "registry": 1, "dashboard": 2}
#: Third-party packages that belong to one layer and above.
OWNED = {"mlflow": 1, "streamlit": 2}
#: Largest module, in lines ("rooms of a readable size").
MAX_MODULE_LINES = 500


def _modules() -> list[Path]:
    return sorted(p for package in LAYERS for p in (ROOT / package).rglob("*.py"))


def _imported(tree: ast.AST) -> list[tuple[int, str]]:
    """``(line, top-level package)`` of every import statement, relative ones excluded."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module.split(".")[0]))
    return out


def _layer_violations(path: Path, root: Path = ROOT) -> list[str]:
    own = LAYERS[path.relative_to(root).parts[0]]
    bad = []
    for line, top in _imported(ast.parse(path.read_text(), filename=str(path))):
        above = LAYERS.get(top, OWNED.get(top, -1))
        if above > own:
            bad.append(f"{path.relative_to(root)}:{line} imports {top} (a layer above)")
    return bad


def _string_imports(path: Path, root: Path = ROOT) -> list[str]:
    bad = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if name in ("import_module", "__import__"):
            bad.append(f"{path.relative_to(root)}:{node.lineno} imports by string ({name})")
    return bad


def test_every_import_goes_down_the_layers() -> None:
    violations = [v for path in _modules() for v in _layer_violations(path)]
    assert not violations, "\n".join(violations)


def test_no_module_is_imported_by_string() -> None:
    violations = [v for path in _modules() for v in _string_imports(path)]
    assert not violations, "\n".join(violations)


def test_modules_stay_a_readable_size() -> None:
    sizes = {p.relative_to(ROOT): len(p.read_text().splitlines()) for p in _modules()}
    big = {str(p): n for p, n in sizes.items() if n > MAX_MODULE_LINES}
    assert not big, f"modules over {MAX_MODULE_LINES} lines: {big}; split them by concern"


@pytest.mark.parametrize(
    ("source", "package", "expected"),
    [
        ("import registry.models\n", "hitsong", 1),
        ("def f():\n    from dashboard import data\n", "registry", 1),
        ("def f():\n    import mlflow\n", "hitsong", 1),
        ("import streamlit as st\n", "registry", 1),
        ("from hitsong.errors import HitsongError\nimport mlflow\n", "registry", 0),
        ("from . import sibling\n", "hitsong", 0),
    ],
)
def test_the_layer_check_catches_an_upward_import(tmp_path: Path, source: str, package: str, expected: int) -> None:
    module = tmp_path / package / "probe.py"  # a module of that package, outside the checkout
    module.parent.mkdir()
    module.write_text(source)
    assert len(_layer_violations(module, root=tmp_path)) == expected


def test_the_string_import_check_catches_import_module(tmp_path: Path) -> None:
    module = tmp_path / "hitsong" / "probe.py"
    module.parent.mkdir()
    module.write_text("import importlib\nimportlib.import_module('registry.server')\n__import__('dashboard')\n")
    assert len(_string_imports(module, root=tmp_path)) == 2
