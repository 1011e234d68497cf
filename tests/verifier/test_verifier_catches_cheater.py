"""A node cheating at a rate is caught by the verifiers (real processes: relayer, two nodes, three verifiers, over
HTTP, on anvil): slashed on-chain, its payer refunded for what it had paid, its unsettled fraudulent charges never
paid; the honest node beside it is never slashed and keeps earning; a lazy verifier that vouched for the fraud is
slashed.

Phases: the payers are served and their receipts settle before any verifier runs (phase 1: six receipts, the
relayer's batch size); more receipts are accepted but not yet settled (phase 2: three, below the batch size, and the
batch age is 40 s); then the verifiers start, catch up on the feed (sampling rate 1) and prove the fraud; then three
more requests to the honest node fill the next batch.
"""

from __future__ import annotations

import time

import pytest
from verifier_kit import (
    cheats,
    fraud_proven,
    live,
    metric,
    node_proc,
    opg_balance,
    pay_chat,
    receipt_hash_of,
    slashes,
    start_all,
    stop_all,
    valid_proven,
    verifier_proc,
    wait_receipts,
)

from offchain.devkit.devnet import OPG, RelayerProc, wait_until

CHEAT_RATE = 0.5
BATCH_AGE = 40.0
BATCH_SIZE = 6


def prompts(pattern: str, tag: str) -> list[str]:
    """Prompts whose answers from a node with ``--backend builtin?cheat_rate=CHEAT_RATE`` are honest (h) or wrong (f),
    in order."""
    out, i = [], 0
    for want in pattern:
        while cheats(CHEAT_RATE, f"{tag} question {i}") != (want == "f"):
            i += 1
        out.append(f"{tag} question {i}")
        i += 1
    return out


@pytest.fixture(scope="module")
def relayer(devnet, workdir):
    proc = RelayerProc(devnet, workdir / "relayer.sqlite3", dev_account=1, batch_age=BATCH_AGE,
                       batch_size=BATCH_SIZE).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def world(devnet, relayer, workdir):
    """Everything the tests below look at, produced once: the scenario of the module docstring."""
    p = devnet.params
    honest_v = [devnet.new_verifier(3 * p.min_verifier_stake) for _ in range(2)]
    lazy_v = devnet.new_verifier(p.min_verifier_stake)
    live(devnet, [*honest_v, lazy_v])  # weights 3, 3, 1: the honest two hold 6/7, either alone 3/7
    cheater, honest = devnet.new_node(), devnet.new_node()
    payer_c, payer_h = devnet.new_payer(50 * OPG), devnet.new_payer(50 * OPG)
    nodes = [node_proc(devnet, relayer, cheater, workdir, name="cheater",
                       backend=f"builtin?cheat_rate={CHEAT_RATE}"),
             node_proc(devnet, relayer, honest, workdir, name="honest")]
    verifiers = [verifier_proc(devnet, relayer, v, workdir, name=f"verifier{i}") for i, v in enumerate(honest_v)]
    verifiers.append(verifier_proc(devnet, relayer, lazy_v, workdir, name="lazy", lazy=True))
    try:
        for n in nodes:
            n.start()
        served: dict[str, list[dict]] = {"cheater1": [], "cheater2": [], "honest1": [], "honest2": []}
        pattern1 = prompts("hfhf", "one")
        for prompt in pattern1:
            served["cheater1"].append({**pay_chat(devnet, nodes[0].url, payer_c, prompt), "fraud": cheats(
                CHEAT_RATE, prompt)})
        for i in range(2):
            served["honest1"].append(pay_chat(devnet, nodes[1].url, payer_h, f"honest question {i}"))
        ids1 = [s["receiptId"] for s in served["cheater1"] + served["honest1"]]
        assert len(ids1) == BATCH_SIZE
        wait_receipts(relayer, ids1, timeout=30)
        spent1 = devnet.spent(payer_c, cheater)
        claimable1 = devnet.system.distributor.functions.claimable(honest.address).call()
        wallet1 = opg_balance(devnet, payer_c)
        stakes = {a.address: devnet.stake(a)[0] for a in (cheater, honest, *honest_v, lazy_v)}
        balances = {v.address: opg_balance(devnet, v) for v in honest_v}
        # Phase 2: accepted, not settled (the next batch is BATCH_AGE away).
        for prompt in prompts("hf", "two"):
            served["cheater2"].append({**pay_chat(devnet, nodes[0].url, payer_c, prompt),
                                       "fraud": cheats(CHEAT_RATE, prompt)})
        served["honest2"].append(pay_chat(devnet, nodes[1].url, payer_h, "honest question 9"))
        accepted2 = time.monotonic()
        start_all(verifiers)
        frauds = [s for s in served["cheater1"] + served["cheater2"] if s["fraud"]]
        for s in frauds:
            s["receiptHash"] = receipt_hash_of(s["receipt"])
        wait_until(lambda: all(fraud_proven(devnet, s["receiptHash"]) for s in frauds), timeout=60,
                   what="every fraudulent receipt proven")
        proven_after = time.monotonic() - accepted2
        for i in range(3):  # the honest node keeps serving; its receipts fill the next batch
            served["honest2"].append(pay_chat(devnet, nodes[1].url, payer_h, f"honest question {10 + i}"))
        phase2 = [s["receiptId"] for s in served["cheater2"] + served["honest2"]]
        wait_receipts(relayer, phase2, statuses=("settled", "rejected"), timeout=30)
        wait_until(lambda: slashes(relayer, "lazy_verifier", "confirmed"), timeout=30, what="lazy verifier slash")
        yield {
            "cheater": cheater, "honest": honest, "payer_c": payer_c, "payer_h": payer_h, "honest_v": honest_v,
            "lazy_v": lazy_v, "served": served, "frauds": frauds, "spent1": spent1, "claimable1": claimable1,
            "wallet1": wallet1, "stakes": stakes, "balances": balances, "verifiers": verifiers,
            "proven_after": proven_after, "nodes": nodes,
        }
    finally:
        stop_all(*verifiers, *nodes)


def test_every_fraudulent_receipt_is_proven_and_the_honest_ones_are_not(devnet, world):
    assert len(world["frauds"]) == 3
    assert world["proven_after"] < BATCH_AGE  # before the unsettled ones could be batched
    for s in world["served"]["cheater1"] + world["served"]["cheater2"] + world["served"]["honest1"]:
        h = receipt_hash_of(s["receipt"])
        assert fraud_proven(devnet, h) == s.get("fraud", False), s["receiptId"]
    # Every honest receipt was vouched for by all three verifiers (100 %): proven valid.
    honest = world["served"]["honest1"] + [s for s in world["served"]["cheater1"] if not s["fraud"]]
    wait_until(lambda: all(valid_proven(devnet, receipt_hash_of(s["receipt"])) for s in honest), timeout=30,
               what="the honest receipts proven valid")


def test_cheater_is_slashed_and_jailed(devnet, relayer, world):
    cheater = world["cheater"]
    stake, jailed = devnet.stake(cheater)
    fraud = [s for s in slashes(relayer, "fraud", "confirmed") if s["subject"] == cheater.address]
    assert jailed and len(fraud) == 3
    assert stake == world["stakes"][cheater.address] - sum(int(s["amount"]) for s in fraud)
    fraud_amounts = sum(int(s["receipt"]["amount"]) for s in world["frauds"])
    assert sum(int(s["amount"]) for s in fraud) >= devnet.params.fraud_multiplier * fraud_amounts
    view = relayer.get(f"/nodes/{cheater.address}").json()
    assert view["slashesByKind"]["fraud"] == 3 and view["receipts"] == 6


def test_payer_is_refunded_what_it_paid_for_fraud_and_never_pays_the_unsettled_fraud(devnet, world):
    payer, cheater = world["payer_c"], world["cheater"]
    paid_fraud = sum(int(s["receipt"]["amount"]) for s in world["served"]["cheater1"] if s["fraud"])
    assert opg_balance(devnet, payer) == world["wallet1"] + paid_fraud
    last = world["served"]["cheater2"][-1]
    assert last["fraud"]
    # The channel is voided up to the last fraudulent receipt: nothing after phase 1 was ever debited.
    assert devnet.spent(payer, cheater) == int(last["receipt"]["cumulative"])
    assert devnet.escrow.functions.voided(payer.address, cheater.address).call() == \
        int(last["receipt"]["cumulative"]) - world["spent1"]
    assert devnet.balance(payer) == 50 * OPG - world["spent1"]


def test_honest_node_is_never_slashed_and_keeps_earning(devnet, relayer, world):
    honest = world["honest"]
    assert devnet.stake(honest) == (world["stakes"][honest.address], False)
    assert not [s for s in slashes(relayer) if s["subject"] == honest.address and s["kind"] == "fraud"]
    total = sum(int(s["receipt"]["amount"]) for s in world["served"]["honest1"] + world["served"]["honest2"])
    assert devnet.spent(world["payer_h"], honest) == total
    claimable = devnet.system.distributor.functions.claimable(honest.address).call()
    assert claimable > world["claimable1"] > 0


def test_lazy_verifier_is_slashed_and_the_honest_ones_are_rewarded(devnet, relayer, world):
    lazy = world["lazy_v"]
    lazy_slashes = slashes(relayer, "lazy_verifier", "confirmed")
    assert [s["subject"] for s in lazy_slashes] == [lazy.address]  # once per window
    stake, jailed = devnet.stake(lazy)
    assert jailed and stake == world["stakes"][lazy.address] - int(lazy_slashes[0]["amount"])
    for v in world["honest_v"]:
        assert devnet.stake(v) == (world["stakes"][v.address], False)
        assert opg_balance(devnet, v) > world["balances"][v.address]  # their share of the fraud bounties


def test_verifiers_flag_fraud_on_chain_and_count_what_they_did(devnet, world):
    events = devnet.staking.events.Flagged().get_logs(from_block=0)
    flagged = {"0x" + bytes(e["args"]["receipt_hash"]).hex() for e in events}
    honest_addresses = {v.address for v in world["honest_v"]}
    assert all(e["args"]["flagger"] in honest_addresses for e in events)
    assert {s["receiptHash"] for s in world["frauds"]} <= flagged
    for proc in world["verifiers"][:2]:
        assert metric(proc, "opg_verifier_receipts_seen_total") >= 9
        assert metric(proc, "opg_verifier_receipts_sampled_total") >= 9
        assert metric(proc, "opg_verifier_receipts_disputed_total") == 3
        assert metric(proc, "opg_verifier_receipts_agreed_total") >= 6
        assert metric(proc, "opg_verifier_reexecution_seconds_count") >= 9
