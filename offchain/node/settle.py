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
address) before proposing and again before settling.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass

from web3 import Web3

from ..chain import SKIP_REASONS, Chain
from ..daemon.keys import load_account
from ..deployments import load_deployment
from ..devkit.devchain import transact
from ..messages import Claim, merkle_root
from .config import ConfigError, NodeSettings
from .store import NodeStore

MAX_CLAIMS = 256
GAS_FLOOR, GAS_PER_CLAIM = 400_000, 60_000


@dataclass
class ChannelClaim:
    payer: str
    spent: int
    total: int
    receipts: list[str]
    claim: Claim
    outcome: int | None = None


def plan(settings: NodeSettings) -> tuple[Chain, object, list[ChannelClaim]]:
    w3 = Web3(Web3.HTTPProvider(settings.rpc_url, request_kwargs={"timeout": 30}))
    chain_id = int(w3.eth.chain_id)
    account = load_account(settings, chain_id)
    chain = Chain(w3=w3, deployment=load_deployment(chain_id=chain_id, path=settings.deployment))
    store = NodeStore(settings.store)
    meta = store.open_readonly()
    if meta.get("node", "").lower() != account.address.lower():
        raise ConfigError(f"store {settings.store} belongs to node {meta.get('node')}, not {account.address}")
    if meta.get("chain_id") != str(chain_id):
        raise ConfigError(f"store {settings.store} was made for chain {meta.get('chain_id')}, not {chain_id}")
    claims = []
    try:
        for payer, cumulative, voucher in store.channels():
            if voucher is None:
                continue
            spent = int(chain.escrow.functions.spent(payer, account.address).call())
            total = min(cumulative, int(voucher["maxCumulative"]))
            if total <= spent:
                continue
            claim = Claim(payer=payer, node=account.address, max_cumulative=int(voucher["maxCumulative"]),
                          signature=voucher["signature"], total=total)
            claims.append(ChannelClaim(payer, spent, total, store.receipt_ids_above(payer, spent), claim))
    finally:
        store.close()
    return chain, account, claims


def _chain_time(chain: Chain) -> int:
    return int(chain.w3.eth.get_block("latest")["timestamp"])


def propose_and_wait(chain: Chain, account, claims: list[tuple], root: bytes, log=None) -> None:
    """Propose ``settle_batch(claims, root)`` unless a live proposal of it exists, then wait until it is due (by the
    chain's clock: a block at or after the due time)."""
    log = log or (lambda message: print(message, file=sys.stderr))
    escrow = chain.escrow
    proposal = escrow.functions.proposal_id(claims, root).call()
    due, expires = (int(x) for x in escrow.functions.proposal_of(proposal).call())
    if expires <= _chain_time(chain):
        fn = escrow.functions.propose_batch(claims, root)
        gas = max(2 * chain.w3.eth.estimate_gas(fn.build_transaction({"from": account.address})), GAS_FLOOR)
        transact(chain.w3, account.key, fn, gas=gas)
        due, expires = (int(x) for x in escrow.functions.proposal_of(proposal).call())
        log(f"proposed {len(claims)} claim(s); the escrow lets this node settle them from {due} (chain time), "
            f"in {max(0, due - _chain_time(chain))} s")
    while _chain_time(chain) < due:
        time.sleep(min(2.0, max(0.2, due - _chain_time(chain))))
        if due - time.time() <= 0:  # a chain mining on demand (anvil): a block stamps the current time
            try:
                chain.w3.provider.make_request("evm_mine", [])
            except Exception:
                pass


def settle(settings: NodeSettings, dry_run: bool, log=None) -> list[dict]:
    chain, account, claims = plan(settings)
    results = []
    facilitator = bool(chain.escrow.functions.is_facilitator(account.address).call())
    # The outcomes a settlement would have now, asked as a facilitator would (no proposal needed for the call).
    simulate_from = account.address if facilitator else (chain.deployment.params.facilitators or [account.address])[0]
    for start in range(0, len(claims), MAX_CLAIMS):
        part = claims[start:start + MAX_CLAIMS]
        root = merkle_root([bytes.fromhex(i[2:]) for c in part for i in c.receipts])
        tuples = [c.claim.as_tuple() for c in part]
        fn = chain.escrow.functions.settle_batch(tuples, root)
        outcomes = fn.call({"from": simulate_from})
        if not dry_run and not facilitator and any(o == 0 for o in outcomes):
            propose_and_wait(chain, account, tuples, root, **({"log": log} if log else {}))
            outcomes = fn.call({"from": account.address})
        tx = None
        if not dry_run and any(o == 0 for o in outcomes):
            # eth_estimateGas can find a limit at which a claim's inner calls fail softly (a skip, not a revert), far
            # below what paying it takes: never go under a generous static bound (unused gas is not paid).
            estimate = chain.w3.eth.estimate_gas(fn.build_transaction({"from": account.address}))
            gas = max(2 * estimate, GAS_FLOOR + GAS_PER_CLAIM * len(part))
            tx = "0x" + bytes(transact(chain.w3, account.key, fn, gas=gas)["transactionHash"]).hex()
        for c, outcome in zip(part, outcomes, strict=True):
            results.append({"payer": c.payer, "spent": str(c.spent), "total": str(c.total),
                            "receipts": len(c.receipts), "outcome": int(outcome),
                            "result": SKIP_REASONS.get(int(outcome), str(outcome)),
                            "transaction": tx, "dryRun": dry_run})
    return results


def print_results(results: list[dict], as_json: bool) -> None:
    if as_json:
        print(json.dumps({"claims": results}, indent=2))
        return
    if not results:
        print("nothing to settle: every channel is paid up to its highest receipt")
        return
    for r in results:
        verb = "would settle" if r["dryRun"] and r["outcome"] == 0 else r["result"]
        print(f"{r['payer']}: {int(r['total']) - int(r['spent'])} wei ({r['receipts']} receipt(s)) -> {verb}"
              + (f" in {r['transaction']}" if r["transaction"] else ""))
