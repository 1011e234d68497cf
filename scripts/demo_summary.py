"""The demo's summary, read from on-chain state and events (``BatchSettled``, ``ChargesVoided``, ``Slashed``,
``FraudProven``, OPG ``Transfer``), and the checks that it reconciles with what the payers were told."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from web3.logs import DISCARD

from offchain.client import format_opg
from offchain.sdk.constants import slash_kind
from offchain.sdk.contracts import BatchSettled, NodeRecord
from offchain.sdk.relayer_client import RelayerClient, RelayerError


def _logs(event, from_block: int = 0) -> list:
    return list(event.get_logs(from_block=from_block))


def settled_deltas(chain) -> tuple[dict[tuple[str, str], int], list[dict]]:
    """Per (payer, node): the total settled by batches; and one row per batch (from its ``BatchSettled`` log)."""
    per_channel: dict[tuple[str, str], int] = defaultdict(int)
    batches = []
    for log in _logs(chain.escrow.events.BatchSettled):
        for channel, amount in BatchSettled.from_event(log).per_channel().items():
            per_channel[channel] += amount
        receipt = chain.w3.eth.get_transaction_receipt(log.transactionHash)
        batches.append({"tx": log.transactionHash.hex(), "block": log.blockNumber, "claims": len(log.args.settled),
                        "amount": log.args.amount, "gas": receipt.gasUsed,
                        "root": "0x" + bytes(log.args.receipts_root).hex()})
    return per_channel, batches


def summary(system, payers, answers) -> dict[str, Any]:
    chain = system.chain
    esc, stk, dist, opg = chain.escrow.functions, chain.staking.functions, chain.distributor.functions, chain.opg
    per_channel, batches = settled_deltas(chain)
    # Requests each batch covered: the relayer's record of the batch with that transaction.
    relayer = RelayerClient(system.relayer_url, timeout=10)
    try:
        by_tx = {(v.tx_hash or "").lower().removeprefix("0x"): v for v in relayer.batches(limit=1000)}
    except RelayerError:
        by_tx = {}
    finally:
        relayer.close()
    for b in batches:
        view = by_tx.get(b["tx"].lower().removeprefix("0x"))
        b["requests"] = view.receipt_count if view else None
        b["id"] = view.id if view else None
        b["gas_per_request"] = round(b["gas"] / b["requests"]) if b.get("requests") else None
    exact_gas = []
    for a in answers:
        if a.scheme == "exact" and a.transaction:
            exact_gas.append(chain.w3.eth.get_transaction_receipt(a.transaction).gasUsed)
    slashes = [{"node": log.args.node, "kind": slash_kind(log.args.kind),
                "payer": log.args.payer, "amount": log.args.amount, "refund": log.args.refund,
                "reward": log.args.reward, "burned": log.args.burned, "tx": log.transactionHash.hex()}
               for log in _logs(chain.staking.events.Slashed)]
    voided = [{"payer": log.args.payer, "node": log.args.node, "amount": log.args.amount}
              for log in _logs(chain.escrow.events.ChargesVoided)]
    frauds = [{"node": log.args.node, "receipt_hash": "0x" + bytes(log.args.receipt_hash).hex()}
              for log in _logs(chain.staking.events.FraudProven)]
    epoch_now = dist.epoch_now().call()
    verifier_rows = []
    for v in system.verifiers:
        pool = 0
        for e in range(epoch_now + 1):
            total = stk.total_weight_in(e).call()
            if total:
                pool += dist.epoch_verifier_fees(e).call() * stk.weight_in(e, v.address).call() // total
        node_state = NodeRecord.of(stk.nodes(v.address).call())
        verifier_rows.append({"name": v.name, "address": v.address, "pool_share": pool,
                              "claimable": dist.claimable_of(v.address).call(), "stake": node_state.stake,
                              "wallet": opg.functions.balanceOf(v.address).call()})
    node_rows = []
    for n in system.nodes:
        state = NodeRecord.of(stk.nodes(n.address).call())
        node_rows.append({"name": n.name, "address": n.address, "claimable": dist.claimable_of(n.address).call(),
                          "stake": state.stake, "jailed": state.jailed, "cheat_rate": n.cheat_rate,
                          "answers": len([a for a in answers if a.node == n.name])})
    payer_rows = []
    for p in payers:
        refunds = sum(s["refund"] for s in slashes if s["payer"] == p.address)
        payer_rows.append({
            "name": p.name, "address": p.address, "how": p.how, "credits_before": p.credits_before,
            "deposited": p.deposited, "credits_after": esc.balance_of(p.address).call(), "refunds": refunds,
            "answers": [{"index": a.index, "node": a.node, "mode": a.mode, "scheme": a.scheme, "cost": a.cost}
                        for a in p.answers],
        })
    report = {"payers": payer_rows, "batches": batches, "exact_gas": exact_gas, "at_scale": at_scale(),
              "nodes": node_rows,
              "verifiers": verifier_rows, "slashes": slashes, "voided": voided, "frauds": frauds,
              "treasury": dist.claimable_of(dist.treasury().call()).call(),
              "settled": {f"{k[0]}/{k[1]}": v for k, v in per_channel.items()}}
    report["season"] = season_usage(system, [p.address for p in payers], slashes, per_channel)
    print_summary(system, report)
    return report


def season_usage(system, payers: list[str], slashes: list[dict],
                 per_channel: dict[tuple[str, str], int]) -> dict:
    """Each payer's standing in the open season (docs/seasons.md): the seasons package's pure usage function
    (``season_rows``) over the demo's blocks, from the deployment's start to the latest block, read from the chain's
    logs alone, as ``opg balance`` shows it. The usage of a node slashed for a node offence counts zero: ``zero``
    lists, per payer, what it settled with each such node."""
    from offchain.seasons.ops import Seasons
    from offchain.seasons.usage import NODE_OFFENCES, fetch_logs, season_rows

    chain = system.chain
    config = Seasons(chain.w3, chain.deployment, system.deployment_file).provisional_config()
    season = config.seasons[-1]
    rows = season_rows(fetch_logs(chain.w3, config, from_block=season.from_block), config, season)
    offenders = {s["node"]: s["kind"] for s in slashes if s["kind"] in NODE_OFFENCES.values()}
    names = {n.address: n.name for n in system.nodes}
    out = {"season": season.season, "from_block": season.from_block, "to_block": season.to_block, "payers": {}}
    for payer in payers:
        row = rows.get(payer, {})
        zero = {names.get(node, node): {"settled": v, "kind": offenders[node]}
                for (p, node), v in per_channel.items() if p == payer and node in offenders and v}
        out["payers"][payer] = {k: int(row.get(k, 0)) for k in ("settled", "excluded", "usage", "fees", "eligible")}
        out["payers"][payer]["zero"] = zero
    return out


def at_scale() -> dict | None:
    """bench/gas.py's figures (bench/results/gas.json): gas per request at scale and of one exact payment."""
    path = Path(__file__).resolve().parent.parent / "bench" / "results" / "gas.json"
    try:
        data = json.loads(path.read_text())
        return {"gas_per_request": float(data["gas_per_request"]), "exact": int(data["exact_payment_gas"]),
                "source": "bench/results/gas.json"}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def print_summary(system, r: dict) -> None:
    say = system.say
    say("\n== summary (read from the chain)")
    for p in r["payers"]:
        spent = sum(a["cost"] for a in p["answers"])
        say(f"   {p['name']:<6} ({p['how']}) credits {format_opg(p['credits_before'] + p['deposited'])} -> "
            f"{format_opg(p['credits_after'])} OPG after {len(p['answers'])} answers costing "
            f"{format_opg(spent)} OPG" + (f"; refunded {format_opg(p['refunds'])} OPG" if p["refunds"] else ""))
        for a in p["answers"]:
            say(f"      answer {a['index']:>2} from {a['node']:<12} {a['mode']:<13} {a['scheme']:<10} "
                f"cost {format_opg(a['cost'])} OPG")
    season = r.get("season")
    if season:
        say(f"   season S{season['season']} (open, blocks {season['from_block']}..{season['to_block']}; docs/seasons.md, "
            f"as `opg balance` shows it):")
        for p in r["payers"]:
            s = season["payers"].get(p["address"], {})
            zero = "".join(f"; {format_opg(z['settled'])} OPG with {node} counts zero (slashed for {z['kind']})"
                           for node, z in s.get("zero", {}).items())
            say(f"      {p['name']:<6} season usage {format_opg(s.get('usage', 0))} OPG, eligible fees "
                f"{format_opg(s.get('fees', 0))} OPG{zero}")
    for b in r["batches"]:
        per = f"{b['gas_per_request']:,} gas/request" if b.get("gas_per_request") else ""
        say(f"   batch #{b.get('id')} tx {b['tx'][:18]}... {b['claims']} claims covering {b.get('requests')} requests, "
            f"{b['gas']:,} gas {per}")
    if r["exact_gas"]:
        say(f"   exact payments: {len(r['exact_gas'])} transactions, {sum(r['exact_gas']) // len(r['exact_gas']):,} "
            f"gas each on average (one per request)")
    scale = at_scale()
    if scale:
        requests = sum(b.get("requests") or 0 for b in r["batches"])
        gas = sum(b["gas"] for b in r["batches"])
        n = len(r["batches"])
        own = f"{gas // requests:,} gas per request over its {n} batch{'' if n == 1 else 'es'}" if requests else "no batch"
        say(f"   batching at scale (bench/gas.py, {scale['source']}): {scale['gas_per_request']:,.0f} gas per request "
            f"when 100 claims each cover 100 requests, against {scale['exact']:,} for an exact payment; this demo: "
            f"{own} (a batch's fixed cost is shared by few requests in a two-minute run)")
    for n in r["nodes"]:
        say(f"   {n['name']:<12} earned {format_opg(n['claimable'])} OPG claimable; stake {format_opg(n['stake'])} OPG"
            + (" (JAILED)" if n["jailed"] else ""))
    for v in r["verifiers"]:
        say(f"   {v['name']:<12} pool share {format_opg(v['pool_share'])} OPG, claimable {format_opg(v['claimable'])} "
            f"OPG, stake {format_opg(v['stake'])} OPG")
    say(f"   treasury     {format_opg(r['treasury'])} OPG claimable")
    for s in r["slashes"]:
        say(f"   slash: {s['kind']} of {s['node']}: {format_opg(s['amount'])} OPG taken, {format_opg(s['refund'])} "
            f"refunded to {s['payer']}, {format_opg(s['reward'])} to verifiers, {format_opg(s['burned'])} burned")
    for v in r["voided"]:
        say(f"   voided: {format_opg(v['amount'])} OPG of {v['node']}'s charges to {v['payer']} (never paid)")


def reconcile(system, payers, answers, r: dict) -> list[str]:
    """Every answered request paid exactly once; the cheating node slashed and its payers refunded."""
    chain = system.chain
    esc = chain.escrow.functions
    problems: list[str] = []
    settled = defaultdict(int, {tuple(k.split("/")): v for k, v in r["settled"].items()})
    by_name = {n.name: n for n in system.nodes}
    # 1. credits: before + deposit - everything batches settled == after, per payer
    for p, row in zip(payers, r["payers"], strict=True):
        paid = sum(v for (payer, _node), v in settled.items() if payer == p.address)
        if row["credits_before"] + row["deposited"] - paid != row["credits_after"]:
            problems.append(f"{p.name}: credits {row['credits_after']} != {row['credits_before']} + "
                            f"{row['deposited']} - {paid}")
        # 2. each channel: the answers' costs == spent (all settled or voided) and spent - voided == paid
        for node_name, node in by_name.items():
            costs = sum(a.cost for a in p.answers if a.node == node_name and a.scheme == "opg-credit")
            spent = esc.spent(p.address, node.address).call()
            voided = esc.voided(p.address, node.address).call()
            if node.cheat_rate == 0 and costs != spent:
                problems.append(f"{p.name}->{node_name}: answers cost {costs} but the channel's spent is {spent}")
            if node.cheat_rate > 0 and spent > costs:  # a jailed node's later receipts are not payable
                problems.append(f"{p.name}->{node_name}: the channel's spent {spent} exceeds the answers' {costs}")
            if spent - voided != settled[(p.address, node.address)]:
                problems.append(f"{p.name}->{node_name}: spent {spent} - voided {voided} != settled "
                                f"{settled[(p.address, node.address)]}")
    # 3. exact: one on-chain transfer per exact answer, to the node, of its cost
    for a in answers:
        if a.scheme != "exact":
            continue
        if not a.transaction:
            problems.append(f"exact answer {a.index} has no transaction")
            continue
        receipt = chain.w3.eth.get_transaction_receipt(a.transaction)
        transfers = chain.opg.events.Transfer().process_receipt(receipt, errors=DISCARD)
        if not any(t.args.value == a.cost and t.args.receiver == by_name[a.node].address for t in transfers):
            problems.append(f"exact answer {a.index}: no transfer of {a.cost} to {a.node} in {a.transaction}")
    if len({a.transaction for a in answers if a.scheme == "exact"}) != len([a for a in answers if a.scheme == "exact"]):
        problems.append("an exact transaction paid two answers")
    # 4. the cheating node slashed for fraud, the honest one never
    cheats = [n for n in system.nodes if n.cheat_rate > 0]
    for n in system.nodes:
        hits = [s for s in r["slashes"] if s["node"] == n.address]
        if n.cheat_rate > 0 and not any(s["kind"] == "fraud" for s in hits):
            problems.append(f"{n.name} cheats at {n.cheat_rate:.0%} but was not slashed for fraud")
        if n.cheat_rate == 0 and hits:
            problems.append(f"honest {n.name} was slashed: {hits}")
    # 5. refunds: each fraud slash refunded its payer what the payer had paid for that receipt (or voided it)
    for s in r["slashes"]:
        if s["kind"] == "fraud" and s["node"] in {n.address for n in cheats}:
            row = next((p for p in r["payers"] if p["address"] == s["payer"]), None)
            voided = [v for v in r["voided"] if v["payer"] == s["payer"]]
            if row is not None and not (s["refund"] > 0 or voided):
                problems.append(f"fraud slash of {s['node']} neither refunded nor voided {s['payer']}'s charge")
    return problems
