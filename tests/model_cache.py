"""LiteRT models for the tests, exported once and kept on disk.

Exporting a model means importing TensorFlow (20-40 s) and converting it. The
fixtures ask :func:`cached_models` instead: it returns the bytes from
``.pytest_cache/vane-models/<key>/`` and, when some are missing, runs
``build_models.py`` in a subprocess, so the test process itself never imports
TensorFlow. The key hashes the ModelSpec, the source of ``vane.server.model``
and of every ``vane`` module it imports (followed transitively), the builder
script and the installed TensorFlow version: change any of them and the models
are rebuilt. A file lock keeps parallel pytest processes from building the same
models twice, and the builder renames each file into place atomically.
"""

from __future__ import annotations

import ast
import fcntl
import hashlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

from vane.shared.spec import ModelSpec

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
BUILDER = TESTS / "build_models.py"
#: Builds TensorFlow's outputs on fixed inputs for :func:`cached_reference`.
REFERENCE_BUILDER = TESTS / "model_reference.py"
#: Where each ``vane`` subpackage lives in the checkout (pyproject's package-dir mapping).
PACKAGE_DIRS = {f"vane.{name}": REPO / name for name in ("client", "server", "shared", "simulations")}
#: The module whose exports are cached.
EXPORTER = "vane.server.model"
#: CPython 3.11's ast.parse is not thread-safe ("AST constructor recursion depth mismatch").
_PARSING = threading.Lock()


def cache_root() -> Path:
    """``$VANE_TEST_MODEL_CACHE`` if set, else ``.pytest_cache/vane-models`` in the checkout."""
    return Path(os.environ.get("VANE_TEST_MODEL_CACHE", REPO / ".pytest_cache" / "vane-models"))


def module_file(name: str) -> Path | None:
    """The source file of the ``vane`` module ``name`` in this checkout, or None when it is not one."""
    for package, folder in PACKAGE_DIRS.items():
        if name == package or name.startswith(package + "."):
            base = folder.joinpath(*name[len(package) :].split(".")[1:])
            for candidate in (base.with_suffix(".py"), base / "__init__.py"):
                if candidate.is_file():
                    return candidate
    return None


def _imported_names(path: Path, module: str) -> Iterator[str]:
    """Every module name ``path`` imports, at any depth, ``from a import b`` giving ``a`` and ``a.b``."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    with _PARSING:
        tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def source_closure(module: str) -> list[Path]:
    """The files of ``module`` and of every ``vane`` module it imports, transitively, sorted."""
    seen: dict[str, Path] = {}
    todo = [module]
    while todo:
        name = todo.pop()
        path = module_file(name)
        if path is None or name in seen:
            continue
        seen[name] = path
        todo.extend(_imported_names(path, name))
        todo.append(name.rpartition(".")[0])  # importing a module runs its package's __init__
    return sorted(set(seen.values()))


def _tensorflow_version() -> str:
    for dist in ("tensorflow-cpu", "tensorflow"):
        try:
            return f"{dist}=={metadata.version(dist)}"
        except metadata.PackageNotFoundError:
            continue
    return "tensorflow missing"


def cache_key(spec: ModelSpec) -> str:
    """A hash of everything that decides the exported bytes of a fresh model of ``spec``."""
    digest = hashlib.sha256()
    digest.update(f"{spec.hash}\n{_tensorflow_version()}\n".encode())
    for path in source_closure(EXPORTER):
        digest.update(path.relative_to(REPO).as_posix().encode() + b"\n" + path.read_bytes())
    digest.update(BUILDER.read_bytes())
    return f"{spec.hash}-{digest.hexdigest()[:16]}"


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def cached_models(spec: ModelSpec, kinds: Iterable[str]) -> dict[str, bytes]:
    """The exports of a fresh model of ``spec``, by kind, built in a subprocess when missing.

    Parameters
    ----------
    spec : ModelSpec
    kinds : iterable of {"training", "inference", "inference-f16", "inference-int8"}
    """
    kinds = list(kinds)
    folder = cache_root() / cache_key(spec)
    paths = {kind: folder / f"{kind}.tflite" for kind in kinds}
    if not all(p.is_file() for p in paths.values()):
        with _locked(folder.with_name(folder.name + ".lock")):
            missing = [kind for kind, p in paths.items() if not p.is_file()]
            if missing:
                _build(spec, folder, missing)
    return {kind: p.read_bytes() for kind, p in paths.items()}


def cached_reference(spec: ModelSpec) -> Path:
    """The ``.npz`` of fixed inputs and TensorFlow's outputs for a fresh model of ``spec`` (:mod:`model_reference`).

    Kept beside the cached models, named by a hash of the reference builder and of ``model_inputs.py``,
    and built in a subprocess (TensorFlow) when missing.
    """
    folder = cache_root() / cache_key(spec)
    scripts = hashlib.sha256(REFERENCE_BUILDER.read_bytes() + (TESTS / "model_inputs.py").read_bytes())
    path = folder / f"reference-{scripts.hexdigest()[:12]}.npz"
    if not path.is_file():
        with _locked(folder.with_name(folder.name + ".lock")):
            if not path.is_file():
                folder.mkdir(parents=True, exist_ok=True)
                command = [sys.executable, str(REFERENCE_BUILDER), json.dumps(spec.to_dict()), str(path)]
                done = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=REPO)
                if done.returncode != 0:
                    raise RuntimeError(f"building the reference of spec {spec.hash} failed:\n{done.stderr[-4000:]}")
    return path


def _build(spec: ModelSpec, folder: Path, kinds: list[str]) -> None:
    command = [sys.executable, str(BUILDER), json.dumps(spec.to_dict()), str(folder), *kinds]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=REPO)
    if done.returncode != 0:
        raise RuntimeError(f"building test models {kinds} of spec {spec.hash} failed:\n{done.stderr[-4000:]}")
