"""``opg operator`` on a real anvil, run as a subprocess: registering both roles, stake, unbonding and withdrawal,
the endpoint, jail, status, and the refusals (with their exit codes and one readable line)."""

from __future__ import annotations

import re

import pytest
from operator_kit import OPG, PASSWORD, dev, dev_address, keystore, opg_operator

from offchain.devkit.devchain import Anvil, transact
from offchain.devkit.devnet import new_key, rand32
from offchain.messages import Receipt


@pytest.fixture(scope="module")
def funded(devnet):
    """Anvil's development accounts 2..6 with OPG (they have ETH already)."""
    for i in range(2, 7):
        transact(devnet.w3, devnet.deployer, devnet.opg.functions.transfer(dev_address(i), 5_000 * OPG))
    return devnet


def actor_with_keystore(devnet, tmp_path, opg: int = 1_000 * OPG):
    actor = new_key()
    devnet.fund(actor, opg)
    return actor, keystore(actor, tmp_path)


def test_help_teaches_every_command_with_examples():
    top = opg_operator("--help")
    assert top.code == 0
    for command in ("register", "stake", "unbond", "withdraw", "claim", "status", "set-endpoint", "unjail"):
        assert command in top.stdout
    assert "examples:" in top.stdout and "OPG_OPERATOR_PASSWORD" in top.stdout and "--dev-account" in top.stdout
    register = opg_operator("register", "--help")
    assert register.code == 0
    assert "--role {inference,verifier}" in register.stdout and "examples:" in register.stdout


def test_usage_error_exits_2():
    run = opg_operator("register", "--role", "miner", "--stake", "1", "--endpoint", "http://x")
    assert run.code == 2 and "invalid choice" in run.stderr


def test_register_inference_node_then_status_json(cli, funded):
    run = cli("register", "--role", "inference", "--stake", "250", "--endpoint", "http://node-a.invalid",
              key=dev(2))
    assert run.code == 0, run.stderr
    assert len(run.stdout.strip().splitlines()) == 1
    assert f"registered {dev_address(2)} as an inference node: stake 250 OPG" in run.stdout
    status = cli.ok("status", "--no-probe", key=dev(2))
    assert status["address"] == dev_address(2) and status["chainId"] == 31337
    assert status["role"] == "inference" and status["registered"] and status["active"] and status["payable"]
    assert status["stake"] == str(250 * OPG) and status["unbonding"] == "0" and status["withdrawableAt"] is None
    assert status["jailed"] is False and status["jail"] is None
    assert status["endpoint"] == "http://node-a.invalid"
    assert status["voteWeight"] == "0" and status["slashes"] == []
    assert status["rewards"]["claimable"] == "0" and status["rewards"]["feesSettled"] == "0"
    assert status["balances"]["opg"] == str(4_750 * OPG)
    on_chain = funded.staking.functions.nodes(dev_address(2)).call()
    assert on_chain[0] == 1 and on_chain[2] == 250 * OPG


def test_register_verifier_with_keystore_then_heartbeat_makes_it_live(cli, devnet, tmp_path):
    actor, key = actor_with_keystore(devnet, tmp_path)
    run = cli("register", "--role", "verifier", "--stake", "150", "--endpoint", "http://verifier.invalid", key=key)
    assert run.code == 0, run.stderr
    assert "as a verifier: stake 150 OPG" in run.stdout
    status = cli.ok("status", "--no-probe", key=key)
    assert status["role"] == "verifier" and status["active"] and not status["live"]
    assert status["warmStake"] == "0" and status["freshStake"] == str(150 * OPG) and status["warmAt"] > 0
    assert status["heartbeatDue"] and status["lastHeartbeat"] is None and status["verdicts"] == []
    devnet.advance(devnet.params.warmup + 1)
    beat = cli.ok("heartbeat", key=key)
    assert beat["weight"] == str(150 * OPG)
    epoch = devnet.system.distributor.functions.epoch_now().call()
    assert beat["epoch"] == epoch + 1
    while devnet.system.distributor.functions.epoch_now().call() == epoch:
        devnet.advance(devnet.params.epoch_length)
    status = cli.ok("status", "--no-probe", key=key)
    assert status["live"] and status["voteWeight"] == str(150 * OPG) and status["weightThisEpoch"] == str(150 * OPG)
    assert status["heartbeatDue"] is True  # nothing recorded for the next epoch yet
    assert status["lastHeartbeat"]["forEpoch"] == epoch + 1 and status["lastHeartbeat"]["weight"] == str(150 * OPG)
    # The readable report says the same.
    text = cli("status", "--no-probe", key=key).stdout
    assert f"{actor.address} on chain 31337: verifier, active, live" in text
    assert "heartbeat due this epoch" in text


def test_status_of_any_address_needs_no_key(cli, funded):
    status = cli.ok("status", "--no-probe", "--address", dev_address(6))
    assert status["role"] == "none" and status["registered"] is False
    assert status["minStake"] == {"inference": str(100 * OPG), "verifier": str(100 * OPG)}


def test_double_register_is_refused(cli, funded):
    assert cli("register", "--role", "inference", "--stake", "100", "--endpoint", "http://n.invalid",
               key=dev(3)).code == 0
    again = cli("register", "--role", "verifier", "--stake", "100", "--endpoint", "http://n.invalid", key=dev(3))
    assert again.code == 1
    assert again.error.startswith("opg operator register: error: ")
    assert "already registered as inference" in again.error
    assert len(again.stderr.strip().splitlines()) == 1


def test_stake_below_the_minimum_is_refused(cli, funded):
    run = cli("register", "--role", "verifier", "--stake", "99.5", "--endpoint", "http://v.invalid", key=dev(4))
    assert run.code == 1 and "stake 99.5 OPG is below the verifier minimum 100 OPG" in run.error
    assert funded.staking.functions.nodes(dev_address(4)).call()[0] == 0


def test_stake_adds_to_the_active_stake(cli, funded):
    assert cli("register", "--role", "inference", "--stake", "100", "--endpoint", "http://n.invalid",
               key=dev(5)).code == 0
    run = cli("stake", "25.5", key=dev(5))
    assert run.code == 0, run.stderr
    assert "added 25.5 OPG: stake now 125.5 OPG" in run.stdout
    assert funded.staking.functions.nodes(dev_address(5)).call()[2] == 1255 * OPG // 10


def test_unbond_then_withdraw_only_after_the_unbonding_period(cli, devnet, tmp_path):
    actor, key = actor_with_keystore(devnet, tmp_path)
    assert cli("register", "--role", "inference", "--stake", "300", "--endpoint", "http://n.invalid",
               key=key).code == 0
    unbond = cli.ok("unbond", "120", key=key)
    assert unbond["unbonding"] == str(120 * OPG) and unbond["stake"] == str(180 * OPG)
    ready = unbond["withdrawableAt"]
    assert ready == devnet.chain_now() + devnet.params.unbonding_period
    early = cli("withdraw", key=key)
    assert early.code == 1
    assert "still unbonding: 120 OPG withdrawable from" in early.error and "(in 10 min" in early.error
    early_json = cli("withdraw", key=key, as_json=True)
    assert early_json.code == 1 and early_json.json["ok"] is False and early_json.json["withdrawableAt"] == ready
    balance = devnet.opg.functions.balanceOf(actor.address).call()
    devnet.advance(devnet.params.unbonding_period + 1)
    done = cli("withdraw", key=key)
    assert done.code == 0, done.stderr
    assert "withdrew 120 OPG of unbonded stake" in done.stdout
    assert devnet.opg.functions.balanceOf(actor.address).call() == balance + 120 * OPG
    nothing = cli("withdraw", key=key)
    assert nothing.code == 1 and "nothing unbonding" in nothing.error


def test_unbond_more_than_the_stake_is_refused(cli, devnet, tmp_path):
    _actor, key = actor_with_keystore(devnet, tmp_path)
    assert cli("register", "--role", "inference", "--stake", "100", "--endpoint", "http://n.invalid",
               key=key).code == 0
    run = cli("unbond", "100.000000000000000001", key=key)
    assert run.code == 1 and "active stake is 100 OPG" in run.error


def test_set_endpoint_moves_the_registered_endpoint(cli, devnet, tmp_path):
    actor, key = actor_with_keystore(devnet, tmp_path)
    assert cli("register", "--role", "verifier", "--stake", "100", "--endpoint", "http://old.invalid",
               key=key).code == 0
    run = cli("set-endpoint", "https://new.invalid:8443/v", key=key)
    assert run.code == 0 and "endpoint now https://new.invalid:8443/v (was http://old.invalid)" in run.stdout
    assert devnet.staking.functions.endpoint(actor.address).call() == "https://new.invalid:8443/v"
    bad = cli("set-endpoint", "ftp://nope", key=key)
    assert bad.code == 2 and "must be an http(s):// URL" in bad.error


def test_jailed_node_status_unjail_too_early_then_released_by_restoring_stake(cli, devnet, tmp_path):
    node, key = actor_with_keystore(devnet, tmp_path)
    assert cli("register", "--role", "inference", "--stake", "200", "--endpoint", "http://n.invalid",
               key=key).code == 0
    assert cli("unjail", key=key).code == 1  # not jailed
    # A receipt charging more than its own cumulative is slashable by anyone and jails the node.
    receipt = Receipt(request_id=rand32(), payer=new_key().address, node=node.address, model_id=rand32(),
                      input_hash=rand32(), output_hash=rand32(), amount=2, cumulative=1,
                      timestamp=devnet.chain_now())
    signature = bytes.fromhex(receipt.sign_with(node.key, devnet.staking_domain)[2:])
    transact(devnet.w3, devnet.deployer, devnet.staking.functions.slash_invalid_receipt(receipt.as_tuple(), signature))
    status = cli.ok("status", "--no-probe", key=key)
    assert status["jailed"] and not status["active"] and not status["payable"]
    slashed = 200 * OPG * devnet.params.equivocation_slash_bps // 10_000
    assert [(s["kind"], s["amount"]) for s in status["slashes"]] == [("invalid_receipt", str(slashed))]
    assert status["jail"]["restoreStake"] == str(200 * OPG) and status["jail"]["missingStake"] == str(slashed)
    early = cli("unjail", key=key)
    assert early.code == 1 and "jail not over: it ends" in early.error and "(add 100 OPG)" in early.error
    devnet.advance(devnet.params.dispute_window + 1)
    still = cli("unjail", key=key)
    assert still.code == 1 and "active stake must be back at 200 OPG (now 100 OPG)" in still.error
    assert "`opg operator stake 100`" in still.error
    restored = cli("stake", "100", key=key)
    assert restored.code == 0 and "released from jail" in restored.stdout
    assert cli.ok("status", "--no-probe", key=key)["jailed"] is False


def test_dev_account_is_refused_on_a_chain_other_than_31337(tmp_path):
    with Anvil(extra=["--chain-id", "777"]) as anvil:
        run = opg_operator("stake", "1", "--rpc-url", anvil.url, "--dev-account", "2")
    assert run.code == 2
    assert "--dev-account uses anvil's public development keys and is refused on chain 777" in run.error


def test_keystore_with_wrong_password_is_refused_and_a_password_file_works(cli, devnet, tmp_path):
    actor, key = actor_with_keystore(devnet, tmp_path)
    run = cli("stake", "1", key=key, env={"OPG_OPERATOR_PASSWORD": "wrong"})
    assert run.code == 2 and "cannot decrypt keystore" in run.error
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD + "\n")
    status = cli("status", "--no-probe", key=(*key, "--password-file", str(password_file)), as_json=True,
                 env={"OPG_OPERATOR_PASSWORD": None})
    assert status.code == 0, status.stderr
    assert status.json["address"] == actor.address


def test_no_chain_at_the_rpc_url_is_one_line_exit_2():
    run = opg_operator("status", "--rpc-url", "http://127.0.0.1:9", "--dev-account", "2")
    assert run.code == 2 and re.search(r"cannot reach the chain at http://127\.0\.0\.1:9", run.error)
    assert len(run.stderr.strip().splitlines()) == 1


def test_stale_deployment_without_code_is_refused(tmp_path, devnet):
    with Anvil() as fresh:  # a restarted chain: the deployment file points at nothing
        run = opg_operator("status", "--rpc-url", fresh.url, "--deployment", str(devnet.deployment_file),
                           "--dev-account", "2")
    assert run.code == 2 and "no contract code at NodeStaking" in run.error and "stale" in run.error


def test_bad_amount_is_a_usage_error(cli):
    run = cli("stake", "-3", key=dev(2))
    assert run.code == 2 and "must be a positive number of OPG" in run.error
