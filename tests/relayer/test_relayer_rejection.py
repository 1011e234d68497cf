"""A batch whose simulation keeps reverting is rejected with its receipts (policy.BatchPolicy.give_up), not retried
for ever: a relayer whose account is no facilitator of the escrow sees every settle_batch revert ("batch not
proposed")."""

from __future__ import annotations

import time

from offchain.devkit.devnet import FACILITATOR_ACCOUNTS, OPG, ChannelSim, RelayerProc, wait_until
from offchain.relayer.policy import REJECT_AFTER

NOT_FACILITATOR = 8
assert NOT_FACILITATOR not in FACILITATOR_ACCOUNTS


def test_reverting_batch_is_rejected_with_its_receipts_and_not_retried(devnet, tmp_path):
    payer, node = devnet.new_payer(10 * OPG), devnet.new_node()
    channel = ChannelSim(devnet, payer, node)
    relayer = RelayerProc(devnet, tmp_path / "r.sqlite3", NOT_FACILITATOR).start()
    try:
        ids = []
        for _ in range(3):
            res = relayer.post("/settle", channel.next(OPG // 10))
            assert res.status_code == 200, res.text
            ids.append(res.json()["id"])
        views = relayer.wait_receipts(ids, statuses=("rejected",), timeout=60)
        reasons = {v["reason"] for v in views}
        assert len(reasons) == 1 and "batch not proposed" in reasons.pop()
        failed = relayer.get("/batches", params={"status": "failed"}).json()
        assert len(failed) == 1 and "batch not proposed" in failed[0]["error"]
        assert failed[0]["receiptCount"] == 3 and failed[0].get("txHash") is None  # never sent
        assert devnet.spent(payer, node) == 0
        # Given up, not retried: no new batch, nothing pending, the worker healthy again.
        metrics = relayer.get("/metrics").text
        assert 'opg_relayer_batches_total{status="rejected"} 1' in metrics
        time.sleep(1.5)
        assert len(relayer.get("/batches").json()) == 1
        health = wait_until(lambda: (h := relayer.get("/healthz").json())["lastError"] is None and h, what="healthy")
        assert health["pendingReceipts"] == 0 and health["inflightBatch"] is None
        log = relayer.log.read_text()
        assert log.count("batch simulation reverted") == REJECT_AFTER
    finally:
        relayer.stop()
