"""Install the original Safety-Gymnasium 1.0.0 into the running interpreter, patched for 3.11.

`make crosscheck` runs this once with the cross-check virtualenv's Python (`.venv-crosscheck`,
see the Makefile) so that `scripts/crosscheck.py` can run a policy exported from this project on
the original tasks. The main project venv never imports Safety-Gymnasium.

Why the steps:

- safety-gymnasium 1.0.0 pins pygame 2.1.0, which has no wheel for Python 3.11 (building it
  needs SDL headers). pygame is only used for human rendering, never imported by the tasks, so
  the dependencies are installed explicitly with pygame 2.1.3 (which has a 3.11 wheel), then
  safety-gymnasium itself with `--no-deps`. The other pins are the package's own.
- On Python 3.11, `dataclasses` refuses unhashable defaults, and about 12 asset classes under
  `safety_gymnasium/assets` declare `color: np.array = COLOR['...']` (a NumPy array): importing
  the package fails with "mutable default <class 'numpy.ndarray'> for field color is not
  allowed". `patch_source` rewrites such defaults to `field(default_factory=lambda: <expr>)`.
  The factory evaluates the same expression, so every instance gets the same value as before
  (for `COLOR[...]` even the same array object); only the class-level default disappears.
  The rewrite is idempotent: a patched file is left as it is.

Usage (the Makefile's `crosscheck-setup`):

    .venv-crosscheck/bin/python scripts/crosscheck_setup.py            # install, patch, verify
    .venv-crosscheck/bin/python scripts/crosscheck_setup.py --no-install  # patch, verify

Only the standard library is needed to patch (tests/test_crosscheck.py runs `patch_source`
in the main venv on a synthetic file).
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import subprocess
import sys
import time
from pathlib import Path

SAFETY_GYMNASIUM = "safety-gymnasium==1.0.0"
# safety-gymnasium 1.0.0's own requirements, with pygame 2.1.3 instead of 2.1.0 (no 3.11 wheel).
# numpy < 1.24 is gymnasium-robotics 1.2.2's pin, stated so that pip never picks a NumPy 2
# that mujoco 2.3.3's extension was not built for.
DEPENDENCIES = [
    "mujoco==2.3.3",
    "gymnasium==0.28.1",
    "gymnasium-robotics==1.2.2",
    "pygame==2.1.3",
    "numpy<1.24",
    "xmltodict>=0.13.0",
    "pyyaml>=6.0",
    "imageio>=2.27.0",
]
# NumPy calls whose result is a mutable array.
_ARRAY_FUNCTIONS = {"array", "asarray", "zeros", "ones", "full", "empty", "arange", "eye",
                    "linspace"}
_NUMPY_NAMES = {"np", "numpy"}
# Module-level dicts of NumPy arrays used as defaults (safety_gymnasium/assets/color.py).
_ARRAY_TABLES = {"COLOR"}
_VERIFY_ENV = "SafetyPointGoal1-v0"


def _is_dataclass_decorator(node: ast.expr) -> bool:
    target = node.func if isinstance(node, ast.Call) else node
    if isinstance(target, ast.Name):
        return target.id == "dataclass"
    return isinstance(target, ast.Attribute) and target.attr == "dataclass"


def _is_mutable_array_default(value: ast.expr) -> bool:
    """True for `np.array(...)`-like calls and `COLOR[...]` look-ups (both give an ndarray)."""
    if isinstance(value, ast.Call):
        func = value.func
        return (isinstance(func, ast.Attribute) and func.attr in _ARRAY_FUNCTIONS
                and isinstance(func.value, ast.Name) and func.value.id in _NUMPY_NAMES)
    if isinstance(value, ast.Subscript):
        return isinstance(value.value, ast.Name) and value.value.id in _ARRAY_TABLES
    return False


def _imports_field(tree: ast.Module) -> bool:
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module == "dataclasses":
            if any(alias.name == "field" and alias.asname is None for alias in node.names):
                return True
    return False


def _offset(lines: list[str], lineno: int, col: int) -> int:
    """Character offset of (1-based line, 0-based UTF-8 byte column) in the joined text."""
    line = lines[lineno - 1]
    return sum(len(x) for x in lines[: lineno - 1]) + len(line.encode()[:col].decode())


def patch_source(source: str) -> tuple[str, list[str]]:
    """Rewrite mutable NumPy dataclass defaults to default factories.

    Returns the new source and the `Class.field` names rewritten (empty when there was nothing
    to do, e.g. on an already patched file). Only annotated class attributes of classes
    decorated with `@dataclass` are touched; the text outside the rewritten expressions is kept
    byte for byte.
    """
    tree = ast.parse(source)
    edits: list[tuple[ast.expr, str]] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ClassDef):
            continue
        if not any(_is_dataclass_decorator(d) for d in node.decorator_list):
            continue
        for stmt in node.body:
            if (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
                    and stmt.value is not None and _is_mutable_array_default(stmt.value)):
                edits.append((stmt.value, f"{node.name}.{stmt.target.id}"))
    if not edits:
        return source, []
    lines = source.splitlines(keepends=True)
    new = source
    for value, _ in sorted(edits, key=lambda e: (e[0].lineno, e[0].col_offset), reverse=True):
        start = _offset(lines, value.lineno, value.col_offset)
        end = _offset(lines, value.end_lineno, value.end_col_offset)
        expr = source[start:end]
        new = new[:start] + f"field(default_factory=lambda: {expr})" + new[end:]
    if not _imports_field(tree):
        new = _add_field_import(new)
    ast.parse(new)  # the rewrite must stay valid Python
    return new, [name for _, name in edits]


def _add_field_import(source: str) -> str:
    """Insert `from dataclasses import field` after the last top-level import."""
    tree = ast.parse(source)
    imports = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    if not imports:
        raise ValueError("cannot place `from dataclasses import field`: the file has no import")
    lines = source.splitlines(keepends=True)
    at = imports[-1].end_lineno
    return "".join(lines[:at]) + "from dataclasses import field\n" + "".join(lines[at:])


def patch_tree(package_dir: Path) -> dict[str, list[str]]:
    """Patch every `.py` file under `package_dir/assets`; returns {file: fields rewritten}."""
    assets = package_dir / "assets"
    if not assets.is_dir():
        raise FileNotFoundError(f"{assets} not found: is {package_dir} a safety_gymnasium "
                                "package directory?")
    changed = {}
    for path in sorted(assets.rglob("*.py")):
        source = path.read_text()
        new, fields = patch_source(source)
        if fields:
            path.write_text(new)
            changed[str(path.relative_to(package_dir))] = fields
    return changed


def installed_package_dir() -> Path:
    """Where `safety_gymnasium` is installed for this interpreter (found without importing it)."""
    spec = importlib.util.find_spec("safety_gymnasium")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"safety_gymnasium is not installed for {sys.executable}; run without --no-install")
    return Path(list(spec.submodule_search_locations)[0])


def install() -> None:
    """pip-install the pinned dependencies, then safety-gymnasium itself without its pins."""
    pip = [sys.executable, "-m", "pip", "install", "--quiet"]
    subprocess.run(pip + DEPENDENCIES, check=True)
    subprocess.run(pip + ["--no-deps", SAFETY_GYMNASIUM], check=True)


def verify() -> None:
    """Import the patched package and build the paper's task (in a fresh interpreter)."""
    code = (f"import safety_gymnasium; env = safety_gymnasium.make({_VERIFY_ENV!r}); "
            f"obs, _ = env.reset(seed=0); print('ok:', {_VERIFY_ENV!r}, obs.shape)")
    subprocess.run([sys.executable, "-c", code], check=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-install", action="store_true",
                        help="only patch and verify an existing installation")
    args = parser.parse_args(argv)
    if not args.no_install and sys.version_info[:2] > (3, 11):
        raise SystemExit(f"mujoco 2.3.3 has wheels for Python 3.8-3.11, this is "
                         f"{sys.version.split()[0]}: make the venv with a Python 3.11 "
                         "(make crosscheck XC_PYTHON=python3.11)")
    t0 = time.perf_counter()
    if not args.no_install:
        install()
    package_dir = installed_package_dir()
    changed = patch_tree(package_dir)
    for name, fields in changed.items():
        print(f"patched {name}: {', '.join(fields)}")
    print(f"{len(changed)} files patched in {package_dir}" if changed
          else f"nothing to patch in {package_dir} (already patched)")
    verify()
    print(f"cross-check environment ready in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
