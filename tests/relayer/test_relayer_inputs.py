"""Bad input to /settle (and the other write endpoints) answers 4xx naming the field and the reason, and leaves
everything accepted before untouched."""

from __future__ import annotations

import pytest
from test_relayer_verify import malleate

from offchain.devkit.devnet import OPG, ChannelSim, item, new_key, rand32
from offchain.messages import Domain


@pytest.fixture(scope="module")
def setup(relayer, devnet):
    node, payer = devnet.new_node(), devnet.new_payer(50 * OPG)
    ch = ChannelSim(devnet, payer, node, price_cap=5 * OPG)
    good = ch.next(OPG)
    res = relayer.post("/settle", good)
    assert res.status_code == 200
    return ch, res.json()["id"]


def bad(ch: ChannelSim, case: str) -> tuple[object, int, str, str | None, str]:
    """(body, status, error, field, a word of the reason) for one class of bad input."""
    d = ch.d
    voucher = ch.voucher(ch.cumulative + 5 * OPG)
    receipt = ch.receipt(OPG)
    good = item(receipt, voucher)
    if case == "malformed_json":
        return b'{"receipt": {', 400, "invalid_json", None, "malformed"
    if case == "not_an_object":
        return b"[1, 2]", 400, "invalid_request", None, "object"
    if case == "wrong_type":
        good["receipt"]["amount"] = "lots"
        return good, 400, "invalid_field", "receipt.amount", "integer"
    if case == "negative":
        good["receipt"]["cumulative"] = -5
        return good, 400, "invalid_field", "receipt.cumulative", "greater than or equal"
    if case == "missing_field":
        del good["receipt"]["signature"]
        return good, 400, "missing_field", "receipt.signature", "required"
    if case == "unknown_field":
        good["receipt"]["tip"] = 1
        return good, 400, "unknown_field", "receipt.tip", "unknown"
    if case == "bad_address":
        good["voucher"]["payer"] = "0x1234"
        return good, 400, "invalid_field", "voucher.payer", "address"
    if case == "short_signature":
        good["receipt"]["signature"] = "0x" + "ab" * 64
        return good, 400, "invalid_field", "receipt.signature", "65 bytes"
    if case == "bad_signature":
        good = item(ch.receipt(OPG, key=new_key().key), voucher)
        return good, 400, "invalid_signature", "receipt.signature", "not the node's signature"
    if case == "malleable_signature":
        good["receipt"]["signature"] = malleate(good["receipt"]["signature"])
        return good, 400, "invalid_signature", "receipt.signature", "malleable"
    if case == "bad_v":
        sig = bytes.fromhex(good["receipt"]["signature"][2:])
        good["receipt"]["signature"] = "0x" + (sig[:64] + bytes([5])).hex()
        return good, 400, "invalid_signature", "receipt.signature", "v must be"
    if case == "wrong_chain_id":
        other = Domain.staking(1, d.staking.address)
        return item(ch.receipt(OPG, domain=other), voucher), 400, "invalid_signature", "receipt.signature", "chainId"
    if case == "wrong_contract_domain":
        other = Domain.staking(d.chain_id, d.escrow.address)
        return item(ch.receipt(OPG, domain=other), voucher), 400, "invalid_signature", "receipt.signature", "NodeStaking"
    if case == "wrong_network_field":
        good["network"] = "eip155:1"
        return good, 400, "wrong_network", "network", "eip155:"
    if case == "voucher_bad_signature":
        good = item(receipt, ch.voucher(ch.cumulative + 5 * OPG, key=new_key().key))
        return good, 400, "invalid_signature", "voucher.signature", "session key"
    if case == "voucher_other_escrow":
        other = Domain.escrow(d.chain_id, d.staking.address)
        good = item(receipt, ch.voucher(ch.cumulative + 5 * OPG, domain=other))
        return good, 400, "invalid_signature", "voucher.signature", "another chain or escrow"
    if case == "unknown_node":
        stranger = new_key()
        sim = ChannelSim(d, ch.payer, stranger)
        return item(sim.receipt(OPG), sim.voucher(5 * OPG)), 400, "node_not_active", "receipt.node", "not an active"
    if case == "cap_exceeded":
        return item(ch.receipt(OPG, cumulative=voucher.max_cumulative + 1), voucher), 400, "cap_exceeded", \
            "receipt.cumulative", "exceeds"
    if case == "zero_amount":
        return item(ch.receipt(0, cumulative=ch.cumulative), voucher), 400, "invalid_amount", "receipt.amount", "greater"
    # Receipts invalid on their face but signed by their node are evidence: the relayer slashes that node for them
    # (slash_invalid_receipt), so these two are signed by a node of their own, not the module's channel node.
    if case == "amount_over_cumulative":
        own = ChannelSim(d, ch.payer, d.new_node(), price_cap=5 * OPG)
        return item(own.receipt(3 * OPG, cumulative=2 * OPG), own.voucher(5 * OPG)), 400, "invalid_amount", \
            "receipt.amount", "cumulative"
    if case == "future_timestamp":
        own = ChannelSim(d, ch.payer, d.new_node(), price_cap=5 * OPG)
        return item(own.receipt(OPG, timestamp=d.now() + 3600), own.voucher(5 * OPG)), 400, "invalid_timestamp", \
            "receipt.timestamp", "future"
    if case == "ancient_timestamp":
        return item(ch.receipt(OPG, timestamp=d.now() - d.params.dispute_window - 60), voucher), 400, \
            "invalid_timestamp", "receipt.timestamp", "dispute window"
    if case == "payer_mismatch":
        other = ChannelSim(d, new_key(), ch.node).voucher(5 * OPG, key=ch.payer.key)
        return item(receipt, other), 400, "payer_mismatch", "receipt.payer", "voucher.payer"
    if case == "oversized_body":
        return b'{"receipts": [' + b" " * (2 * 1024 * 1024 + 10) + b"]}", 413, "body_too_large", None, "exceeds"
    if case == "too_many_receipts":
        return {"receipts": [good] * 1001}, 413, "too_many_receipts", "receipts", "at most 1000"
    if case == "bulk_not_a_list":
        return {"receipts": {"a": 1}}, 400, "invalid_field", "receipts", "list"
    if case == "empty_body_object":
        return {}, 400, "missing_field", "receipt", "receipt"
    raise AssertionError(case)


CASES = [
    "malformed_json", "not_an_object", "wrong_type", "negative", "missing_field", "unknown_field", "bad_address",
    "short_signature", "bad_signature", "malleable_signature", "bad_v", "wrong_chain_id", "wrong_contract_domain",
    "wrong_network_field", "voucher_bad_signature", "voucher_other_escrow", "unknown_node", "cap_exceeded",
    "zero_amount", "amount_over_cumulative", "future_timestamp", "ancient_timestamp", "payer_mismatch",
    "oversized_body", "too_many_receipts", "bulk_not_a_list", "empty_body_object",
]


@pytest.mark.parametrize("case", CASES)
def test_bad_settle_input_is_refused_with_field_and_reason(relayer, setup, case):
    ch, _good_id = setup
    body, status, error, field, word = bad(ch, case)
    if isinstance(body, bytes):
        res = relayer.client.post("/settle", content=body, headers={"content-type": "application/json"})
    else:
        res = relayer.post("/settle", body)
    assert res.status_code == status, res.text
    answer = res.json()
    assert set(answer) == {"error", "field", "reason"}
    assert answer["error"] == error and answer["field"] == field, answer
    assert word.lower() in answer["reason"].lower(), answer


def test_bulk_reports_per_item_and_keeps_the_good_ones(relayer, setup):
    ch, _ = setup
    goods = [ch.next(OPG // 10) for _ in range(2)]
    body, *_ = bad(ch, "bad_signature")
    broken, *_ = bad(ch, "wrong_type")
    res = relayer.post("/settle", {"receipts": [goods[0], body, broken, goods[1]]})
    assert res.status_code == 200, res.text
    answer = res.json()
    assert answer["accepted"] == 2 and answer["refused"] == 2
    r = answer["results"]
    assert r[0]["status"] == "pending" and r[3]["status"] == "pending"
    assert r[1]["error"] == "invalid_signature" and r[1]["field"] == "receipts[1].receipt.signature"
    assert r[2]["error"] == "invalid_field" and r[2]["field"] == "receipts[2].receipt.amount"
    relayer.wait_receipts([r[0]["id"], r[3]["id"]])


def test_previously_accepted_receipts_are_unaffected(relayer, setup, devnet):
    ch, good_id = setup
    [view] = relayer.wait_receipts([good_id])
    assert view["status"] == "settled"
    channel = relayer.get(f"/channels/{ch.payer.address}/{ch.node.address}").json()
    assert channel["charged"] == str(ch.cumulative) == channel["settled"]
    assert devnet.spent(ch.payer, ch.node) == ch.cumulative
    assert relayer.get("/healthz").json()["ok"] is True


def test_other_endpoints_refuse_bad_input(relayer, devnet, setup):
    ch, _ = setup
    assert relayer.get("/receipts/0x1234").status_code == 400
    res = relayer.get("/receipts/" + rand32())
    assert res.status_code == 404 and res.json()["error"] == "not_found"
    assert relayer.get("/batches/999999").status_code == 404
    res = relayer.get("/batches", params={"status": "bogus"})
    assert res.status_code == 400 and res.json()["field"] == "status"
    res = relayer.get("/channels/0x12/0x34")
    assert res.status_code == 400 and res.json()["field"] == "payer"
    verifier = new_key()
    res = relayer.post("/verdicts", {"receiptHash": rand32(), "valid": False, "verifier": verifier.address,
                                     "signature": "0x" + "00" * 65})
    assert res.status_code == 400 and res.json()["field"] == "signature"
    res = relayer.post("/verdicts", {"receiptHash": "0x12", "valid": False, "verifier": verifier.address,
                                     "signature": "0x" + "00" * 65})
    assert res.status_code == 400 and res.json()["field"] == "receiptHash"
    from offchain.messages import Verdict

    v = Verdict(receipt_hash=rand32(), valid=False)
    sig = v.sign_with(verifier.key, devnet.staking_domain)
    res = relayer.post("/verdicts", {"receiptHash": v.receipt_hash, "valid": False, "verifier": verifier.address,
                                     "signature": sig})
    assert res.status_code == 400 and res.json()["error"] == "verifier_not_active"
    assert relayer.get("/nope").status_code == 404


# exact /settle: a settled authorisation's {from, nonce} reused by someone who did not sign ----------------------
def exact_rows(relayer) -> list[tuple]:
    """Every stored exact payment, read straight from the relayer's SQLite store (WAL: readable while it runs)."""
    import sqlite3

    conn = sqlite3.connect(f"file:{relayer.store}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT id, payer, payee, value, authorization, status, tx_hash, block_number, error"
                            " FROM exact_payments ORDER BY id").fetchall()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def settled_exact(relayer, devnet):
    """One exact payment, settled and confirmed: (its request body, its transaction, the payer)."""
    from test_relayer_verify import authorization, exact_request

    payer, merchant = new_key(), new_key()
    devnet.fund(payer, 10 * OPG)
    body = exact_request(devnet, authorization(devnet, payer, merchant.address, 2 * OPG), merchant.address, 2 * OPG)
    answer = relayer.post("/settle", body).json()
    assert answer["success"] is True, answer
    return body, answer["transaction"], payer


def forged(devnet, body: dict, value: int, signature: str) -> dict:
    """The settled request's {from, nonce} with another payTo, the given value, and the given signature."""
    from test_relayer_verify import exact_request

    thief = new_key().address
    auth = {**body["paymentPayload"]["payload"]["authorization"], "to": thief, "value": str(value)}
    return exact_request(devnet, {"authorization": auth, "signature": signature}, thief, value)


@pytest.mark.parametrize("signature", ["0x" + "11" * 65, "0x" + "00" * 65, "0x1234"])
def test_attack_exact_settle_reusing_a_settled_nonce_with_a_junk_signature_is_refused(
        relayer, devnet, settled_exact, signature):
    body, tx, payer = settled_exact
    before = exact_rows(relayer)
    answer = relayer.post("/settle", forged(devnet, body, 2 * OPG, signature)).json()
    assert answer["success"] is False and answer["transaction"] == "", answer
    assert answer["errorReason"] == "invalid_exact_evm_payload_signature", answer
    assert exact_rows(relayer) == before


def test_attack_exact_settle_with_value_1_cannot_rewrite_the_stored_payment(relayer, devnet, settled_exact):
    body, tx, payer = settled_exact
    before = exact_rows(relayer)
    assert [r[5] for r in before if r[6] == tx] == ["confirmed"]
    answer = relayer.post("/settle", forged(devnet, body, 1, "0x" + "22" * 65)).json()
    assert answer["success"] is False and answer["transaction"] == "", answer
    assert exact_rows(relayer) == before  # still confirmed: nothing stored changed
    # The genuine retry still answers the same transaction.
    again = relayer.post("/settle", body).json()
    assert again["success"] is True and again["transaction"] == tx, again
    assert exact_rows(relayer) == before


def test_attack_exact_settle_another_signed_authorisation_with_a_used_nonce_is_refused(relayer, devnet, settled_exact):
    """Even the payer's own valid signature over other fields with the settled nonce gets neither the old
    transaction nor a change to the stored record."""
    from test_relayer_verify import authorization, exact_request

    body, tx, payer = settled_exact
    before = exact_rows(relayer)
    nonce = body["paymentPayload"]["payload"]["authorization"]["nonce"]
    other = new_key().address
    answer = relayer.post("/settle", exact_request(devnet, authorization(devnet, payer, other, OPG, nonce=nonce),
                                                   other, OPG)).json()
    assert answer["success"] is False and answer["transaction"] == "", answer
    assert answer["errorReason"] == "invalid_exact_evm_nonce_already_used", answer
    assert exact_rows(relayer) == before
    assert devnet.opg.functions.balanceOf(other).call() == 0


def test_exact_settle_genuine_retry_returns_the_same_transaction(relayer, devnet, settled_exact):
    body, tx, payer = settled_exact
    before = exact_rows(relayer)
    for _ in range(2):
        again = relayer.post("/settle", body).json()
        assert again["success"] is True and again["transaction"] == tx and again["payer"] == payer.address
    assert exact_rows(relayer) == before


# A byte-identical resend of an accepted receipt, after it grew older than the receipt age limit -------------------
@pytest.fixture(scope="module")
def short_age_relayer(devnet, tmp_path_factory):
    from offchain.devkit.devnet import RelayerProc

    proc = RelayerProc(devnet, tmp_path_factory.mktemp("relayer-age") / "relayer.sqlite3", 2, "--max-receipt-age", "2")
    proc.start()
    yield proc
    proc.stop()


def test_byte_identical_resend_of_an_old_accepted_receipt_is_a_duplicate(short_age_relayer, devnet):
    relayer = short_age_relayer
    node, payer = devnet.new_node(), devnet.new_payer(10 * OPG)
    ch = ChannelSim(devnet, payer, node, price_cap=5 * OPG)
    body = ch.next(OPG)
    first = relayer.post("/settle", body)
    assert first.status_code == 200 and first.json()["duplicate"] is False, first.text
    import time

    time.sleep(3.5)  # the receipt is now older than --max-receipt-age
    again = relayer.post("/settle", body)
    assert again.status_code == 200, again.text
    assert again.json()["duplicate"] is True and again.json()["id"] == first.json()["id"], again.json()
    bulk = relayer.post("/settle", {"receipts": [body]}).json()
    assert bulk["accepted"] == 1 and bulk["results"][0]["duplicate"] is True, bulk


def test_attack_old_receipt_altered_or_never_accepted_is_still_refused_as_too_old(short_age_relayer, devnet):
    relayer = short_age_relayer
    node, payer = devnet.new_node(), devnet.new_payer(10 * OPG)
    ch = ChannelSim(devnet, payer, node, price_cap=5 * OPG)
    accepted = ch.next(OPG)
    assert relayer.post("/settle", accepted).status_code == 200
    import time

    never = item(ch.receipt(OPG, timestamp=devnet.now() - 60), ch.voucher(ch.cumulative + 5 * OPG))
    time.sleep(3.5)
    res = relayer.post("/settle", never)
    assert res.status_code == 400 and res.json()["error"] == "invalid_timestamp", res.text
    forged = {**accepted, "receipt": {**accepted["receipt"], "signature": "0x" + "00" * 65}}
    res = relayer.post("/settle", forged)
    assert res.status_code == 400 and res.json()["error"] == "invalid_timestamp", res.text
