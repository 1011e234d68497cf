"""``ape console`` opens with the deployed contracts bound to names and working helpers."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from offchain.deployments import save_deployment

ROOT = Path(__file__).resolve().parent.parent


def load_extras():
    spec = importlib.util.spec_from_file_location("ape_console_extras", ROOT / "ape_console_extras.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_console_extras_bind_contracts_and_helpers(tmp_path, monkeypatch, system, chain, project, accounts, networks):
    monkeypatch.setenv("OPG_DEPLOYMENTS_DIR", str(tmp_path))
    save_deployment(system.deployment, tmp_path)
    extras = load_extras().ape_init_extras(chain, project, accounts, networks)
    assert extras["escrow"].address == system.escrow.address
    assert extras["opg"].address == system.opg.address
    user = accounts.generate_test_account()
    assert extras["fund"](user, 300) == 300
    credits = extras["deposit"](user, 120)
    assert credits["credits_opg"] == 120
    assert extras["node_info"](user)["role"] == "none"


def test_console_extras_without_deployment_file_bind_nothing(tmp_path, monkeypatch, chain, project, accounts, networks):
    monkeypatch.setenv("OPG_DEPLOYMENTS_DIR", str(tmp_path))
    assert load_extras().ape_init_extras(chain, project, accounts, networks) == {}
