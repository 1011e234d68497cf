"""``--json`` output shapes, in-process: the backends module (no chain), and the payer's, the operator's, the
season's and the node's read-only commands against a private anvil with the system deployed."""

from __future__ import annotations

import json

import ape
from cli_kit import opg, run

from offchain.devkit.devnet import Devnet


@ape.fixture(scope="module", chain_isolation=False)
def devnet(tmp_path_factory):
    d = Devnet(tmp_path_factory.mktemp("cli-devnet"))
    yield d
    d.close()


DEV_ACCOUNT_3 = "0x90F79bf6EB2c4f870365E785982E1f101E93b906"


def chain(devnet) -> list[str]:
    return ["--rpc-url", devnet.url, "--deployment", str(devnet.deployment_file)]


def test_backends_describe_and_generate_print_one_json_object():
    from offchain.backends.__main__ import backends

    ran = run(backends, "python -m offchain.backends", "describe", "builtin")
    assert ran.code == 0 and ran.err == ""
    described = json.loads(ran.out)
    assert set(described) == {"name", "modelId", "deterministic", "descriptor"} and described["name"] == "builtin"
    ran = run(backends, "python -m offchain.backends", "generate", "builtin", "--prompt", "Say hi", "--max-tokens", "3")
    assert ran.code == 0
    gen = json.loads(ran.out)
    assert gen["output_tokens"] == 3 and gen["modelId"] == described["modelId"]
    assert {"text", "loadSeconds", "generateSeconds", "tokensPerSecond"} <= set(gen)


def test_balance_json(devnet, tmp_path):
    ran = opg("balance", *chain(devnet), "--dev-account", "4", "--state-dir", str(tmp_path), "--json")
    assert ran.code == 0, ran.err
    b = json.loads(ran.out)
    assert b["payer"] == "0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65"  # anvil's account 4
    assert {"opg", "eth", "credits", "available", "withdrawal", "channels"} <= set(b)


def test_operator_status_json(devnet):
    address = devnet.new_node().address
    ran = opg("operator", "status", *chain(devnet), "--address", address, "--no-probe", "--json")
    assert ran.code == 0, ran.err
    status = json.loads(ran.out)
    assert status["ok"] is True and status["command"] == "status" and status["registered"] is True
    assert {"balances", "chainTime"} <= set(status)
    human = opg("operator", "status", *chain(devnet), "--address", address, "--no-probe")
    assert human.code == 0 and address in human.out and "{" not in human.out.splitlines()[0]


def test_season_status_json_before_and_after_the_command(devnet):
    before = opg("season", *chain(devnet), "--json", "status")
    after = opg("season", "status", *chain(devnet), "--json")
    assert before.code == after.code == 0, before.err + after.err
    assert json.loads(before.out) == json.loads(after.out) == {"distributor": None}
    human = opg("season", *chain(devnet), "status")
    assert human.out.startswith("distributor   not deployed")


def test_node_settle_json_with_nothing_to_settle(devnet, tmp_path):
    from offchain.node.store import NodeStore

    store = NodeStore(tmp_path / "node.sqlite3")  # a node's store that holds no receipt yet
    store.open(devnet.chain_id, devnet.escrow.address, devnet.staking.address, DEV_ACCOUNT_3)
    store.close()
    argv = ["node", "settle", *chain(devnet), "--dev-account", "3", "--store", str(store.path), "--dry-run"]
    ran = opg(*argv, "--json")
    assert ran.code == 0, ran.err
    assert json.loads(ran.out) == {"claims": []}
    human = opg(*argv)
    assert human.out.strip() == "nothing to settle: every channel is paid up to its highest receipt"
