"""Write ``dvc.yaml``'s per-stage ``deps`` (code) and ``params`` lists from what each stage runs.

    python tools/sync_dvc.py           # rewrite dvc.yaml's lists in place
    python tools/sync_dvc.py --check   # exit 1 and show the difference if dvc.yaml is out of date

Code: every project file a stage's script can load, found by following its imports (also those
inside functions) through ``stages/``, ``flows/`` and ``biotrain/``, with the data files of the
packages it reaches (``gap9.yaml``, the C sources); a folder is named whole when every file in it
counts (the library is always named whole, see ``collapse``). Parameters: ``biotrain.params.stage_params``, from the parameter declarations. The stages'
data dependencies (``data/windows`` ...) are kept as written. A hand-kept list goes stale silently:
a changed file the list misses leaves old results in place.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = "biotrain"
CODE_ROOTS = (LIBRARY, "stages", "flows")
IGNORED = ("__pycache__",)


def _module_file(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Module names ``path`` may import, anywhere in it (a package's lazy ``import_module`` of its
    submodules counts as importing them all)."""
    tree = ast.parse(path.read_text())
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.add(module)
            found |= {f"{module}.{a.name}" for a in node.names}
    if path.name == "__init__.py" and "import_module" in path.read_text():
        found |= {_module_name(p) for p in path.parent.glob("*.py")}
    return {m for m in found if m.split(".")[0] in CODE_ROOTS}


def _with_parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def _data_files(package_dir: Path) -> set[Path]:
    """Non-Python files a package ships: beside its modules, and in its sub-folders without modules."""
    files = {p for p in package_dir.iterdir() if p.is_file() and p.suffix not in (".py", ".pyc")}
    for sub in package_dir.iterdir():
        if sub.is_dir() and sub.name not in IGNORED and not (sub / "__init__.py").exists():
            files |= {p for p in sub.rglob("*") if p.is_file() and not any(i in p.parts for i in IGNORED)}
    return files


def code_files(script: str) -> set[Path]:
    """Every project file the stage script ``script`` (e.g. ``stages/adapt.py``) can load."""
    todo, seen = [ROOT / script], set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for module in _imports(path):
            for name in _with_parents(module):
                file = _module_file(name)
                if file is not None and file not in seen:
                    todo.append(file)
    packages = {p.parent for p in seen if p.name == "__init__.py"}
    return seen | {f for d in packages for f in _data_files(d)}


def _all_files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file() and not any(i in p.parts for i in IGNORED)
            and p.suffix != ".pyc"}


def collapse(files: set[Path]) -> list[str]:
    """Paths relative to the project, a folder named instead of its files when all of them count.

    The library is named whole: its packages import each other at module level (the parameter
    declarations reach the training code, the study settings the device model), so every stage
    loads most of it, and a partial list would be one new import away from stale."""
    out: set[Path] = set()
    for f in files:
        if f.relative_to(ROOT).parts[0] == LIBRARY:
            out.add(ROOT / LIBRARY)
            continue
        top = f
        for parent in f.relative_to(ROOT).parents:
            folder = ROOT / parent
            if parent == Path(".") or folder.name in CODE_ROOTS and folder.parent == ROOT:
                break
            if _all_files(folder) <= files:
                top = folder
        out.add(top)
    names = sorted(p.relative_to(ROOT).as_posix() for p in out)
    return [n for n in names if not any(n.startswith(o + "/") for o in names if o != n)]


def stage_scripts(dvc: dict) -> dict[str, str]:
    """Each stage's script, from its command (``python -m stages.<name>``)."""
    out = {}
    for name, stage in dvc["stages"].items():
        match = re.search(r"-m (stages\.\w+)", stage["cmd"])
        if not match:
            raise ValueError(f"stage {name}: command {stage['cmd']!r} does not run a module of stages/")
        out[name] = match.group(1).replace(".", "/") + ".py"
    return out


def code_deps(dvc: dict) -> dict[str, list[str]]:
    return {name: collapse(code_files(script)) for name, script in stage_scripts(dvc).items()}


def _is_code(dep: str) -> bool:
    return dep.split("/")[0] in CODE_ROOTS


def _replace_list(lines: list[str], start: int, end: int, key: str, items: list[str]) -> list[str]:
    """Lines [start, end) of one stage, with its ``key:`` list replaced by ``items``."""
    block = lines[start:end]
    head = next((i for i, line in enumerate(block) if line.strip() == f"{key}:"), None)
    if head is None:
        raise ValueError(f"a stage at line {start + 1} has no {key}: list")
    stop = head + 1
    while stop < len(block) and block[stop].lstrip().startswith(("- ", "#")) and \
            len(block[stop]) - len(block[stop].lstrip()) > len(block[head]) - len(block[head].lstrip()):
        stop += 1
    indent = " " * (len(block[head]) - len(block[head].lstrip()) + 2)
    return lines[:start] + block[:head + 1] + [f"{indent}- {item}" for item in items] + block[stop:] + lines[end:]


def render(text: str) -> str:
    """``dvc.yaml``'s text with every stage's code deps and params lists as they should be."""
    import yaml

    sys.path.insert(0, str(ROOT))
    from biotrain.params import stage_params

    dvc = yaml.safe_load(text)
    deps = code_deps(dvc)
    lines = text.splitlines()
    for name, stage in dvc["stages"].items():
        for key, items in (("deps", deps[name] + [d for d in stage["deps"] if not _is_code(d)]),
                           ("params", stage_params(name))):
            start = next(i for i, line in enumerate(lines) if re.match(rf"^  {re.escape(name)}:", line))
            end = next((i for i in range(start + 1, len(lines)) if re.match(r"^  \S", lines[i])), len(lines))
            lines = _replace_list(lines, start, end, key, items)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report whether dvc.yaml is up to date")
    args = parser.parse_args(argv)
    path = ROOT / "dvc.yaml"
    text = path.read_text()
    new = render(text)
    if new == text:
        print("dvc.yaml: deps and params are up to date")
        return 0
    if args.check:
        sys.stdout.writelines(difflib.unified_diff(text.splitlines(True), new.splitlines(True), "dvc.yaml",
                                                   "dvc.yaml (generated)"))
        print("dvc.yaml is out of date: run `python tools/sync_dvc.py`", file=sys.stderr)
        return 1
    path.write_text(new)
    print("dvc.yaml: deps and params rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
