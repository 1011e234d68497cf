"""``opg node settle``: the node settles its own vouchers on-chain, without the relayer.

For each channel in the store whose highest receipt cumulative exceeds ``escrow.spent(payer, node)``, one claim
``(payer, node, best voucher's maxCumulative, its signature, total = that cumulative)`` goes into
``CreditEscrow.settle_batch`` (up to 256 claims a transaction), with the Merkle root of the receipts it covers. The
batch is simulated first and each claim's outcome reported. Settling is idempotent (the escrow pays up to an absolute
total and skips what is paid), so running it while the relayer also settles is harmless. Use it when the relayer is
down or censors the node, when it refused receipts (e.g. handed over too late), or before a payer's withdrawal
becomes ready. The node's key pays the gas.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from web3 import Web3

from ..chain import SKIP_REASONS, Chain
from ..daemon.keys import load_account
from ..deployments import load_deployment
from ..devchain import transact
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


def settle(settings: NodeSettings, dry_run: bool) -> list[dict]:
    chain, account, claims = plan(settings)
    results = []
    for start in range(0, len(claims), MAX_CLAIMS):
        part = claims[start:start + MAX_CLAIMS]
        root = merkle_root([bytes.fromhex(i[2:]) for c in part for i in c.receipts])
        fn = chain.escrow.functions.settle_batch([c.claim.as_tuple() for c in part], root)
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
