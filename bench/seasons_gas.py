"""Gas of the season distributor on a real anvil node, at a tree of 10,000 accounts.

Starts its own anvil (stopped at the end), deploys OPG and ``SeasonDistributor`` with web3.py
(``offchain.devkit.devchain``), builds the cumulative tree with ``offchain.seasons.merkle`` (the operator's
``opg season build`` tree) over ``ACCOUNTS`` accounts, proposes and accepts it, and measures the ``gasUsed`` of
mined transactions:

* ``claim`` of an account's first season (its ``consumed`` and ``claimed`` go from zero, the OPG goes to an address
  that held none, or to one that already holds OPG), a claim submitted by a third party, and a second season's claim
  of the difference (every slot already non-zero);
* a claim that pays nothing (already claimed), ``propose_root``, ``accept_root``, ``expire``.

The samples run after one other account's claim (steady state: ``total_consumed`` is already non-zero); the very
first claim of the contract costs about 17,000 more and is listed apart.

Proofs are ``ceil(log2(10,000)) = 14`` hashes. Every claim is its own transaction from a fresh chain state
(``evm_snapshot`` / ``evm_revert``) so no measurement warms another's storage.

    .venv/bin/python bench/seasons_gas.py        # prints a table, writes bench/results/seasons_gas.json
"""

from __future__ import annotations

import json
import platform
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from eth_account import Account  # noqa: E402
from eth_utils import keccak, to_checksum_address  # noqa: E402
from web3 import Web3  # noqa: E402

from offchain.daemon.keys import anvil_key  # noqa: E402
from offchain.devkit.compiler import _source_hash  # noqa: E402
from offchain.devkit.devchain import Anvil, deploy_contract, transact  # noqa: E402
from offchain.seasons.merkle import MerkleTree  # noqa: E402

ACCOUNTS = 10_000
SAMPLES = 10
RESULTS = ROOT / "bench" / "results" / "seasons_gas.json"
OPG = 10**18


def main() -> int:
    rng = random.Random(17)
    accounts = [to_checksum_address(keccak(f"season-account-{i}".encode())[:20]) for i in range(ACCOUNTS)]
    season1 = {a: rng.randint(1, 1_000) * OPG // 100 for a in accounts}
    season2 = {a: v + rng.randint(1, 1_000) * OPG // 100 for a, v in season1.items()}
    t0 = time.perf_counter()
    tree1 = MerkleTree.build(season1)
    build_s = time.perf_counter() - t0
    tree2 = MerkleTree.build(season2)
    depth = len(tree1.proof(accounts[0]))
    results: dict = {"accounts": ACCOUNTS, "proof_length": depth, "tree_build_seconds": round(build_s, 3),
                     "source_hash": _source_hash(), "machine": platform.machine()}

    with Anvil() as anvil:
        w3 = Web3(Web3.HTTPProvider(anvil.url, request_kwargs={"timeout": 60}))
        deployer = anvil_key(0)
        me = Account.from_key(deployer).address
        opg, _ = deploy_contract(w3, deployer, "OPG", me)
        seasons, _ = deploy_contract(w3, deployer, "SeasonDistributor", opg.address, me, 60, 2, 60, 86_460)
        total1, total2 = sum(season1.values()), sum(season2.values())
        transact(w3, deployer, opg.functions.transfer(seasons.address, total2))
        caller = Account.from_key(anvil_key(3)).address
        holders = accounts[SAMPLES:2 * SAMPLES]
        for a in holders:  # accounts that already hold OPG
            transact(w3, deployer, opg.functions.transfer(a, 1))

        def rpc(method, *params):
            return w3.provider.make_request(method, list(params)).get("result")

        def advance(seconds):
            rpc("evm_increaseTime", seconds)
            rpc("evm_mine")

        def gas(receipt) -> int:
            return int(receipt["gasUsed"])

        propose = gas(transact(w3, deployer, seasons.functions.propose_root(tree1.root, total1, 1, b"\x11" * 32)))
        advance(61)
        accept = gas(transact(w3, deployer, seasons.functions.accept_root()))

        def claim(tree, amounts, account, key=deployer) -> int:
            return gas(transact(w3, key, seasons.functions.claim(account, amounts[account], tree.proof(account))))

        # steady state: someone has claimed before (the very first claim also turns total_consumed non-zero)
        very_first = claim(tree1, season1, accounts[-1])

        def sample(fn, picks) -> list[int]:
            out = []
            for account in picks:
                snap = rpc("evm_snapshot")
                out.append(fn(account))
                rpc("evm_revert", snap)
            return out

        first_fresh = sample(lambda a: claim(tree1, season1, a), accounts[:SAMPLES])
        first_holder = sample(lambda a: claim(tree1, season1, a), holders)
        by_third = sample(lambda a: claim(tree1, season1, a, anvil_key(3)), accounts[:SAMPLES])
        assert caller

        def twice(a):
            claim(tree1, season1, a)
            return claim(tree1, season1, a)

        repeat = sample(twice, accounts[:SAMPLES])
        # season 2: every sampled account claimed season 1; the claim of the difference
        for a in accounts[:SAMPLES]:
            claim(tree1, season1, a)
        transact(w3, deployer, seasons.functions.propose_root(tree2.root, total2, 2, b"\x22" * 32))
        advance(61)
        transact(w3, deployer, seasons.functions.accept_root())
        second = sample(lambda a: claim(tree2, season2, a), accounts[:SAMPLES])
        # season 3 makes season 1 expirable (K = 2)
        transact(w3, deployer, seasons.functions.propose_root(tree2.root[:31] + b"\x00", total2, 3, b"\x33" * 32))
        advance(61)
        transact(w3, deployer, seasons.functions.accept_root())
        def expire_one(a):
            return gas(transact(w3, deployer, seasons.functions.expire(a, 1, season1[a], tree1.proof(a))))

        expire_one(accounts[-2])  # steady state: total_expired already non-zero
        expire = sample(expire_one, accounts[SAMPLES * 2:SAMPLES * 3])

    rows = {
        "claim_first_season_fresh_address": first_fresh,
        "claim_first_season_address_holding_opg": first_holder,
        "claim_submitted_by_a_third_party": by_third,
        "claim_next_season_difference": second,
        "claim_again_pays_zero": repeat,
        "expire": expire,
    }
    results["gas"] = {k: {"median": int(statistics.median(v)), "min": min(v), "max": max(v)} for k, v in rows.items()}
    results["gas"]["claim_very_first_of_the_contract"] = {"median": very_first, "min": very_first, "max": very_first}
    results["gas"]["propose_root"] = {"median": propose, "min": propose, "max": propose}
    results["gas"]["accept_root"] = {"median": accept, "min": accept, "max": accept}
    print(f"SeasonDistributor gas, tree of {ACCOUNTS:,} accounts (proof of {depth} hashes; tree built in "
          f"{build_s:.2f} s)")
    print(f"{'operation':<42} {'median':>8} {'min':>8} {'max':>8}")
    for name, g in results["gas"].items():
        print(f"{name:<42} {g['median']:>8,} {g['min']:>8,} {g['max']:>8,}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
