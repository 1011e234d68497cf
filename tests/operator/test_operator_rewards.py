"""``opg operator claim`` and ``status`` after real settlement through the relayer: the node's fee share and
emission, the verifier's pool share of the epoch it was live in, and a verifier's on-chain verdicts and slashes
(from chain events and from the relayer's GET /slashes)."""

from __future__ import annotations

import time

import pytest
from operator_kit import OPG, dev, dev_address, keystore

from offchain.amounts import format_opg
from offchain.daemon.keys import anvil_key
from offchain.devkit.devchain import transact
from offchain.devkit.devnet import Actor, ChannelSim, item, new_key, rand32, wait_until
from offchain.messages import Verdict

STAKE = 200


def epoch_now(devnet) -> int:
    return devnet.system.distributor.functions.epoch_now().call()


def to_next_epoch(devnet) -> int:
    """Move the chain clock just past the end of the current epoch; returns the new epoch."""
    d = devnet.system.distributor.functions
    epoch = epoch_now(devnet)
    end = d.current_epoch_end().call() + (epoch - d.current_epoch().call()) * d.epoch_length().call()
    devnet.advance(end - devnet.chain_now() + 1)
    assert epoch_now(devnet) == epoch + 1
    return epoch + 1


def receipt_time(devnet) -> int:
    """A receipt timestamp the relayer accepts whether it dates receipts by wall time or by the chain clock (ahead
    of it here by the warm-up the test waited out): within its age limit of both."""
    return max(int(time.time()), devnet.chain_now() - devnet.params.dispute_window + 20)


@pytest.fixture(scope="module")
def verifier(devnet, cli, tmp_path_factory):
    """A verifier registered with a keystore, warm, heartbeat given: live (the only live one) from the next epoch."""
    actor = new_key()
    devnet.fund(actor, 1_000 * OPG)
    key = keystore(actor, tmp_path_factory.mktemp("keys"))
    assert cli("register", "--role", "verifier", "--stake", str(STAKE), "--endpoint", "http://v.invalid",
               key=key).code == 0
    devnet.advance(devnet.params.warmup + 1)
    assert cli("heartbeat", key=key).code == 0
    to_next_epoch(devnet)
    return actor, key


@pytest.fixture(scope="module")
def node(devnet, cli):
    transact(devnet.w3, devnet.deployer, devnet.opg.functions.transfer(dev_address(2), 1_000 * OPG))
    assert cli("register", "--role", "inference", "--stake", str(STAKE), "--endpoint", "http://n.invalid",
               key=dev(2)).code == 0
    return Actor(anvil_key(2), dev_address(2))


@pytest.fixture(scope="module")
def settled(devnet, relayer, verifier, node):
    """Three receipts of one channel settled by the relayer in an epoch the verifier is live in, with emissions
    funded in that epoch."""
    epoch = epoch_now(devnet)
    assert devnet.staking.functions.total_weight_in(epoch).call() == STAKE * OPG
    distributor = devnet.system.distributor
    transact(devnet.w3, devnet.deployer, devnet.opg.functions.approve(distributor.address, 50 * OPG))
    transact(devnet.w3, devnet.deployer, distributor.functions.fund_emissions(50 * OPG))
    payer = devnet.new_payer(100 * OPG)
    ch = ChannelSim(devnet, payer, node)
    items = []
    for amount in (2 * OPG, 3 * OPG, 5 * OPG):
        voucher = ch.voucher(ch.cumulative + ch.price_cap)
        receipt = ch.receipt(amount, timestamp=receipt_time(devnet))
        ch.cumulative += amount
        items.append(item(receipt, voucher))
    res = relayer.post("/settle", {"receipts": items})
    assert res.status_code == 200, res.text
    ids = [r["id"] for r in res.json()["results"]]
    views = relayer.wait_receipts(ids)
    assert epoch_now(devnet) == epoch, "the settlement must land in the verifier's live epoch"
    credited = distributor.events.FeesCredited().get_logs(from_block=0, argument_filters={"node": node.address})
    return {"epoch": epoch, "payer": payer, "receipts": views,
            "node_share": sum(e["args"]["node_share"] for e in credited),
            "verifier_fee": sum(e["args"]["verifier_fee"] for e in credited),
            "gross": sum(e["args"]["gross"] for e in credited)}


def test_status_shows_the_node_share_claimable_and_the_fees_settled(cli, settled):
    assert settled["gross"] == 10 * OPG and settled["node_share"] > 0
    status = cli.ok("status", "--no-probe", key=dev(2))
    assert status["rewards"]["claimable"] == str(settled["node_share"])
    assert status["rewards"]["feesSettled"] == str(10 * OPG)
    # The epoch has not ended: its emission and the verifier pool are not collectable yet.
    assert status["rewards"]["emission"] == [] and status["rewards"]["emissionPending"] == []
    text = cli("status", "--no-probe", key=dev(2)).stdout
    assert "fees         10 OPG settled (gross)" in text


def test_a_verifiers_fraud_verdict_shows_in_its_status_and_the_nodes_slashes(cli, devnet, relayer, verifier,
                                                                             settled):
    actor, key = verifier
    receipt_hash = settled["receipts"][0]["receiptHash"]
    v = Verdict(receipt_hash=receipt_hash, valid=False)
    res = relayer.post("/verdicts", {"receiptHash": receipt_hash, "valid": False, "verifier": actor.address,
                                     "signature": v.sign_with(actor.key, devnet.staking_domain)})
    assert res.status_code == 200, res.text
    wait_until(lambda: [s for s in relayer.get("/slashes").json() if s["kind"] == "fraud"
                        and s["status"] == "confirmed"], timeout=60, what="fraud proof confirmed")
    status = cli.ok("status", "--no-probe", key=key)
    assert [(x["receiptHash"], x["valid"]) for x in status["verdicts"]] == [(receipt_hash, False)]
    assert status["verdicts"][0]["node"] == dev_address(2) and status["slashes"] == []
    node_status = cli.ok("status", "--no-probe", key=dev(2))
    assert node_status["jailed"] and [x["kind"] for x in node_status["slashes"]] == ["fraud"]
    assert "1 carried by on-chain proofs (0 valid, 1 fraud)" in cli("status", "--no-probe", key=key).stdout


def test_claim_after_the_epoch_pays_node_share_emission_and_verifier_pool(cli, devnet, verifier, settled):
    actor, key = verifier
    epoch = settled["epoch"]
    to_next_epoch(devnet)
    status = cli.ok("status", "--no-probe", key=key)
    pool = settled["verifier_fee"]
    assert status["rewards"]["verifier"] == [{"epoch": epoch, "amount": str(pool)}]
    assert status["rewards"]["uncollected"] == str(pool)
    node_status = cli.ok("status", "--no-probe", key=dev(2))
    assert node_status["rewards"]["emissionPending"] == [epoch]
    # The node: its fee share and the epoch's emission (capped at max_emission_per_fee_bps of its fees).
    emission = settled["gross"] * devnet.params.max_emission_per_fee_bps // 10_000
    before = devnet.opg.functions.balanceOf(dev_address(2)).call()
    run = cli("claim", key=dev(2))
    assert run.code == 0, run.stderr
    assert len(run.stdout.strip().splitlines()) == 1
    assert f"emissions of epoch {epoch}: {format_opg(emission)} OPG" in run.stdout  # 0.4 OPG at the 400 bps cap
    assert devnet.opg.functions.balanceOf(dev_address(2)).call() == before + settled["node_share"] + emission
    # The verifier: the epoch's whole pool (it was the only live weight).
    before = devnet.opg.functions.balanceOf(actor.address).call()
    claimed = cli.ok("claim", key=key)
    assert claimed["verifierRewards"] == [{"epoch": epoch, "amount": str(pool)}]
    assert claimed["claimed"] == str(pool) and claimed["emissions"] == []
    assert devnet.opg.functions.balanceOf(actor.address).call() == before + pool
    again = cli("claim", key=key)
    assert again.code == 0 and again.stdout.strip() == "nothing to claim"


def test_a_double_vote_slash_shows_from_chain_events_and_the_relayer(cli, devnet, relayer, verifier):
    actor, key = verifier
    receipt_hash = rand32()
    for valid in (True, False):
        v = Verdict(receipt_hash=receipt_hash, valid=valid)
        res = relayer.post("/verdicts", {"receiptHash": receipt_hash, "valid": valid, "verifier": actor.address,
                                         "signature": v.sign_with(actor.key, devnet.staking_domain)})
        assert res.status_code == 200, res.text
    wait_until(lambda: [s for s in relayer.get("/slashes").json() if s["kind"] == "double_vote"
                        and s["status"] == "confirmed"], timeout=60, what="double vote slash confirmed")
    status = cli.ok("status", "--no-probe", "--relayer-url", relayer.url, key=key)
    assert [x["kind"] for x in status["slashes"]] == ["double_vote"]
    assert int(status["slashes"][0]["amount"]) == STAKE * OPG * devnet.params.fraud_slash_bps // 10_000
    assert status["jailed"] and not status["live"]
    assert [(x["kind"], x["status"]) for x in status["relayerSlashes"]] == [("double_vote", "confirmed")]
    assert status["relayerError"] is None
    text = cli("status", "--no-probe", "--relayer-url", relayer.url, key=key).stdout
    assert "slashes      1, 40 OPG in all: double_vote 40 OPG" in text
    assert "relayer      1 slashing submission against this account: double_vote confirmed" in text
