"""The simulations use the device SDK only through its public names.

The evaluation replays people through the tracker's own predictor; it must do so through public
API (``tracker.model``, ``tracker.predictor``, ``tracker.new_personal_state()`` …), never through
the tracker's private state, so the client can change its insides without breaking the lab.

Every ``.py`` file under ``simulations/`` is parsed. It fails on:

- ``from vane.client… import _name`` or an import of a private ``vane.client`` module;
- an attribute ``_name`` (not a dunder) read from anything that comes from ``vane.client``: a name
  imported from it, a variable assigned from or annotated with such a thing (``tracker =
  InterestTracker.open(…)``, ``tracker: InterestTracker``, ``with … as tracker``), the return
  value of a function annotated to return one, or any variable whose name contains ``tracker``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CLIENT = "vane.client"


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _root(node: ast.AST) -> str | None:
    """The leftmost name of ``a.b(c)[d].e``; None for anything else (a literal, a lambda …)."""
    while True:
        if isinstance(node, ast.Name):
            return node.id
        if isinstance(node, (ast.Attribute, ast.Subscript)):
            node = node.value
        elif isinstance(node, ast.Call):
            node = node.func
        elif isinstance(node, ast.Await):
            node = node.value
        else:
            return None


def _names_in(node: ast.AST | None) -> set[str]:
    if node is None:
        return set()
    names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
    # String annotations ("InterestTracker") under ``from __future__ import annotations`` stay names.
    for const in ast.walk(node):
        if isinstance(const, ast.Constant) and isinstance(const.value, str):
            try:
                names |= _names_in(ast.parse(const.value, mode="eval"))
            except SyntaxError:
                pass
    return names


def _bound_targets(target: ast.AST) -> list[str]:
    return [n.id for n in ast.walk(target) if isinstance(n, ast.Name)]


def client_names(tree: ast.AST) -> set[str]:
    """Names in ``tree`` that hold something from ``vane.client`` (a fixpoint over the whole file)."""
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(CLIENT):
            bound |= {alias.asname or alias.name for alias in node.names}
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(CLIENT):
                    bound.add(alias.asname or alias.name.split(".")[0])

    def holds_client(expr: ast.AST | None) -> bool:
        return expr is not None and _root(expr) in bound

    changed = True
    while changed:
        size = len(bound)
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if _names_in(node.returns) & bound:
                    bound.add(node.name)
                args = [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]
                bound |= {a.arg for a in args if _names_in(a.annotation) & bound}
            elif isinstance(node, ast.Assign) and holds_client(node.value):
                for target in node.targets:
                    bound.update(_bound_targets(target))
            elif isinstance(node, ast.AnnAssign) and (holds_client(node.value) or _names_in(node.annotation) & bound):
                bound.update(_bound_targets(node.target))
            elif isinstance(node, ast.withitem) and node.optional_vars is not None and holds_client(node.context_expr):
                bound.update(_bound_targets(node.optional_vars))
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) and "tracker" in node.id.lower():
                bound.add(node.id)
            elif isinstance(node, ast.arg) and "tracker" in node.arg.lower():
                bound.add(node.arg)
        changed = len(bound) != size
    return bound


def private_client_access(source: str, filename: str = "<source>") -> list[str]:
    """Every private name of the client that ``source`` imports or reads, as ``file:line: what``."""
    tree = ast.parse(source, filename)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(CLIENT):
            if any(_is_private(part) for part in node.module.split(".")):
                found.append(f"{filename}:{node.lineno}: imports private module {node.module}")
            found += [f"{filename}:{node.lineno}: imports {node.module}.{alias.name}"
                      for alias in node.names if _is_private(alias.name)]
        elif isinstance(node, ast.Import):
            found += [f"{filename}:{node.lineno}: imports private module {alias.name}" for alias in node.names
                      if alias.name.startswith(CLIENT) and any(_is_private(p) for p in alias.name.split("."))]
    bound = client_names(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _is_private(node.attr) and _root(node.value) in bound:
            found.append(f"{filename}:{node.lineno}: reads {ast.unparse(node)} (from vane.client)")
    return found


def simulation_files() -> list[Path]:
    return sorted((REPO / "simulations").rglob("*.py"))


def test_there_are_simulation_files_to_scan():
    names = {p.relative_to(REPO).as_posix() for p in simulation_files()}
    assert {"simulations/evaluate.py", "simulations/evaluate_lstm.py"} <= names


@pytest.mark.parametrize("path", simulation_files(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_simulations_touch_no_private_name_of_the_client(path):
    assert private_client_access(path.read_text(encoding="utf-8"), str(path.relative_to(REPO))) == []


@pytest.mark.parametrize(
    "source",
    [
        "from vane.client.tracker import _infer_sequence",
        "from vane.client._internal import thing",
        "import vane.client._internal",
        "def f(tracker):\n    return tracker._model",
        "def f(t: InterestTracker):\n    return t._featurizer\nfrom vane.client.tracker import InterestTracker",
        "from vane.client.tracker import InterestTracker\nt = InterestTracker.open('p')\nt._fresh()",
        "from vane.client.tracker import InterestTracker\nwith InterestTracker.open('p') as t:\n    t._personal",
        "from vane.client.tracker import InterestTracker\ndef op() -> InterestTracker: ...\nx = op()\nx._blend_case()",
        "import vane.client.tracker as tr\ntr.InterestTracker._new_personal",
        "from vane.client.tracker import InterestTracker\nm = InterestTracker.open('p').model\nm._runner",
    ],
)
def test_the_scan_catches_private_access(source):
    assert private_client_access(source)


@pytest.mark.parametrize(
    "source",
    [
        "from vane.client.tracker import InterestTracker\nt = InterestTracker.open('p')\nt.refresh()",
        "from vane.simulations.baselines import OnlinePredictor\np = OnlinePredictor()\np._index",
        "class A:\n    def __init__(self):\n        self._x = 1",
        "from vane.client.tracker import InterestTracker\nInterestTracker.__name__",
    ],
)
def test_the_scan_allows_public_access_and_other_privates(source):
    assert private_client_access(source) == []
