"""Running ``opg operator`` as a real subprocess against a test devnet (``from operator_kit import ...``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_account import Account

from offchain.daemon.keys import anvil_key
from offchain.deployments import PROJECT_ROOT

OPG = 10**18
PASSWORD = "operator test password"


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    @property
    def json(self) -> Any:
        return json.loads(self.stdout)

    @property
    def error(self) -> str:
        """The one error line (stderr)."""
        lines = self.stderr.strip().splitlines()
        return lines[-1] if lines else ""


def opg_operator(*args: str, env: dict | None = None, timeout: float = 180) -> Run:
    """``python -m offchain.cli operator ARGS`` in the project root (``env`` values of None are unset)."""
    merged = {k: v for k, v in {**os.environ, **(env or {})}.items() if v is not None}
    out = subprocess.run([sys.executable, "-m", "offchain.cli", "operator", *map(str, args)], cwd=PROJECT_ROOT,
                         env=merged, capture_output=True, text=True, timeout=timeout)
    return Run(out.returncode, out.stdout, out.stderr)


class OperatorCli:
    """``opg operator`` pointed at one devnet; ``key`` is ``("--dev-account", N)`` or ``("--keystore", path)``."""

    def __init__(self, devnet):
        self.devnet = devnet
        self.base = ["--rpc-url", devnet.url, "--deployment", str(devnet.deployment_file)]

    def __call__(self, command: str, *args: str, key: tuple[str, ...] = (), as_json: bool = False,
                 env: dict | None = None) -> Run:
        flags = [*self.base, *key, *(["--json"] if as_json else [])]
        return opg_operator(command, *args, *flags, env={"OPG_OPERATOR_PASSWORD": PASSWORD, **(env or {})})

    def ok(self, command: str, *args: str, key: tuple[str, ...] = ()) -> dict:
        """Run with ``--json``; assert exit 0; the JSON result."""
        run = self(command, *args, key=key, as_json=True)
        assert run.code == 0, f"{command} exited {run.code}: {run.stderr[-2000:]}"
        result = run.json
        assert result["ok"] is True and result["command"] == command
        return result


def dev(index: int) -> tuple[str, str]:
    return ("--dev-account", str(index))


def dev_address(index: int) -> str:
    return Account.from_key(anvil_key(index)).address


def keystore(actor, directory: Path, password: str = PASSWORD) -> tuple[str, str]:
    """An encrypted keystore of ``actor`` in ``directory``; the ``--keystore`` flags that use it."""
    path = directory / f"{actor.address}.json"
    # A real scrypt keystore, with a small work factor so that every CLI run does not spend a second decrypting it.
    path.write_text(json.dumps(Account.encrypt(actor.key, password, kdf="scrypt", iterations=2**10)))
    return ("--keystore", str(path))
