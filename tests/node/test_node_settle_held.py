"""``opg node settle`` and CreditEscrow's hold (protocol.md deviation 36): after the node settled a channel through
a proposal, the channel is held until ``escrow.held_until(payer, node)`` and a proposal's claim on it settling by
then is skipped (outcome 6). A second ``opg node settle`` reports the channel held until that time (human and --json)
and proposes nothing, instead of proposing, waiting the claim delay and only then learning outcome 6."""

from __future__ import annotations

import json
import subprocess
import sys

from node_kit import keystore

from offchain.deployments import PROJECT_ROOT
from offchain.devkit.devnet import OPG, ChannelSim, rand32
from offchain.node.store import NodeStore
from offchain.sdk.constants import SKIP_CHANNEL_HELD

NOT_ALL_SETTLED = 1  # opg node settle's exit code when a claim neither settled nor was already paid


def add_receipt(store: NodeStore, channel: ChannelSim, amount: int) -> str:
    """A receipt the node signed, with its voucher, as the node records it after answering."""
    entry = channel.next(amount)
    receipt, voucher = entry["receipt"], entry["voucher"]
    rid = rand32()
    store.add_receipt(receipt_id=rid, request_id=receipt["request_id"], payer=channel.payer.address, amount=amount,
                      cumulative=channel.cumulative, voucher_cap=int(voucher["max_cumulative"]),
                      item=json.dumps(entry).encode(), payload={},
                      best_voucher={"maxCumulative": str(voucher["max_cumulative"]),
                                    "signature": voucher["signature"]})
    return rid


def test_a_channel_held_by_the_nodes_own_proposal_is_reported_held_and_not_proposed_again(devnet, workdir):
    payer, node = devnet.new_payer(10 * OPG), devnet.new_node()
    channel = ChannelSim(devnet, payer, node)
    store = NodeStore(workdir / "held.sqlite3")
    store.open(devnet.chain_id, devnet.escrow.address, devnet.staking.address, node.address)
    ks, password = keystore(node, workdir)
    args = [sys.executable, "-m", "offchain.cli", "node", "settle", "--rpc-url", devnet.url, "--deployment",
            str(devnet.deployment_file), "--store", str(store.path), "--keystore", str(ks), "--password-file",
            str(password)]
    try:
        add_receipt(store, channel, OPG)
        first = subprocess.run([*args, "--json"], capture_output=True, text=True, cwd=PROJECT_ROOT)
        assert first.returncode == 0, first.stderr
        [claim] = json.loads(first.stdout)["claims"]
        assert claim["outcome"] == 0 and claim["transaction"] and claim["heldUntil"] is None
        assert devnet.spent(payer, node) == OPG
        held = devnet.escrow.functions.held_until(payer.address, node.address).call()
        assert held >= devnet.chain_now() + devnet.escrow.functions.claim_delay().call()

        add_receipt(store, channel, OPG)  # more work on the channel while it is held
        nonce = devnet.w3.eth.get_transaction_count(node.address)
        again = subprocess.run([*args, "--json"], capture_output=True, text=True, cwd=PROJECT_ROOT)
        assert again.returncode == NOT_ALL_SETTLED, again.stderr
        [claim] = json.loads(again.stdout)["claims"]
        assert claim["outcome"] == SKIP_CHANNEL_HELD and claim["heldUntil"] == held
        assert claim["transaction"] is None and f"held until {held}" in claim["result"]
        assert claim["total"] == str(2 * OPG) and claim["spent"] == str(OPG)
        human = subprocess.run(args, capture_output=True, text=True, cwd=PROJECT_ROOT)
        assert human.returncode == NOT_ALL_SETTLED and f"held until {held}" in human.stdout, human.stdout + human.stderr
        assert "proposed" not in human.stderr
        assert devnet.w3.eth.get_transaction_count(node.address) == nonce  # no proposal, no transaction
        assert devnet.spent(payer, node) == OPG
    finally:
        store.close()
