"""Contract ABIs and bytecode, compiled from ``contracts/`` with the pinned vyper and cached by source hash.

Daemons need only the committed ABIs (``offchain.abi``); deploying without ape (tests, benchmarks, the seasons
distributor) compiles on first use and caches under ``.build/opg/``; ``opg abi`` rewrites ``offchain/abi/*.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

from ..abi import ABI_DIR, CONTRACTS
from ..deployments import PROJECT_ROOT

CONTRACTS_DIR = PROJECT_ROOT / "contracts"
CACHE_DIR = PROJECT_ROOT / ".build" / "opg"
SOURCES = {
    "OPG": "OPG.vy",
    "CreditEscrow": "CreditEscrow.vy",
    "NodeStaking": "NodeStaking.vy",
    "Evidence": "Evidence.vy",
    "RewardDistributor": "RewardDistributor.vy",
    "SeasonDistributor": "SeasonDistributor.vy",
    "TestWallet": "test/TestWallet.vy",
}


def _vyper() -> str:
    local = Path(sys.executable).parent / "vyper"
    found = str(local) if local.exists() else shutil.which("vyper")
    if not found:
        raise RuntimeError("vyper is not installed: run `make install`")
    return found


def _source_hash() -> str:
    digest = hashlib.sha256()
    for path in sorted(CONTRACTS_DIR.rglob("*.vy")):
        digest.update(path.relative_to(CONTRACTS_DIR).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


@cache
def compiled(name: str) -> dict:
    """``{"abi": [...], "bytecode": "0x..."}`` for a contract, compiling it if the cache is stale."""
    if name not in SOURCES:
        raise KeyError(f"unknown contract {name!r}")
    cache = CACHE_DIR / f"{name}-{_source_hash()}.json"
    if cache.exists():
        return json.loads(cache.read_text())
    out = subprocess.run(
        [_vyper(), "-p", str(PROJECT_ROOT), "-f", "abi,bytecode", str(CONTRACTS_DIR / SOURCES[name])],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
    )
    if out.returncode != 0:
        raise RuntimeError(f"vyper failed on {name}: {out.stderr.strip()[-2000:]}")
    abi_line, bytecode = out.stdout.strip().splitlines()[-2:]
    artifact = {"abi": json.loads(abi_line), "bytecode": bytecode.strip()}
    cache.parent.mkdir(parents=True, exist_ok=True)
    partial = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")  # another process may read the cache meanwhile
    partial.write_text(json.dumps(artifact))
    os.replace(partial, cache)
    return artifact


def export_abis() -> list[Path]:
    """Regenerate ``offchain/abi/*.json`` from the sources."""
    ABI_DIR.mkdir(exist_ok=True)
    written = []
    for name in CONTRACTS:
        path = ABI_DIR / f"{name}.json"
        path.write_text(json.dumps(compiled(name)["abi"], indent=1) + "\n")
        written.append(path)
    return written
