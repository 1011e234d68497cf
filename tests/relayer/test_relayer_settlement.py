"""Receipts from several nodes and payers end up settled on-chain exactly as their vouchers allow."""

from __future__ import annotations

import re

from offchain.devkit.devchain import transact
from offchain.devkit.devnet import OPG, ChannelSim, camel, item, wait_until
from offchain.messages import Claim, merkle_root


def test_supported_docs_and_health(relayer, devnet):
    kinds = relayer.get("/supported").json()["kinds"]
    assert {"x402Version": 2, "scheme": "exact", "network": devnet.network} in kinds
    credit = next(k for k in kinds if k["scheme"] == "opg-credit")
    assert credit["network"] == devnet.network
    assert credit["extra"] == {"escrow": devnet.escrow.address, "staking": devnet.staking.address,
                               "asset": devnet.opg.address}
    spec = relayer.get("/openapi.json").json()
    for path in ("/supported", "/verify", "/settle", "/receipts/{receipt_id}", "/channels/{payer}/{node}",
                 "/batches", "/batches/{batch_id}", "/verdicts", "/slashes", "/healthz", "/metrics"):
        assert path in spec["paths"], path
    assert "SettleItem" in spec["components"]["schemas"]
    assert relayer.get("/docs").status_code == 200
    health = relayer.get("/healthz").json()
    assert health["ok"] and health["chainOk"] and health["storeOk"] and health["lastBlock"] > 0


def test_many_nodes_and_payers_settle_exactly(relayer, devnet):
    nodes = [devnet.new_node() for _ in range(2)]
    payers = [devnet.new_payer(500 * OPG) for _ in range(3)]
    balances = {p.address: devnet.balance(p) for p in payers}
    channels = [ChannelSim(devnet, p, n) for p in payers for n in nodes]
    ids = []
    # Bulk: several receipts per channel in one request, mixed channels.
    bulk = [ch.next(amount=(i % 3 + 1) * OPG // 10) for i in range(5) for ch in channels]
    res = relayer.post("/settle", {"receipts": bulk})
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["accepted"] == len(bulk) and body["refused"] == 0
    assert all(r["status"] == "pending" and re.fullmatch(r"0x[0-9a-f]{64}", r["id"]) for r in body["results"])
    ids += [r["id"] for r in body["results"]]
    # Singles, both field spellings (snake_case SDK dumps and camelCase EIP-712 names).
    for k, ch in enumerate(channels):
        one = ch.next(amount=OPG // 4)
        if k % 2:
            one = {"receipt": camel_receipt(one["receipt"]), "voucher": camel_voucher(one["voucher"])}
        res = relayer.post("/settle", one)
        assert res.status_code == 200, res.text
        assert res.json()["status"] == "pending"
        ids.append(res.json()["id"])
    views = relayer.wait_receipts(ids)
    assert all(v["batchId"] and v["tx"] for v in views)
    for ch in channels:
        assert devnet.spent(ch.payer, ch.node) == ch.cumulative
    for p in payers:
        paid = sum(ch.cumulative for ch in channels if ch.payer == p)
        assert devnet.balance(p) == balances[p.address] - paid
    # The channel view agrees with the chain.
    ch = channels[0]
    view = relayer.get(f"/channels/{ch.payer.address}/{ch.node.address}").json()
    assert view["charged"] == view["settled"] == view["settledKnown"] == str(ch.cumulative)
    assert view["voucherCap"] == str(ch.best_cap) and view["pendingReceipts"] == 0
    # Batches: confirmed, gas recorded, the root covers the batch's receipts.
    batch_ids = sorted({v["batchId"] for v in views})
    for bid in batch_ids:
        batch = relayer.get(f"/batches/{bid}").json()
        assert batch["status"] == "confirmed" and batch["gasUsed"] > 0 and batch["txHash"] == batch["transactions"][-1]
        assert all(c["outcome"] == 0 for c in batch["claims"])
        nodes_order = [c["node"].lower() for c in batch["claims"]]
        assert nodes_order == sorted(nodes_order)
        covered = [bytes.fromhex(v["id"][2:]) for v in views if v["batchId"] == bid]
        assert batch["receiptCount"] == len(covered)
        assert batch["receiptsRoot"] == "0x" + merkle_root(covered).hex()
        onchain = devnet.w3.eth.get_transaction_receipt(batch["txHash"])
        assert onchain["status"] == 1 and onchain["gasUsed"] == batch["gasUsed"]
    listed = relayer.get("/batches", params={"status": "confirmed"}).json()
    assert {b["id"] for b in listed} >= set(batch_ids)
    metrics = relayer.get("/metrics").text
    assert re.search(r"^opg_relayer_receipts_accepted_total (\d+)", metrics, re.M)
    assert int(re.search(r"^opg_relayer_settle_latency_seconds_count (\d+)", metrics, re.M).group(1)) >= len(ids)
    assert re.search(r'^opg_relayer_batches\{status="confirmed"\} \d+', metrics, re.M)
    assert re.search(r'^opg_relayer_gas_used_total\{kind="batch"\} [1-9]\d*', metrics, re.M)
    assert "opg_relayer_pending_receipts 0" in metrics


def camel_receipt(data: dict) -> dict:
    names = {"request_id": "requestId", "model_id": "modelId", "input_hash": "inputHash", "output_hash": "outputHash"}
    return {names.get(k, k): v for k, v in data.items()}


def camel_voucher(data: dict) -> dict:
    return {("maxCumulative" if k == "max_cumulative" else k): v for k, v in data.items()}


def test_same_receipt_twice_same_answer_stored_once(relayer, devnet):
    node, payer = devnet.new_node(), devnet.new_payer()
    ch = ChannelSim(devnet, payer, node)
    one = ch.next(OPG)
    first = relayer.post("/settle", one).json()
    again = relayer.post("/settle", one).json()
    assert again["id"] == first["id"] and again["duplicate"] is True and again["status"] in ("pending", "settled")
    bulk = relayer.post("/settle", {"receipts": [one, one]}).json()
    assert [r["id"] for r in bulk["results"]] == [first["id"]] * 2 and bulk["accepted"] == 2
    relayer.wait_receipts([first["id"]])
    after = relayer.post("/settle", one).json()
    assert after == {**after, "id": first["id"], "status": "settled", "duplicate": True}
    view = relayer.get(f"/channels/{payer.address}/{node.address}").json()
    assert view["charged"] == str(OPG) and view["pendingReceipts"] == 0
    assert devnet.spent(payer, node) == OPG


def test_best_voucher_and_highest_cumulative_make_the_claim(relayer, devnet):
    node, payer = devnet.new_node(), devnet.new_payer()
    ch = ChannelSim(devnet, payer, node, price_cap=OPG)
    small = ch.voucher(3 * OPG)
    big = ch.voucher(9 * OPG)
    r1 = ch.receipt(amount=2 * OPG, cumulative=2 * OPG)
    r2 = ch.receipt(amount=3 * OPG, cumulative=5 * OPG)
    r3 = ch.receipt(amount=OPG, cumulative=3 * OPG)  # arrives out of order
    res = relayer.post("/settle", {"receipts": [item(r2, big), item(r1, small), item(r3, big)]}).json()
    ids = [r["id"] for r in res["results"]]
    relayer.wait_receipts(ids)
    assert devnet.spent(payer, node) == 5 * OPG
    batch = relayer.get(f"/batches/{relayer.receipt_status(ids[0])['batchId']}").json()
    claim = next(c for c in batch["claims"] if c["payer"] == payer.address)
    assert claim["maxCumulative"] == str(9 * OPG) and claim["total"] == str(5 * OPG)


def test_broke_payer_is_rejected_others_settle(relayer, devnet):
    node = devnet.new_node()
    broke, fine = devnet.new_payer(OPG), devnet.new_payer(10 * OPG)
    a, b = ChannelSim(devnet, broke, node), ChannelSim(devnet, fine, node)
    res = relayer.post("/settle", {"receipts": [a.next(2 * OPG), b.next(2 * OPG)]}).json()
    rejected, settled = relayer.wait_receipts([r["id"] for r in res["results"]], ("settled", "rejected"))
    assert rejected["status"] == "rejected" and "balance" in rejected["reason"]
    assert settled["status"] == "settled"
    assert devnet.spent(broke, node) == 0 and devnet.balance(broke) == OPG
    assert devnet.spent(fine, node) == 2 * OPG


def test_claim_already_paid_onchain_is_marked_settled(relayer, devnet):
    """The node settles its own voucher first (it proposes the batch and waits the escrow's claim delay): the
    relayer's claim is stale, its receipts settled."""
    node, payer = devnet.new_node(), devnet.new_payer()
    ch = ChannelSim(devnet, payer, node)
    one = ch.next(OPG)
    v = one["voucher"]
    claim = Claim(payer=payer.address, node=node.address, max_cumulative=int(v["max_cumulative"]),
                  signature=v["signature"], total=OPG).as_tuple()
    transact(devnet.w3, node.key, devnet.escrow.functions.propose_batch([claim], b"\x00" * 32))
    devnet.advance(devnet.escrow.functions.claim_delay().call())
    transact(devnet.w3, node.key, devnet.escrow.functions.settle_batch([claim], b"\x00" * 32))
    rid = relayer.post("/settle", one).json()["id"]
    [view] = relayer.wait_receipts([rid])
    assert view["reason"] == "already settled on-chain"
    assert devnet.spent(payer, node) == OPG
    view = relayer.get(f"/channels/{payer.address}/{node.address}").json()
    assert view["settledKnown"] == str(OPG)


def test_x402_shaped_credit_settle(relayer, devnet):
    node, payer = devnet.new_node(), devnet.new_payer()
    ch = ChannelSim(devnet, payer, node)
    voucher = ch.voucher(5 * OPG)
    receipt = ch.receipt(OPG, cumulative=OPG)
    requirements = {"scheme": "opg-credit", "network": devnet.network, "asset": devnet.opg.address,
                    "amount": str(OPG), "payTo": node.address, "maxTimeoutSeconds": 60,
                    "extra": {"escrow": devnet.escrow.address, "staking": devnet.staking.address}}
    body = {"x402Version": 2, "paymentRequirements": requirements, "paymentPayload": {
        "x402Version": 2, "accepted": requirements,
        "payload": {"voucher": {"payer": payer.address, "node": node.address, "maxCumulative": str(5 * OPG)},
                    "signature": voucher.signature, "receipt": camel(receipt)}}}
    res = relayer.post("/settle", body)
    assert res.status_code == 200, res.text
    answer = res.json()
    assert answer["success"] is True and answer["status"] == "pending" and answer["payer"] == payer.address
    relayer.wait_receipts([answer["id"]])
    assert devnet.spent(payer, node) == OPG
    wait_until(lambda: relayer.get("/healthz").json()["pendingReceipts"] == 0, what="no pending receipts")


def test_receipt_ids_are_the_contract_digests(relayer, devnet):
    """The relayer's receipt id is the receipt's EIP-712 digest in the NodeStaking domain (what the node signs);
    receiptHash is NodeStaking.receipt_hash (what verdicts sign)."""
    node, payer = devnet.new_node(), devnet.new_payer()
    ch = ChannelSim(devnet, payer, node)
    voucher = ch.voucher(5 * OPG)
    receipt = ch.receipt(OPG, cumulative=OPG)
    answer = relayer.post("/settle", item(receipt, voucher)).json()
    r = receipt.receipt
    assert answer["id"] == "0x" + r.digest(devnet.staking_domain).hex()
    view = relayer.receipt_status(answer["id"])
    assert view["receiptHash"] == "0x" + bytes(devnet.staking.functions.receipt_hash(r.as_tuple()).call()).hex()
    assert bytes(devnet.escrow.functions.voucher_digest(payer.address, node.address, 5 * OPG).call()) == \
        voucher.voucher.fast_digest(devnet.escrow_domain)
    relayer.wait_receipts([answer["id"]])
