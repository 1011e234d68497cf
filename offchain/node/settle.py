"""``opg node settle``: the node settles its own vouchers on-chain, without the relayer.

For each channel in the store whose highest receipt cumulative exceeds ``escrow.spent(payer, node)``, one claim
``(payer, node, best voucher's maxCumulative, its signature, total = that cumulative)`` goes into
``CreditEscrow.settle_batch`` (up to 256 claims a transaction), with the Merkle root of the receipts it covers. The
batch is simulated first and each claim's outcome reported. Settling is idempotent (the escrow pays up to an absolute
total and skips what is paid), so running it while the relayer also settles is harmless. Use it when the relayer is
down or censors the node, when it refused receipts (e.g. handed over too late), or before a payer's withdrawal
becomes ready (by half the thaw period). The node's key pays the gas.

Only the escrow's facilitators (the relayers) settle at once. Any other account proposes the batch first
(``propose_batch``), waits the escrow's ``claim_delay`` (an eighth of the thaw period by default) and then settles
exactly that batch; meanwhile the relayer settles the claims it accepted for those payers (a payer cannot spend
credits promised to one node by settling them to another first). The outcomes are simulated (from a facilitator's
address) before proposing and again before settling. A channel settled through a proposal is held until
``escrow.held_until(payer, node)`` (protocol.md deviation 36): a proposal's claim settling by then is skipped (reason
6), so a channel held at least ``claim_delay`` from now is left out of the proposal and reported "held until T"
(a facilitator's claim is not held: a facilitator node settles it). A channel has one claim, so all of a channel's
receipts go into one proposal.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any

from ..messages import Claim, merkle_root
from ..sdk.connect import Connection, connect
from ..sdk.constants import SKIP_CHANNEL_HELD, SKIP_REASONS
from ..sdk.tx import TxFailed, TxManager, hex_hash
from .config import ConfigError, NodeSettings
from .store import NodeStore

MAX_CLAIMS = 256
GAS_FLOOR, GAS_PER_CLAIM = 400_000, 60_000
TX_TIMEOUT = 120.0


@dataclass
class ChannelClaim:
    payer: str
    spent: int
    total: int
    receipts: list[str]
    claim: Claim
    held_until: int = 0  # a proposal made now would be skipped: the channel is held until then (chain time)


def plan(settings: NodeSettings) -> tuple[Connection, list[ChannelClaim]]:
    conn = connect(settings, require=("CreditEscrow",), timeout=30)
    account, chain_id, escrow = conn.account, conn.chain_id, conn.contracts.escrow
    assert account is not None
    store = NodeStore(settings.store)
    meta = store.open_readonly()
    if meta.get("node", "").lower() != account.address.lower():
        raise ConfigError(f"store {settings.store} belongs to node {meta.get('node')}, not {account.address}")
    if meta.get("chain_id") != str(chain_id):
        raise ConfigError(f"store {settings.store} was made for chain {meta.get('chain_id')}, not {chain_id}")
    claims = []
    # A proposal made now settles at the earliest claim_delay from now; a channel held until then would be skipped.
    held_from = 0 if escrow.is_facilitator(account.address) else (
        conn.clock.block_time() + int(escrow.functions.claim_delay().call()))
    try:
        for payer, cumulative, voucher in store.channels():
            if voucher is None:
                continue
            spent = escrow.spent(payer, account.address)
            total = min(cumulative, int(voucher["maxCumulative"]))
            if total <= spent:
                continue
            claim = Claim(payer=payer, node=account.address, max_cumulative=int(voucher["maxCumulative"]),
                          signature=voucher["signature"], total=total)
            held = int(escrow.functions.held_until(payer, account.address).call()) if held_from else 0
            claims.append(ChannelClaim(payer, spent, total, store.receipt_ids_above(payer, spent), claim,
                                       held if held >= held_from else 0))
    finally:
        store.close()
    return conn, claims


def _send(tx: TxManager, fn: Any, kind: str, gas: int) -> str:
    """Send with this gas limit (not the manager's estimate: see ``settle``), wait; the transaction hash."""
    sent = tx.send(fn, kind, gas=gas)
    receipt = tx.wait(sent.tx_hash, TX_TIMEOUT)
    if receipt is None or receipt["status"] != 1:
        raise TxFailed(f"{kind}: {sent.tx_hash} " + ("reverted" if receipt is not None else "not mined"), receipt)
    return hex_hash(receipt["transactionHash"])


def propose_and_wait(conn: Connection, tx: TxManager, claims: list[tuple], root: bytes, log=None) -> None:
    """Propose ``settle_batch(claims, root)`` unless a live proposal of it exists, then wait until it is due (by the
    chain's clock: a block at or after the due time)."""
    log = log or (lambda message: print(message, file=sys.stderr))
    escrow, clock = conn.contracts.escrow.functions, conn.clock
    proposal = escrow.proposal_id(claims, root).call()
    due, expires = (int(x) for x in escrow.proposal_of(proposal).call())
    if expires <= clock.block_time():
        fn = escrow.propose_batch(claims, root)
        _send(tx, fn, "propose_batch", max(2 * conn.w3.eth.estimate_gas(fn.build_transaction({"from": tx.address})),
                                           GAS_FLOOR))
        due, expires = (int(x) for x in escrow.proposal_of(proposal).call())
        log(f"proposed {len(claims)} claim(s); the escrow lets this node settle them from {due} (chain time), "
            f"in {max(0, due - clock.block_time())} s")
    while clock.block_time() < due:
        time.sleep(min(2.0, max(0.2, due - clock.block_time())))
        if due - time.time() <= 0:  # a chain mining on demand (anvil): a block stamps the current time
            try:
                conn.w3.provider.make_request("evm_mine", [])
            except Exception:
                pass


def _result(c: ChannelClaim, outcome: int, sent: str | None, dry_run: bool) -> dict:
    result = SKIP_REASONS.get(outcome, str(outcome))
    if c.held_until:
        result = f"held until {c.held_until} (chain time) by a settlement through a proposal: not proposed"
    return {"payer": c.payer, "spent": str(c.spent), "total": str(c.total), "receipts": len(c.receipts),
            "outcome": outcome, "result": result, "heldUntil": c.held_until or None, "transaction": sent,
            "dryRun": dry_run}


def settle(settings: NodeSettings, dry_run: bool, log=None) -> list[dict]:
    conn, planned = plan(settings)
    account, escrow = conn.account, conn.contracts.escrow
    assert account is not None
    tx = TxManager(conn.w3, account, conn.chain_id)
    results = [_result(c, SKIP_CHANNEL_HELD, None, dry_run) for c in planned if c.held_until]
    claims = [c for c in planned if not c.held_until]
    facilitator = escrow.is_facilitator(account.address)
    # The outcomes a settlement would have now, asked as a facilitator would (no proposal needed for the call).
    simulate_from = account.address if facilitator else (conn.deployment.params.facilitators or [account.address])[0]
    for start in range(0, len(claims), MAX_CLAIMS):
        part = claims[start:start + MAX_CLAIMS]
        root = merkle_root([bytes.fromhex(i[2:]) for c in part for i in c.receipts])
        tuples = [c.claim.as_tuple() for c in part]
        fn = escrow.functions.settle_batch(tuples, root)
        outcomes = fn.call({"from": simulate_from})
        if not dry_run and not facilitator and any(o == 0 for o in outcomes):
            propose_and_wait(conn, tx, tuples, root, **({"log": log} if log else {}))
            outcomes = fn.call({"from": account.address})
        sent = None
        if not dry_run and any(o == 0 for o in outcomes):
            # eth_estimateGas can find a limit at which a claim's inner calls fail softly (a skip, not a revert), far
            # below what paying it takes: never go under a generous static bound (unused gas is not paid).
            estimate = conn.w3.eth.estimate_gas(fn.build_transaction({"from": account.address}))
            sent = _send(tx, fn, "settle_batch", max(2 * estimate, GAS_FLOOR + GAS_PER_CLAIM * len(part)))
        results += [_result(c, int(outcome), sent, dry_run) for c, outcome in zip(part, outcomes, strict=True)]
    return results
