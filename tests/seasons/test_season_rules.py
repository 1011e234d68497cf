"""The season rules on the usage function itself (``offchain.seasons.usage.season_table``), fed logs encoded
through the committed ABIs exactly as the contracts emit them (``BatchSettled`` packs ``payer << 96 | amount`` and
``node << 96 | claims``; ``FeesCredited`` splits each run as ``RewardDistributor.credit_fees`` does: protocol fee
rounded up, verifier fee down; ``EpochFinalized`` caps emission at ``fees * cap``).

- ``test_self_dealing_never_profits``: a self-dealer spends through any number of its own payer addresses and its
  own nodes, next to honest traffic, with any emission up to the protocol fee; counting its nodes' shares, their
  emissions, the whole verifier fee (as if it held all verifier stake) and its payers' season rewards, seasons never
  lift emissions + rewards above ``C x`` the protocol fees it paid, its net profit is at most ``-(1 - C) x`` those
  fees whenever the emission cap is at most ``C x`` the protocol fee, and never positive.
- ``test_splitting_changes_the_reward_only_by_rounding``: the same usage from one address through one node, or
  split over many, earns the same reward up to a few wei per charge.
- the exclusions: a slashed node, a voided channel, a refund, an epoch without finalised emission.
"""

from __future__ import annotations

from collections import defaultdict

from eth_abi import encode
from eth_utils import event_abi_to_log_topic, keccak, to_checksum_address
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from offchain.abi import abi
from offchain.sdk.constants import BPS
from offchain.seasons.usage import Season, SeasonsConfig, season_table, table_bytes

ESCROW = to_checksum_address("0x" + "e5" * 20)
STAKING = to_checksum_address("0x" + "57" * 20)
DISTRIBUTOR = to_checksum_address("0x" + "d1" * 20)
PROTOCOL_BPS, VERIFIER_BPS = 500, 500
OPG = 10**18


def addr(tag: str, i: int) -> str:
    return to_checksum_address(keccak(f"{tag}{i}".encode())[:20])


class Chain:
    """Logs as the contracts would emit them."""

    def __init__(self):
        self.logs: list[dict] = []
        self.block = 1
        self.epoch_fees: dict[int, int] = defaultdict(int)
        self.node_epoch_fees: dict[tuple[int, str], int] = defaultdict(int)
        self.node_share: dict[str, int] = defaultdict(int)
        self.verifier_fees: dict[str, int] = defaultdict(int)  # by node
        self.protocol_fees: dict[str, int] = defaultdict(int)  # by node
        self.emission: dict[int, int] = {}

    def log(self, address: str, contract: str, event: str, **args) -> None:
        e = next(x for x in abi(contract) if x["type"] == "event" and x["name"] == event)
        topics = ["0x" + event_abi_to_log_topic(e).hex()]
        topics += ["0x" + encode([i["type"]], [args[i["name"]]]).hex() for i in e["inputs"] if i["indexed"]]
        plain = [i for i in e["inputs"] if not i["indexed"]]
        data = encode([i["type"] for i in plain], [args[i["name"]] for i in plain])
        self.logs.append({"address": address, "topics": topics, "data": "0x" + data.hex(), "blockNumber": self.block,
                          "transactionHash": "0x" + keccak(f"tx{len(self.logs)}-{self.block}".encode()).hex(),
                          "logIndex": len(self.logs)})

    def settle(self, claims: list[tuple[str, str, int]], epoch: int) -> None:
        """One ``settle_batch`` transaction: claims ordered by node, one run per node."""
        claims = sorted(claims, key=lambda c: c[1])
        runs: list[tuple[str, list[tuple[str, int]]]] = []
        for payer, node, amount in claims:
            if not runs or runs[-1][0] != node:
                runs.append((node, []))
            runs[-1][1].append((payer, amount))
        tx = "0x" + keccak(f"batch{self.block}-{len(self.logs)}".encode()).hex()
        settled = [int(p, 16) << 96 | a for _, cl in runs for p, a in cl]
        packed = [int(n, 16) << 96 | len(cl) for n, cl in runs]
        first = len(self.logs)
        self.log(ESCROW, "CreditEscrow", "BatchSettled", receipts_root=b"\x01" * 32, submitter=ESCROW,
                 amount=sum(a for _, _, a in claims), settled=settled, runs=packed)
        for node, cl in runs:
            gross = sum(a for _, a in cl)
            protocol = (gross * PROTOCOL_BPS + BPS - 1) // BPS
            verifier = min(gross * VERIFIER_BPS // BPS, gross - protocol)
            self.node_share[node] += gross - protocol - verifier
            self.verifier_fees[node] += verifier
            self.protocol_fees[node] += protocol
            self.epoch_fees[epoch] += gross
            self.node_epoch_fees[(epoch, node)] += gross
            self.log(DISTRIBUTOR, "RewardDistributor", "FeesCredited", node=node, epoch=epoch, gross=gross,
                     node_share=gross - protocol - verifier, protocol_fee=protocol, verifier_fee=verifier)
        for log in self.logs[first:]:
            log["transactionHash"] = tx
        self.block += 1

    def finalize(self, epoch: int, emission_bps: int) -> None:
        emission = self.epoch_fees[epoch] * emission_bps // BPS
        self.emission[epoch] = emission
        self.log(DISTRIBUTOR, "RewardDistributor", "EpochFinalized", epoch=epoch, fees=self.epoch_fees[epoch],
                 emission=emission)
        self.block += 1

    def emission_of(self, node: str) -> int:
        """What ``collect_emission`` pays the node over every finalised epoch."""
        return sum(self.emission[e] * f // self.epoch_fees[e] for (e, n), f in self.node_epoch_fees.items()
                   if n == node and e in self.emission)

    def config(self, budget: int, reward_bps: int = 8_000, cap_bps: int = BPS) -> SeasonsConfig:
        return SeasonsConfig(chain_id=31337, contracts={"CreditEscrow": ESCROW, "NodeStaking": STAKING,
                                                        "RewardDistributor": DISTRIBUTOR},
                             seasons=[Season(season=1, from_block=0, to_block=self.block, evidence_block=self.block,
                                             budget=budget, reward_bps=reward_bps, cap_bps=cap_bps)])


def rewards(table: dict) -> dict[str, int]:
    return {a["account"]: int(a["reward"]) for a in table["accounts"]}


amounts = st.integers(min_value=1, max_value=10**21)
spends = st.lists(st.tuples(st.integers(0, 7), st.integers(0, 3), amounts, st.integers(0, 2)), min_size=1,
                  max_size=24)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spends=spends, honest=st.lists(st.tuples(st.integers(0, 3), amounts, st.integers(0, 2)), max_size=6),
       emission_bps=st.lists(st.integers(0, PROTOCOL_BPS), min_size=3, max_size=3),
       reward_bps=st.integers(0, BPS - 1), budget=st.integers(0, 10**22), cap_bps=st.integers(1, BPS))
def test_self_dealing_never_profits(spends, honest, emission_bps, reward_bps, budget, cap_bps):
    chain = Chain()
    by_epoch: dict[int, list] = defaultdict(list)
    for payer, node, amount, epoch in spends:
        by_epoch[epoch].append((addr("dealer", payer), addr("dealer-node", node), amount))
    for payer, amount, epoch in honest:
        by_epoch[epoch].append((addr("honest", payer), addr("honest-node", payer), amount))
    for epoch in sorted(by_epoch):
        chain.settle(by_epoch[epoch], epoch)
    for epoch in range(3):
        if chain.epoch_fees[epoch]:
            chain.finalize(epoch, emission_bps[epoch])
    table = season_table(chain.logs, chain.config(budget, reward_bps, cap_bps))
    paid = rewards(table)
    dealer_payers = {addr("dealer", p) for p, _, _, _ in spends}
    dealer_nodes = {addr("dealer-node", n) for _, n, _, _ in spends}
    spent = sum(a for _, _, a, _ in spends)
    fees = sum(chain.protocol_fees[n] for n in dealer_nodes)
    back = sum(chain.node_share[n] + chain.emission_of(n) + chain.verifier_fees[n] for n in dealer_nodes)
    reward = sum(paid.get(p, 0) for p in dealer_payers)
    emission = sum(chain.emission_of(n) for n in dealer_nodes)
    net = back + reward - spent
    rounding = 2 * len(spends)  # wei: per settled claim, emission attributed by ceil, fee shares by floor
    # with the emission cap at most C x the protocol fee (docs/seasons.md: 400 of 500 bps for C = 0.8), emissions
    # and season rewards together stay within C x the protocol fees paid: the dealer loses (1 - C) x those fees
    if all(bps * BPS <= reward_bps * PROTOCOL_BPS for bps in emission_bps):
        assert (emission + reward) * BPS <= reward_bps * fees + rounding * BPS
        assert net * BPS <= -(BPS - reward_bps) * fees + rounding * BPS
    # with any cap up to the protocol fee (today's default) it still never profits: seasons pay only what the
    # emissions on the same usage left below C x its fee
    assert net <= rounding
    assert int(table["total_reward"]) <= budget


@settings(max_examples=150, deadline=None)
@given(parts=st.lists(st.tuples(st.integers(0, 9), st.integers(0, 4), amounts), min_size=1, max_size=20),
       emission_bps=st.integers(0, PROTOCOL_BPS), reward_bps=st.integers(0, BPS - 1))
def test_splitting_changes_the_reward_only_by_rounding(parts, emission_bps, reward_bps):
    budget = 10**30  # neither the budget nor the cap binds: only the rules are compared
    whole, split = Chain(), Chain()
    whole.settle([(addr("one", 0), addr("one-node", 0), sum(a for _, _, a in parts))], 0)
    split.settle([(addr("many", p), addr("many-node", n), a) for p, n, a in parts], 0)
    for c in (whole, split):
        c.finalize(0, emission_bps)
    one = sum(rewards(season_table(whole.logs, whole.config(budget, reward_bps))).values())
    many = sum(rewards(season_table(split.logs, split.config(budget, reward_bps))).values())
    assert abs(one - many) <= 3 * len(parts) + 3
    # and splitting never gains more than that rounding
    assert many <= one + 3 * len(parts) + 3


def honest_chain() -> tuple[Chain, list[str], list[str]]:
    chain = Chain()
    payers, nodes = [addr("p", i) for i in range(3)], [addr("n", i) for i in range(3)]
    chain.settle([(payers[i], nodes[j], (i + 1) * 10 * OPG) for i in range(3) for j in range(3)], 0)
    chain.finalize(0, 0)
    return chain, payers, nodes


def test_slashed_node_voided_channel_and_refund_count_zero():
    chain, payers, nodes = honest_chain()
    zero = "0x" + "00" * 20
    chain.log(STAKING, "NodeStaking", "Slashed", node=nodes[0], evidence=b"\x02" * 32, payer=payers[0], kind=2,
              amount=OPG, refund=OPG, reward=0, burned=0)
    chain.log(STAKING, "NodeStaking", "Slashed", node=nodes[1], evidence=b"\x03" * 32, payer=zero, kind=3,
              amount=OPG, refund=0, reward=0, burned=OPG)  # a lazy-verifier kind: not an offence of a node's work
    chain.log(ESCROW, "CreditEscrow", "ChargesVoided", payer=payers[1], node=nodes[1], amount=OPG, spent=40 * OPG)
    table = season_table(chain.logs, chain.config(10**24))
    rows = {a["account"]: a for a in table["accounts"]}
    # p0: node 0 slashed for fraud (30 of its usage zero); nodes 1 and 2 count
    assert int(rows[payers[0]]["usage"]) == 20 * OPG and int(rows[payers[0]]["excluded"]) == 10 * OPG
    # p1: node 0 slashed, its channel with node 1 voided: only node 2 counts
    assert int(rows[payers[1]]["usage"]) == 20 * OPG and int(rows[payers[1]]["excluded"]) == 40 * OPG
    assert int(rows[payers[2]]["usage"]) == 60 * OPG
    for row in rows.values():
        assert int(row["fees"]) == int(row["usage"]) * PROTOCOL_BPS // BPS
        assert int(row["reward"]) == int(row["fees"]) * 8_000 // BPS


def test_usage_of_an_epoch_without_finalised_emission_earns_nothing_yet():
    chain = Chain()
    chain.settle([(addr("p", 0), addr("n", 0), 10 * OPG)], 0)
    table = season_table(chain.logs, chain.config(10**24))
    assert table["accounts"][0]["reward"] == "0" and int(table["accounts"][0]["fees"]) > 0
    chain.finalize(0, PROTOCOL_BPS // 2)  # emissions pay half the protocol fee: the season tops up to C
    row = season_table(chain.logs, chain.config(10**24))["accounts"][0]
    fee = 10 * OPG * PROTOCOL_BPS // BPS
    assert int(row["emission"]) == fee // 2 and int(row["reward"]) == fee * 8_000 // BPS - fee // 2


def test_budget_share_and_per_address_cap():
    chain, payers, _ = honest_chain()
    fees = {p: (i + 1) * 30 * OPG * PROTOCOL_BPS // BPS for i, p in enumerate(payers)}
    eligible = {p: f * 8_000 // BPS for p, f in fees.items()}
    budget = sum(eligible.values()) // 2
    got = rewards(season_table(chain.logs, chain.config(budget, cap_bps=BPS)))
    assert got == {p: budget * e // sum(eligible.values()) for p, e in eligible.items()}
    capped = rewards(season_table(chain.logs, chain.config(budget, cap_bps=3_000)))
    assert capped == {p: min(budget * e // sum(eligible.values()), budget * 3_000 // BPS) for p, e in eligible.items()}


def test_the_table_is_deterministic_whatever_the_log_order():
    chain, _, _ = honest_chain()
    config = chain.config(10**24)
    assert table_bytes(season_table(chain.logs, config)) == table_bytes(season_table(chain.logs[::-1], config))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 70), seed=st.integers(0, 2**32))
def test_every_leaf_proves_against_the_root_and_no_other_amount_does(n, seed):
    from offchain.seasons.merkle import MerkleTree, leaf_hash, verify

    amounts = {addr("leaf", seed * 100 + i): (seed + i) % 997 + 1 for i in range(n)}
    tree = MerkleTree.build(amounts)
    assert tree.root == MerkleTree.build(dict(reversed(list(amounts.items())))).root  # order-free
    for account, amount in amounts.items():
        proof = tree.proof(account)
        assert verify(proof, tree.root, leaf_hash(account, amount))
        assert not verify(proof, tree.root, leaf_hash(account, amount + 1))
