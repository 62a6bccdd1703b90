"""The library stands alone: it imports nothing of the project's scripts, installs only itself, and
importing any module leaves the environment as it was."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import tomllib

from tests.helpers import ROOT


def _imported(path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module and not n.level}
    return {n.split(".")[0] for n in names}


def test_the_library_imports_neither_stages_nor_flows():
    offenders = {p.relative_to(ROOT).as_posix(): sorted(_imported(p) & {"stages", "flows", "tools", "tests"})
                 for p in (ROOT / "biotrain").rglob("*.py")}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_only_the_library_is_installed():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert config["tool"]["setuptools"]["packages"]["find"]["include"] == ["biotrain*"]


def test_importing_any_module_leaves_the_environment_alone():
    """A side effect at import would reach every process that imports the library (workers,
    notebooks); what a stage sets for its services it sets when it runs."""
    modules = sorted({".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
                      for folder in ("biotrain", "stages", "flows") for p in (ROOT / folder).rglob("*.py")})
    # the libraries it builds on may set their own (OpenMP's KMP_*): loaded first, not counted
    third_party = ["torch", "numpy", "pandas", "sklearn", "mne", "moabb", "mlflow", "prefect", "distributed",
                   "matplotlib", "ortools", "yaml", "tqdm"]
    code = ("import importlib, json, os, sys\n"
            f"for m in {third_party!r}: importlib.import_module(m)\n"
            "before = dict(os.environ)\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            "after = dict(os.environ)\n"
            "print(json.dumps({k: [before.get(k), after.get(k)] for k in set(before) | set(after) "
            "if before.get(k) != after.get(k)}))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {}
