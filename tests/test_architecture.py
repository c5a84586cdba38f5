"""The package map holds: who may import whom, no TensorFlow on the device, small modules.

The rules (ARCHITECTURE.md): ``shared`` imports nothing above it (numpy and the standard
library only); ``client`` imports ``shared``; ``server`` imports ``shared`` (never the client,
never the simulations); ``simulations`` may import everything. Every ``.py`` file of the four
packages is parsed, and every import counts: at module level, inside functions, relative
imports, and ``importlib.import_module("vane…")`` / ``__import__("vane…")`` with a literal name.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("client", "server", "shared", "simulations")
#: The ``vane`` packages each package may import (itself included).
ALLOWED = {
    "shared": {"shared"},
    "client": {"client", "shared"},
    "server": {"server", "shared"},
    "simulations": set(PACKAGES),
}
#: Third-party modules ``shared`` may import, besides the standard library.
SHARED_THIRD_PARTY = {"numpy"}
#: Modules the device SDK must never import.
NOT_ON_THE_DEVICE = {"tensorflow", "keras", "tf_keras"}
MAX_MODULE_LINES = 400


@dataclass(frozen=True)
class Import:
    """One import in one file: the module named, where, and on which line."""

    file: Path
    line: int
    module: str

    def __str__(self) -> str:
        return f"{self.file.relative_to(REPO)}:{self.line} imports {self.module}"


def library_files(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    parts = parts[:-1] if parts[-1] == "__init__" else parts
    return "vane." + ".".join(parts)


def imports_of(path: Path, source: str | None = None) -> Iterator[Import]:
    """Every module ``path`` imports, anywhere in the file, with relative imports made absolute.

    ``source`` stands in for the file's text (the checker's own test parses code it never writes).
    """
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    text = path.read_text(encoding="utf-8") if source is None else source
    for node in ast.walk(ast.parse(text, str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(path, node.lineno, alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            yield Import(path, node.lineno, base)
            if base == "vane":  # ``from vane import server`` names the package in the alias
                for alias in node.names:
                    yield Import(path, node.lineno, f"vane.{alias.name}")
        elif isinstance(node, ast.Call) and _is_dynamic_import(node.func):
            first = node.args[0] if node.args else None
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                yield Import(path, node.lineno, first.value)


def _is_dynamic_import(func: ast.expr) -> bool:
    if isinstance(func, ast.Name):
        return func.id in {"__import__", "import_module"}
    return isinstance(func, ast.Attribute) and func.attr == "import_module"


def vane_package(module: str) -> str | None:
    """``client`` for ``vane.client.tracker``; None outside ``vane``."""
    parts = module.split(".")
    return parts[1] if parts[0] == "vane" and len(parts) > 1 else None


def top_level(module: str) -> str:
    return module.split(".")[0]


def every_import(package: str) -> list[Import]:
    return [imp for path in library_files(package) for imp in imports_of(path)]


# -- the checker itself --------------------------------------------------------------------------


def test_the_checker_sees_imports_inside_functions_relative_and_dynamic() -> None:
    code = (
        "import importlib\n"
        "def f():\n"
        "    from vane.server import model\n"
        "    from ..simulations import demo\n"
        "    from vane import server\n"
        "    importlib.import_module('vane.server.cli')\n"
        "    __import__('tensorflow')\n"
    )
    found = [imp.module for imp in imports_of(REPO / "client" / "probe.py", code)]
    assert found == ["importlib", "vane.server", "vane.simulations", "vane", "vane.server", "vane.server.cli",
                     "tensorflow"]


# -- the import rules ----------------------------------------------------------------------------


@pytest.mark.parametrize("package", PACKAGES)
def test_each_package_imports_only_the_packages_below_it(package: str) -> None:
    crossings = [
        str(imp)
        for imp in every_import(package)
        if (target := vane_package(imp.module)) is not None and target not in ALLOWED[package]
    ]
    allowed = ", ".join(f"vane.{name}" for name in sorted(ALLOWED[package]))
    assert crossings == [], f"{package}/ may import only {allowed}:\n" + "\n".join(crossings)


def test_shared_needs_only_numpy_and_the_standard_library() -> None:
    allowed = set(sys.stdlib_module_names) | SHARED_THIRD_PARTY | {"vane"}
    foreign = [str(imp) for imp in every_import("shared") if top_level(imp.module) not in allowed]
    assert foreign == [], "shared/ may import only numpy and the standard library:\n" + "\n".join(foreign)


def test_the_device_sdk_never_imports_tensorflow() -> None:
    heavy = [str(imp) for imp in every_import("client") if top_level(imp.module) in NOT_ON_THE_DEVICE]
    assert heavy == [], "the device SDK must stay free of TensorFlow:\n" + "\n".join(heavy)


def test_no_library_module_is_over_400_lines() -> None:
    sizes = {
        str(path.relative_to(REPO)): len(path.read_text(encoding="utf-8").splitlines())
        for package in PACKAGES
        for path in library_files(package)
    }
    oversized = {name: lines for name, lines in sorted(sizes.items()) if lines > MAX_MODULE_LINES}
    assert oversized == {}, f"modules over {MAX_MODULE_LINES} lines: {oversized}"


def test_importing_every_client_and_shared_module_loads_no_tensorflow() -> None:
    """The static check's runtime twin: nothing the device SDK imports pulls TensorFlow in, transitively."""
    modules = [module_name(path) for package in ("shared", "client") for path in library_files(package)]
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(sorted(m for m in {sorted(NOT_ON_THE_DEVICE)!r} if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)

    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
