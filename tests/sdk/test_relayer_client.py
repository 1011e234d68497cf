"""The SDK's RelayerClient against a real relayer process: receipts handed over in the wire form, then every read
typed by the relayer's own models; a relayer that is not there is RelayerUnavailable."""

from __future__ import annotations

import pytest

from offchain.devkit.devnet import OPG, ChannelSim, RelayerProc, wait_until
from offchain.messages import Receipt
from offchain.sdk.relayer_client import RelayerClient, RelayerError, RelayerUnavailable
from offchain.sdk.wire import SignatureChecker, parse_receipt, receipt_json, voucher_json


@pytest.fixture(scope="module")
def sdk_relayer(sdk_devnet, tmp_path_factory) -> RelayerProc:
    proc = RelayerProc(sdk_devnet, tmp_path_factory.mktemp("relayer") / "relayer.sqlite3", dev_account=2).start()
    yield proc
    proc.stop()


def test_hand_over_and_typed_reads(sdk_devnet, sdk_relayer):
    d = sdk_devnet
    channel = ChannelSim(d, d.new_payer(deposit=100 * OPG), d.new_node())
    client = RelayerClient(sdk_relayer.url)
    try:
        voucher = channel.voucher(10 * OPG)
        receipt = channel.receipt(3 * OPG)
        status, answer = client.hand_over({"receipt": receipt_json(receipt), "voucher": voucher_json(voucher)})
        assert status == 200 and answer["status"] in ("pending", "settled"), answer
        receipt_id = "0x" + SignatureChecker(d.staking_domain).digest(
            Receipt(**receipt.model_dump(exclude={"signature"}))).hex()
        assert answer["id"] == receipt_id
        settled = wait_until(lambda: (v := client.receipt(receipt_id)) and v.status == "settled" and v, timeout=60,
                             what="the receipt settled")
        assert settled.amount == str(3 * OPG) and settled.batch_id is not None
        batch = client.batch(settled.batch_id)
        assert batch is not None and batch.status == "confirmed" and batch.receipt_count == 1
        assert any(b.id == batch.id for b in client.batches(status="confirmed"))
        view = client.channel(channel.payer.address, channel.node.address)
        assert view.settled == str(3 * OPG) and view.voucher_cap == str(10 * OPG)
        page = client.feed(after=0)
        item = next(i for i in page.receipts if i.id == receipt_id)
        assert parse_receipt(item.receipt) == receipt  # the feed serves the wire form
        assert client.node(channel.node.address).receipts == 1
        health = client.health()
        assert health is not None and health.ok and health.chain_id == d.chain_id
        assert client.reachable()
        assert client.receipt("0x" + "00" * 32) is None
    finally:
        client.close()


def test_refusals_and_an_absent_relayer(sdk_relayer):
    client = RelayerClient(sdk_relayer.url)
    status, answer = client.hand_over({"receipt": {"amount": "1"}})
    assert 400 <= status < 500 and answer  # a refusal is an answer, not an exception
    with pytest.raises(RelayerError):
        client.channel("not-an-address", "0x" + "00" * 20)
    client.close()
    gone = RelayerClient("http://127.0.0.1:9", timeout=1)
    with pytest.raises(RelayerUnavailable, match="unreachable"):
        gone.batches()
    assert gone.health() is None and not gone.reachable()
