"""Unit checks of the relayer's fast paths against the reference implementations (no chain, no process)."""

from __future__ import annotations

import secrets

import pytest
from eth_abi import encode
from eth_account import Account
from eth_keys import keys

from offchain.messages import (
    SECP256K1_HALF_N,
    Domain,
    InvalidSignature,
    Receipt,
    Verdict,
    Voucher,
    recover_signer,
)
from offchain.relayer.batcher import SETTLE_SELECTOR, SETTLE_TYPES, claim_tuple, decode_batch_logs, settle_calldata
from offchain.relayer.ledger import Ledger
from offchain.relayer.metrics import Metrics


def random_signature() -> str:
    """A canonical-looking 65-byte r || s || v (low s, v in {27, 28}); settle_batch takes it compact."""
    r, s = secrets.token_bytes(32), secrets.randbelow(SECP256K1_HALF_N).to_bytes(32, "big")
    return "0x" + (r + s + bytes([27 + secrets.randbelow(2)])).hex()


def random_claims(n: int) -> list[dict]:
    return [{"payer": Account.create().address, "node": Account.create().address,
             "maxCumulative": str(secrets.randbits(250)), "signature": random_signature(),
             "total": str(secrets.randbits(120))} for _ in range(n)]


@pytest.mark.parametrize("n", [1, 2, 7, 256])
def test_settle_calldata_matches_eth_abi(n):
    claims, root = random_claims(n), secrets.token_bytes(32)
    expected = SETTLE_SELECTOR + encode(SETTLE_TYPES, [[claim_tuple(c) for c in claims], root])
    assert settle_calldata(claims, root) == expected


def test_fast_digest_equals_eth_account_digest():
    d1 = Domain.staking(31337, Account.create().address)
    d2 = Domain.escrow(8453, Account.create().address)
    acct = Account.create()
    messages = [
        Receipt(request_id="0x" + secrets.token_hex(32), payer=acct.address, node=Account.create().address,
                model_id="0x" + secrets.token_hex(32), input_hash="0x" + secrets.token_hex(32),
                output_hash="0x" + secrets.token_hex(32), amount=2**200, cumulative=2**256 - 1, timestamp=2**64 - 1),
        Voucher(payer=acct.address, node=Account.create().address, max_cumulative=12345),
        Verdict(receipt_hash="0x" + secrets.token_hex(32), valid=True),
        Verdict(receipt_hash="0x" + secrets.token_hex(32), valid=False),
    ]
    for m in messages:
        for d in (d1, d2):
            assert m.fast_digest(d) == m.digest(d)
            assert recover_signer(m.fast_digest(d), m.sign_with(acct.key, d)) == acct.address


def test_recovery_agrees_with_eth_keys_and_refuses_malleable():
    digest = secrets.token_bytes(32)
    for _ in range(300):
        r, s = secrets.randbits(256), secrets.randbits(255)
        for v in (27, 28):
            sig = r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([v])
            try:
                ours = recover_signer(digest, sig)
            except InvalidSignature:
                ours = None
            if s > SECP256K1_HALF_N:
                assert ours is None
                continue
            try:
                ref = keys.Signature(vrs=(v - 27, r, s)).recover_public_key_from_msg_hash(digest).to_checksum_address()
            except Exception:
                ref = None
            assert ours == ref


def test_decode_batch_logs_reads_the_escrow_events_only():
    from offchain.relayer.batcher import TOPIC_BATCH, TOPIC_SKIPPED

    escrow, other = Account.create().address, Account.create().address
    p1, p2, n1, n2 = (Account.create().address for _ in range(4))

    def topic(addr: str) -> bytes:
        return bytes(12) + bytes.fromhex(addr[2:])

    def packed(addr: str, low: int) -> int:
        return int(addr, 16) << 96 | low

    # BatchSettled(amount, settled[], runs[]): claims (p1,n1) 5, (p2,n1) 3, (p1,n2) 4 + 2 (two claims, one channel)
    settled_words = [packed(p1, 5), packed(p2, 3), packed(p1, 4), packed(p1, 2)]
    run_words = [packed(n1, 2), packed(n2, 2)]
    data = encode(["uint256", "uint256[]", "uint256[]"], [14, settled_words, run_words])
    logs = [
        {"address": escrow, "topics": [TOPIC_SKIPPED, topic(n2), topic(p2)], "data": encode(["uint256", "uint8"], [7, 4])},
        {"address": other, "topics": [TOPIC_BATCH, bytes(32), topic(other)], "data": data},
        {"address": escrow.lower(), "topics": [TOPIC_BATCH, bytes(32), topic(other)], "data": data},
    ]
    settled, skipped, amount = decode_batch_logs({"logs": logs}, escrow)
    assert settled == {(p1, n1): 5, (p2, n1): 3, (p1, n2): 6}
    assert skipped == {(n2, p2): (7, 4)}
    assert amount == 14


def test_ledger_outstanding_counts_unsettled_charges_of_every_channel():
    ledger = Ledger()
    a = ledger.channel("0xP", "0xA")
    b = ledger.channel("0xP", "0xB")
    a.charged, a.settled = 10, 4
    b.charged, b.settled = 3, 3
    ledger.channel("0xQ", "0xA").charged = 100
    assert ledger.outstanding("0xP") == 6
    assert ledger.outstanding("0xnobody") == 0


def test_metrics_text_format():
    m = Metrics()
    m.receipts_accepted.inc(3)
    m.receipts_refused.inc(1, "invalid_signature")
    m.settle_latency.observe_many([0.1, 3.0, 1000.0])
    m.gauge("opg_relayer_pending_receipts", "pending", lambda: {(): 7})
    text = m.render()
    assert "opg_relayer_receipts_accepted_total 3\n" in text
    assert 'opg_relayer_receipts_refused_total{error="invalid_signature"} 1\n' in text
    assert 'opg_relayer_settle_latency_seconds_bucket{le="0.25"} 1\n' in text
    assert 'opg_relayer_settle_latency_seconds_bucket{le="+Inf"} 3\n' in text
    assert "opg_relayer_settle_latency_seconds_count 3\n" in text
    assert "# TYPE opg_relayer_pending_receipts gauge\nopg_relayer_pending_receipts 7\n" in text


def _node_reserved_by_walking(ledger, reservations, node, payer, chain_now):
    """The definition of proposals.node_reserved, walking every channel of the node."""
    extra = reservations.node_channels(node, chain_now)
    reserved, settled_sum = 0, 0
    for p in set(ledger.by_node.get(node, ())) | set(extra):
        ch = ledger.get(p, node)
        charged, settled = (ch.charged, ch.settled) if ch else (0, 0)
        settled_sum += settled
        if p != payer:
            amount, floor = extra.get(p, (0, 0))
            reserved += max(0, max(charged, amount) - max(settled, floor))
    return reserved, extra.get(payer, (0, 0))[0], settled_sum


def test_node_reserved_from_running_totals_equals_walking_the_nodes_channels():
    """/verify counts a node's reserved pay from the ledger's per-node running totals (no walk over its payers):
    the same answer as the walk, whatever the order of charges, settlements, promises and proposals."""
    import random

    from offchain.relayer.proposals import ProposedClaim, Reservations, node_reserved

    rnd = random.Random(15)
    for _trial in range(200):
        ledger, reservations = Ledger(), Reservations()
        payers, nodes = [f"0xp{i}" for i in range(6)], [f"0xn{i}" for i in range(3)]
        for _step in range(40):
            payer, node, kind = rnd.choice(payers), rnd.choice(nodes), rnd.random()
            if kind < 0.4:
                ch = ledger.channel(payer, node)
                ch.charged = rnd.randint(0, 100)
                if rnd.random() < 0.5:
                    ch.settled = rnd.randint(0, 120)
            elif kind < 0.6:
                reservations.promise(payer, node, rnd.randint(0, 150), "")
            else:
                reservations.add_proposed(ProposedClaim(payer, node, rnd.randint(0, 150), payer, rnd.randint(0, 20),
                                                        rnd.randint(0, 150), rnd.randint(0, 50)))
            for p in payers:
                for n in nodes:
                    assert node_reserved(ledger, reservations, n, p, 10) == \
                        _node_reserved_by_walking(ledger, reservations, n, p, 10)
