"""The relayer's shape (issue 15): its modules import one by one and form no import cycle, and no component built by
the composition root (``offchain.relayer.service.Relayer``) holds the root."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import offchain.relayer
from offchain.relayer.config import RelayerSettings
from offchain.relayer.service import Relayer

PACKAGE = Path(offchain.relayer.__file__).parent
MODULES = sorted(p.relative_to(PACKAGE).with_suffix("").as_posix().replace("/", ".")
                 for p in PACKAGE.rglob("*.py") if p.name != "__init__.py")


def _exists(module: str) -> bool:
    return (PACKAGE / (module.replace(".", "/") + ".py")).exists()


def _module_level_imports(module: str) -> set[str]:
    """The relayer modules ``module`` imports when it is loaded (not under TYPE_CHECKING, not inside functions)."""
    out: set[str] = set()
    parent = module.split(".")[:-1]
    for node in ast.parse((PACKAGE / (module.replace(".", "/") + ".py")).read_text()).body:
        if not isinstance(node, ast.ImportFrom) or node.level == 0 or node.level > len(parent) + 1:
            continue  # absolute imports, and relative ones leaving the relayer package
        base = parent[:len(parent) + 1 - node.level]
        target = ".".join([*base, *(node.module.split(".") if node.module else [])])
        for alias in node.names:  # ``from . import x`` / ``from .routes import receipts`` name modules
            candidate = f"{target}.{alias.name}" if target else alias.name
            out.add(candidate if _exists(candidate) else target)
    return {m for m in out if m and _exists(m)}


def test_relayer_import_graph_has_no_cycle():
    graph = {m: _module_level_imports(m) for m in MODULES}
    assert graph["service"] >= {"batcher", "credit", "exact", "slasher"}  # the parser sees the root's imports
    visiting, done = [], set()

    def visit(module: str) -> None:
        if module in done:
            return
        assert module not in visiting, f"import cycle: {' -> '.join([*visiting[visiting.index(module):], module])}"
        visiting.append(module)
        for dep in sorted(graph.get(module, ())):
            visit(dep)
        visiting.pop()
        done.add(module)

    for module in MODULES:
        visit(module)


def test_each_relayer_module_imports_on_its_own():
    """Each module first in a fresh interpreter (a cycle hidden by import order would fail here)."""
    script = ("import importlib, sys\n"
              "for name in sys.argv[1:]:\n"
              "    for key in [k for k in sys.modules if k.startswith('offchain.relayer')]:\n"
              "        del sys.modules[key]\n"
              "    importlib.import_module('offchain.relayer.' + name)\n")
    done = subprocess.run([sys.executable, "-c", script, *MODULES], capture_output=True, text=True,
                          cwd=PACKAGE.parent.parent, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]


def _holds(obj: object, target: object, depth: int, seen: set[int]) -> str | None:
    """The attribute path by which ``obj`` reaches ``target`` through offchain objects' attributes, or None."""
    if depth < 0 or id(obj) in seen:
        return None
    seen.add(id(obj))
    values = vars(obj).items() if hasattr(obj, "__dict__") else ()
    for name, value in values:
        if value is target:
            return name
        if type(value).__module__.startswith("offchain."):
            found = _holds(value, target, depth - 1, seen)
            if found:
                return f"{name}.{found}"
    return None


def test_no_component_holds_the_composition_root(devnet, tmp_path):
    settings = RelayerSettings(rpc_url=devnet.url, deployment=devnet.deployment_file, store=tmp_path / "r.sqlite3",
                               dev_account=7, validation_workers=0)
    relayer = Relayer(settings)
    try:
        components = {name: value for name, value in vars(relayer).items()
                      if type(value).__module__.startswith("offchain.")}
        assert {"credit", "exact", "batcher", "slasher", "store", "sender", "ledger", "events"} <= set(components)
        for name, component in components.items():
            path = _holds(component, relayer, depth=4, seen=set())
            assert path is None, f"{name}.{path} is the composition root"
    finally:
        relayer.stop()
