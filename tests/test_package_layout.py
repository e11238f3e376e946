"""Only runtime code ships in the wheel (and so in every MLflow package).

A function or class that only benchmarks or tests call belongs in ``benchmarks/`` (importable
from tests through pytest's ``pythonpath``) or in the tests, not in ``two_tower_recsys``: every
top-level function and class of the package must be used by the package itself, its packaged
configs or its entry points.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from pathlib import Path

import two_tower_recsys

PACKAGE = Path(two_tower_recsys.__file__).parent
REPOSITORY = Path(__file__).parents[1]
# Public API for people, not for the package itself: composing the real config outside a Hydra
# run (a notebook; its docstring says so), and the README's way to open the exported ONNX file.
FOR_USERS = {"compose_settings", "scoring_session"}
# "module:name", how uvicorn (an app factory) and entry points name a callable.
IMPORT_STRING = re.compile(r"[\w.]+:(\w+)")


def _top_level_definitions(tree: ast.Module) -> list[str]:
    return [
        node.name
        for node in tree.body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
    ]


def _used_names(tree: ast.Module) -> Counter[str]:
    """Every name the code reads: plain names, attributes, imported names and import strings."""
    used: Counter[str] = Counter()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            used[node.id] += 1
        elif isinstance(node, ast.Attribute):
            used[node.attr] += 1
        elif isinstance(node, ast.ImportFrom):
            used.update(alias.name for alias in node.names)
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and (named := IMPORT_STRING.fullmatch(node.value))
        ):
            used[named.group(1)] += 1
    return used


def test_every_top_level_function_and_class_is_used_by_the_package():
    trees = {path: ast.parse(path.read_text()) for path in sorted(PACKAGE.rglob("*.py"))}
    used = sum((_used_names(tree) for tree in trees.values()), Counter())
    # Names that configs (logging handlers) and entry points give as text.
    text = "\n".join(
        path.read_text()
        for path in [*(REPOSITORY / "configs").rglob("*.yaml"), REPOSITORY / "pyproject.toml"]
    )
    unused = [
        f"{path.relative_to(PACKAGE)}: {name}"
        for path, tree in trees.items()
        for name in _top_level_definitions(tree)
        if not used[name] and name not in FOR_USERS and not re.search(rf"\b{name}\b", text)
    ]
    assert unused == []
