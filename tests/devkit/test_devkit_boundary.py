"""The runtime package never imports the dev and test support package ``offchain.devkit``: daemons run from the
committed ABIs (``offchain.abi``) without vyper, anvil or the test kits."""

from __future__ import annotations

import ast
from pathlib import Path

OFFCHAIN = Path(__file__).resolve().parents[2] / "offchain"

# Runtime modules that still import the devkit, each for one stated reason. Shrink it; never grow it for a daemon.
ALLOWED = {
    "cli.py": "`opg abi` (dev-only) regenerates offchain/abi/*.json with devkit.compiler",
    "seasons/ops.py": "`opg seasons deploy` compiles and deploys SeasonDistributor (devkit.devchain.deploy_contract)",
}


def devkit_imports(path: Path) -> list[str]:
    """The ``offchain.devkit`` modules ``path`` imports (absolute or relative, at any depth of the file)."""
    package = ["offchain", *path.parent.relative_to(OFFCHAIN).parts]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            names = [module] + [f"{module}.{alias.name}" for alias in node.names]
        else:
            continue
        found += [name for name in names if name == "offchain.devkit" or name.startswith("offchain.devkit.")]
    return found


def test_no_runtime_module_imports_the_devkit():
    offenders = {}
    for path in sorted(OFFCHAIN.rglob("*.py")):
        rel = path.relative_to(OFFCHAIN).as_posix()
        if rel.startswith("devkit/") or rel in ALLOWED:
            continue
        if imported := devkit_imports(path):
            offenders[rel] = sorted(set(imported))
    assert offenders == {}, f"runtime modules import offchain.devkit: {offenders}"


def test_the_check_sees_relative_and_absolute_imports():
    assert devkit_imports(OFFCHAIN / "cli.py")
    assert devkit_imports(OFFCHAIN / "devkit" / "system.py")  # ``from .devchain import ...`` inside the devkit
    assert not devkit_imports(OFFCHAIN / "chain.py")
