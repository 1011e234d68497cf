"""The verifier's store on a real SQLite file: a feed page, its sampled checks and the cursor commit together; flags,
check attempts, verdict outbox and drift statistics round-trip; readers on other threads see every committed write."""

from __future__ import annotations

import threading

from offchain.verifier.store import VerifierStore


def _item(i: int, node: str = "0xn") -> dict:
    return {"id": f"0x{i:064x}", "receipt_hash": f"0x{i + 500:064x}", "node": node, "model_id": "0xm",
            "receipt": {"requestId": f"0x{i:064x}"}, "seq": i}


def test_feed_flags_checks_outbox_and_drift(tmp_path):
    store = VerifierStore(tmp_path / "v.sqlite3")
    page = [_item(i) for i in range(1, 6)]
    store.add_feed_page(page, 5, sampled={page[0]["id"], page[1]["id"]}, skipped={page[1]["id"]: "unknown model"})
    assert store.get_state("feed_cursor") == "5" and store.receipt(page[4]["id"]).receipt == page[4]["receipt"]
    assert store.receipt_by_hash(page[2]["receipt_hash"]).id == page[2]["id"]
    assert store.counts() == {"queued": 1, "skipped": 1}
    seen: list[int] = []  # another thread reads what was committed
    reader = threading.Thread(target=lambda: seen.append(len(store.due_checks(1e12, set(), 10))))
    reader.start()
    reader.join()
    assert seen == [1]
    rid = page[0]["id"]
    store.attempt_failed(rid, "node unreachable", 10.0, 20.0)
    assert store.due_checks(15.0, set(), 10) == [] and [c.id for c in store.due_checks(20.0, set(), 10)] == [rid]
    assert store.check(rid).attempts == 1 and store.check(rid).first_attempt_at == 10.0
    assert store.add_flag(page[0]["receipt_hash"], "0xme", 7, 10**18)
    assert not store.add_flag(page[0]["receipt_hash"], "0xme", 7, 10**18)
    assert store.flagged(page[0]["receipt_hash"]) and not store.flagged_by_others(page[0]["receipt_hash"], "0xme")
    assert store.decide(rid, False, "fraud", "0xsig", 0.5, flag=True)
    store.keep_payload(rid, {"output": "x"})
    assert [c.id for c in store.unposted()] == [rid] and [c.id for c in store.pending_flags()] == [rid]
    store.mark_posted(rid, 1)
    store.set_flag_state(rid, "sent", "0xtx")
    assert store.unposted() == [] and store.pending_flags() == [] and store.check(rid).flag_tx == "0xtx"
    store.skip(page[2]["id"], "not sampled")  # no check row: nothing happens
    assert store.check(page[2]["id"]) is None
    assert store.add_drift("0xn", 10, 2, 0.5).receipts == 1
    totals = store.add_drift("0xn", 5, 1, 0.25)
    assert (totals.receipts, totals.scored, totals.drifted, totals.max_margin) == (2, 15, 3, 0.5)
    store.flag_drift("0xn")
    [drift] = store.drift()
    assert drift.flagged_at is not None
    store.set_state("flag_block", 99)
    store.close()
    again = VerifierStore(tmp_path / "v.sqlite3")
    assert again.get_state("flag_block") == "99" and again.check(rid).valid == 0 and again.ping()
    again.close()
