"""``ape console`` opens with the deployed contracts bound to names and working helpers."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from eth_utils import keccak

from offchain.deployments import save_deployment
from offchain.messages import Claim, Receipt, Voucher

ROOT = Path(__file__).resolve().parents[2]
OPG = 10**18
ZERO_ROOT = b"\x00" * 32


def load_extras():
    spec = importlib.util.spec_from_file_location("ape_console_extras", ROOT / "ape_console_extras.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def extras(tmp_path, monkeypatch, system, chain, project, accounts, networks):
    monkeypatch.setenv("OPG_DEPLOYMENTS_DIR", str(tmp_path))
    save_deployment(system.deployment, tmp_path)
    return load_extras().ape_init_extras(chain, project, accounts, networks)


def test_console_extras_bind_contracts_and_helpers(extras, system, accounts):
    assert extras["escrow"].address == system.escrow.address
    assert extras["opg"].address == system.opg.address
    assert extras["staking"].address == system.staking.address
    assert extras["distributor"].address == system.distributor.address
    user = accounts.generate_test_account()
    assert extras["fund"](user, 300) == 300
    credits = extras["deposit"](user, 120)
    assert credits["credits_opg"] == 120
    assert credits["available_opg"] == 120
    assert credits["spent_opg"] == {}
    assert extras["node_info"](user)["role"] == "none"


def test_console_credits_lists_what_the_payer_paid_each_node(extras, escrow, escrow_domain, payer, node):
    extras["deposit"](payer.account, 50)
    voucher = Voucher(payer=payer.address, node=node.address, max_cumulative=7 * OPG)
    claim = Claim(
        payer=payer.address,
        node=node.address,
        max_cumulative=7 * OPG,
        signature=voucher.sign_with(payer.key, escrow_domain),
        total=7 * OPG,
    ).as_tuple()
    import ape

    escrow.settle_batch([claim], ZERO_ROOT, sender=ape.accounts.test_accounts[2])  # the escrow's facilitator
    escrow.request_withdrawal(10 * OPG, sender=payer.account)
    credits = extras["credits"](payer)
    assert credits["spent_opg"] == {node.address: 7}
    assert credits["credits_opg"] == 43
    assert credits["available_opg"] == 33
    assert credits["withdrawal_pending_opg"] == 10
    assert credits["withdrawal_expires_at"] == credits["withdrawal_ready_at"] + escrow.thaw_period()


def test_console_node_info_shows_jail_stake_warm_stake_and_vote_weight(extras, staking, opg, node, verifiers):
    v = verifiers[0]
    stake = staking.nodes(v.address).stake / OPG
    info = extras["node_info"](v)
    assert info["role"] == "verifier"
    assert info["active"] and not info["jailed"]
    assert info["stake_opg"] == info["warm_stake_opg"] == stake
    assert info["vote_weight_opg"] == staking.vote_weight(v.address) / OPG == stake
    # Fresh stake is not warm yet and weighs nothing before a heartbeat.
    opg.approve(staking, 10 * OPG, sender=v.account)
    staking.add_stake(10 * OPG, sender=v.account)
    info = extras["node_info"](v)
    assert info["stake_opg"] == stake + 10
    assert info["warm_stake_opg"] == stake
    node_info = extras["node_info"](node)
    assert node_info["role"] == "inference" and node_info["payable"] and not node_info["jailed"]
    assert node_info["vote_weight_opg"] == 0


def test_console_node_info_shows_a_jailed_node(extras, staking, staking_domain, chain, payer, node):
    # A receipt charging more than its own cumulative is slashable by anyone and jails the node.
    receipt = Receipt(
        request_id="0x" + keccak(text="console").hex(),
        payer=payer.address,
        node=node.address,
        model_id="0x" + keccak(text="model").hex(),
        input_hash="0x" + keccak(text="in").hex(),
        output_hash="0x" + keccak(text="out").hex(),
        amount=2,
        cumulative=1,
        timestamp=chain.pending_timestamp,
    )
    signature = bytes.fromhex(receipt.sign_with(node.key, staking_domain)[2:])
    staking.slash_invalid_receipt(receipt.as_tuple(), signature, sender=payer.account)
    info = extras["node_info"](node)
    assert info["jailed"] and not info["payable"] and not info["active"]
    assert info["stake_opg"] == staking.nodes(node.address).stake / OPG
    assert info["restore_stake_opg"] > info["stake_opg"]


def test_console_extras_without_deployment_file_bind_nothing(tmp_path, monkeypatch, chain, project, accounts, networks):
    monkeypatch.setenv("OPG_DEPLOYMENTS_DIR", str(tmp_path))
    assert load_extras().ape_init_extras(chain, project, accounts, networks) == {}
