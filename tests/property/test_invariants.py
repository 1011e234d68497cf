"""Stateful property test of the v3 protocol (titanoboa + hypothesis).

A ``RuleBasedStateMachine`` drives random sequences against the four real contracts (compiled from ``contracts/``,
run in titanoboa's py-evm): deposits; withdrawal requests, cancels and withdrawals (with expiry); session keys
(authorise with an allowance, top up, revoke, session-signed vouchers); payer-signed vouchers; ``settle_batch`` with
random claims (latest, stale, forged, tampered, over-balance, allowance-exceeding, unpayable node, whole-batch
reverts); verifier heartbeats; time travel across epochs; fraud proofs reaching the quorum by weight from honest
verifiers against actually cheating receipts; equivocation by the cheating node; ``prove_valid`` and false-accuser
and lazy-verifier slashes; verifier flags and payer disputes (bond to the node, back to the payer, reclaimed); fee,
verifier-pool and emission collection and claims (a verifier jailed since an epoch began forfeits its share);
stake top-ups, unbonding and withdrawal; reserve burns. And the v3 attacks (issue 13) as rules: a payer settling
its whole balance to its own node before the honest node's claims (R1: only the facilitator settles at once, anyone
else proposes and waits while the relayer settles what it promised), a cheater exiting with all but a little stake
and then settling (R10), two victims of one offence refunded before any burn (R11).

Actors: an honest inference node (never a wrong answer, never two receipts for one request id), a cheating node
(wrong answers, equivocation), an unregistered node (never payable), a payer's accomplice node (staked to take a
whole balance); the relayer is the escrow's facilitator; two honest verifiers voting the truth and two
sybil verifiers (below one third of the live weight) voting the opposite of the truth. Payers 0 and 1 sign only
vouchers the relayer's ``/verify`` rule accepts (the voucher fits in ``available_of`` less every outstanding cap, and
a session key's allowance less its outstanding caps, and the node's pay capacity less its outstanding caps);
payer 2 is reckless (signs vouchers beyond its credits, settled by others through proposals).

Next to the contracts the machine keeps an independent model and predicts every outcome (which claim settles or is
skipped and why, which call reverts with which message, how much is slashed, refunded, rewarded, burned, paid).
After every step these invariants are checked on chain state read from storage:

1. sum of the OPG balances == totalSupply == 1e27 - burned;
2. OPG.balanceOf(escrow) == sum of payer credits;
3. OPG.balanceOf(staking) == sum of stake + unbonding + bonds_held + slashed reserves (R11);
4. OPG.balanceOf(distributor) >= claimable of everyone + emission reserve + uncollected verifier pools and
   uncollected finalised emissions (computed from the model), with only rounding dust to spare;
5. spent never decreases; spent - voided <= highest payer-signed maxCumulative + session-key charges on that
   channel; a payer never pays (sum of spent - voided - refunds) more than its payer-signed caps plus key allowances;
6. no evidence slashes twice, no slash exceeds the stake, a refund never exceeds the receipt amount;
7. the honest node and the honest verifiers never lose stake; the honest node, serving only requests ``/verify``
   accepts and settled by the relayer within a thaw period, is paid in full, for every payer, whatever others
   settle first (R1);
8. pay a node can still be disputed for (this and the previous dispute window) stays backed by
   ``fraud_multiplier`` times it in stake + unbonding, however the node exits, unless slashes took it since (R10);
9. the cheater's loss is at least ``fraud_multiplier`` x what its payers paid for receipts proven fraudulent, or
   everything it staked (R10);
and at every step where it applies: every fraud proof refunds its payer in full whenever the proof and the node's
reserve can cover it, the second victim of an offence included; a reserve burns only when no victim of the offence
can still prove its receipt (R11); a jailed verifier's pool share goes to the treasury (R9).

Environment knobs: ``OPG_PROPERTY_EXAMPLES`` (default 40) and ``OPG_PROPERTY_STEPS`` (default 35).
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

boa = pytest.importorskip("boa")

from boa.contracts.vyper.vyper_contract import VyperContract  # noqa: E402
from boa.vm import py_evm as boa_py_evm  # noqa: E402
from eth.precompiles.ecrecover import ecrecover as _pyevm_ecrecover  # noqa: E402
from eth_account import Account  # noqa: E402
from eth_utils import keccak, to_checksum_address  # noqa: E402
from hypothesis import HealthCheck, event, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.errors import InvalidArgument  # noqa: E402
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test  # noqa: E402

from offchain.deployments import constructor_args  # noqa: E402
from offchain.devkit.params import TEST_PARAMS  # noqa: E402
from offchain.messages import Domain, Receipt, Registration, Verdict, Voucher, compact_signature  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CONTRACTS = ROOT / "contracts"

OPG = 10**18
TOTAL_SUPPLY = 10**27
BPS = 10_000
LOW_MASK = 2**192 - 1
SPENT_MASK = 2**96 - 1  # a channel's `spent` (low 96 bits of its slot; the next 96 hold its spent before settling)

ROLE_NONE, ROLE_INFERENCE, ROLE_VERIFIER = 0, 1, 2
SETTLED, SKIP_STALE, SKIP_NOT_PAYABLE, SKIP_BAD_SIGNATURE, SKIP_BALANCE, SKIP_ALLOWANCE, SKIP_HELD = 0, 1, 2, 3, 4, 5, 6
KIND_EQUIVOCATION, KIND_FRAUD, KIND_LAZY, KIND_INVALID, KIND_DOUBLE_VOTE, KIND_FALSE_ACCUSER = 1, 2, 3, 4, 5, 6

EXAMPLES = int(os.environ.get("OPG_PROPERTY_EXAMPLES", "40"))
STEPS = int(os.environ.get("OPG_PROPERTY_STEPS", "35"))

P = TEST_PARAMS
MIN_STAKE = {ROLE_INFERENCE: P.min_inference_stake, ROLE_VERIFIER: P.min_verifier_stake}
THAW, WINDOW, EPOCH = P.thaw_period, P.dispute_window, P.epoch_length
MAX_FUTURE = 300
PAY_WINDOW = WINDOW + MAX_FUTURE  # NodeStaking's pay buckets: pay counts three of them (second review, finding 2)


def pay_in_window(window: int, older: int, previous: int, current: int, now: int) -> int:
    """NodeStaking's `paid_in_window`: the pay of the current and the two previous pay buckets."""
    d = now // PAY_WINDOW - window
    return older + previous + current if d == 0 else previous + current if d == 1 else current if d == 2 else 0
DEVNET_CHAIN_ID = 31_337


# --------------------------------------------------------------------------------------------------------------
# Keys, signatures and the ECRECOVER memo
# --------------------------------------------------------------------------------------------------------------


class Actor:
    def __init__(self, name: str):
        self.name = name
        self.key = keccak(text=f"opg-property-test:{name}")
        self.address = to_checksum_address(Account.from_key(self.key).address)

    def __repr__(self) -> str:
        return self.name


_STATS: Counter = Counter()


def _note(label: str) -> None:
    try:
        event(label)
    except InvalidArgument:
        pass
    _STATS[label] += 1


_ECRECOVER_MEMO: dict[bytes, bytes] = {}
_SIGNATURES: dict[tuple, bytes] = {}


def _memo_ecrecover(computation):
    """py-evm ECRECOVER with a memo of the signatures this test made (anything else goes to the real precompile)."""
    data = bytes(computation.msg.data_as_bytes)
    hit = _ECRECOVER_MEMO.get(data)
    if hit is None:
        return _pyevm_ecrecover(computation)
    computation.consume_gas(3_000, reason="ECRecover Precompile")
    computation.output = hit
    return computation


def sign(actor: Actor, message, domain: Domain) -> bytes:
    memo_key = (actor.key, type(message).__name__, message, domain)
    signature = _SIGNATURES.get(memo_key)
    if signature is None:
        signed = Account.sign_message(message.signable(domain), actor.key)
        signature = bytes(signed.signature)
        r, s, v = signature[:32], signature[32:64], signature[64]
        _ECRECOVER_MEMO[bytes(signed.message_hash) + v.to_bytes(32, "big") + r + s] = bytes(12) + bytes.fromhex(
            actor.address[2:]
        )
        _SIGNATURES[memo_key] = signature
    return signature


# --------------------------------------------------------------------------------------------------------------
# Raw storage reads (fast per-step checks), cross-checked against the public views at the end of every example
# --------------------------------------------------------------------------------------------------------------


class Storage:
    def __init__(self, contract):
        self.address = contract.address
        self.slots: dict[str, int] = {}
        self._cache: dict[tuple, int] = {}

        def walk(tree):
            for name, item in tree.items():
                if isinstance(item, dict) and "slot" in item and "type" in item:
                    self.slots[name] = item["slot"]
                elif isinstance(item, dict):
                    walk(item)

        walk(contract.compiler_data.storage_layout["storage_layout"])

    @staticmethod
    def _key(k) -> bytes:
        if isinstance(k, str):
            return bytes(12) + bytes.fromhex(k[2:])
        return int(k).to_bytes(32, "big")

    def get(self, name: str, *keys, offset: int = 0) -> int:
        slot = self._cache.get((name, keys))
        if slot is None:
            slot = self.slots[name]
            for k in keys:
                slot = int.from_bytes(keccak(slot.to_bytes(32, "big") + self._key(k)), "big")
            self._cache[(name, keys)] = slot
        return boa.env.get_storage(self.address, slot + offset)


# --------------------------------------------------------------------------------------------------------------
# Actors and deployment
# --------------------------------------------------------------------------------------------------------------

DEPLOYER, TREASURY, RELAYER = Actor("deployer"), Actor("treasury"), Actor("relayer")
PAYERS = [Actor(f"payer{i}") for i in range(3)]
KEYS = [Actor(f"session-key{i}") for i in range(3)]  # KEYS[i] is PAYERS[i]'s session key
HONEST, CHEAT, UNREG = Actor("honest-node"), Actor("cheating-node"), Actor("unregistered-node")
ACCOMPLICE = Actor("accomplice-node")  # R1: a payer's own node, staked enough to take its whole balance
NODES = [HONEST, CHEAT, UNREG, ACCOMPLICE]
HONEST_V = [Actor("verifier-a"), Actor("verifier-b")]
SYBILS = [Actor("sybil-a"), Actor("sybil-b")]
VERIFIERS = HONEST_V + SYBILS
STAKERS = [HONEST, CHEAT, *VERIFIERS, ACCOMPLICE]
ACTORS = [DEPLOYER, TREASURY, RELAYER, *PAYERS, *KEYS, *NODES, *VERIFIERS]
WELL_BEHAVED = PAYERS[:2]  # sign only what /verify accepts; PAYERS[2] is reckless

INITIAL_WALLET = {
    **{p.address: 20_000 * OPG for p in PAYERS},
    HONEST.address: 60_000 * OPG,
    CHEAT.address: 6_000 * OPG,
    ACCOMPLICE.address: 100_000 * OPG,
    **{v.address: 3_000 * OPG for v in HONEST_V},
    **{v.address: 500 * OPG for v in SYBILS},
}
INITIAL_CREDITS = {p.address: 2_000 * OPG for p in PAYERS}
INITIAL_EMISSION_RESERVE = 20_000 * OPG
INITIAL_REGISTRATIONS = [  # sybil weight 1,000 of 3,200 live weight: below one third
    (HONEST, ROLE_INFERENCE, 50_000 * OPG),  # backs 5,000 OPG of pay per two dispute windows (R10)
    (CHEAT, ROLE_INFERENCE, 3_000 * OPG),
    (ACCOMPLICE, ROLE_INFERENCE, 100_000 * OPG),
    (HONEST_V[0], ROLE_VERIFIER, 1_000 * OPG),
    (HONEST_V[1], ROLE_VERIFIER, 1_200 * OPG),
    (SYBILS[0], ROLE_VERIFIER, 500 * OPG),
    (SYBILS[1], ROLE_VERIFIER, 500 * OPG),
]


@dataclass
class System:
    opg: object
    escrow: object
    staking: object
    distributor: object
    s_opg: Storage
    s_escrow: Storage
    s_staking: Storage
    s_dist: Storage
    escrow_domain: Domain
    staking_domain: Domain
    epoch0_end: int
    epoch0: int
    holders: list[str]
    deploy_time: int
    live_epoch: int


def _load(name: str):
    return boa.load_partial(str(CONTRACTS / f"{name}.vy"))


def deploy() -> System:
    with boa.env.prank(DEPLOYER.address):
        opg = _load("OPG").deploy(*constructor_args("OPG", P, treasury=TREASURY.address))
        distributor = _load("RewardDistributor").deploy(
            *constructor_args("RewardDistributor", P, opg=opg.address, treasury=TREASURY.address)
        )
        evidence = _load("Evidence").deploy()
        staking = _load("NodeStaking").deploy(
            *constructor_args(
                "NodeStaking", P, opg=opg.address, distributor=distributor.address, evidence=evidence.address
            )
        )
        escrow = _load("CreditEscrow").deploy(
            *constructor_args(
                "CreditEscrow", P, opg=opg.address, staking=staking.address, distributor=distributor.address,
                facilitators=[RELAYER.address],
            )
        )
        distributor.connect(escrow.address, staking.address)
        staking.connect(escrow.address)
    chain_id = boa.env.evm.patch.chain_id
    staking_domain = Domain.staking(chain_id, str(staking.address))
    for address, amount in INITIAL_WALLET.items():
        opg.transfer(address, amount + INITIAL_CREDITS.get(address, 0), sender=TREASURY.address)
    for actor in ACTORS:
        for spender in (escrow, staking, distributor):
            opg.approve(spender.address, 2**256 - 1, sender=actor.address)
    for address, amount in INITIAL_CREDITS.items():
        escrow.deposit(amount, sender=address)
    for actor, role, stake in INITIAL_REGISTRATIONS:
        reg = Registration(account=actor.address)
        staking.register(
            role, stake, f"http://{actor.name}.invalid", sign(actor, reg, staking_domain), sender=actor.address
        )
    distributor.fund_emissions(INITIAL_EMISSION_RESERVE, sender=TREASURY.address)
    deploy_time = boa.env.timestamp
    # Make the verifiers live: warm-up over, heartbeat, next epoch.
    boa.env.time_travel(seconds=P.warmup)
    for v in VERIFIERS:
        staking.heartbeat(sender=v.address)
    e = distributor.epoch_now()
    boa.env.time_travel(
        seconds=distributor.current_epoch_end() + (e - distributor.current_epoch()) * EPOCH - boa.env.timestamp
    )
    assert distributor.epoch_now() == e + 1
    for v in VERIFIERS:  # and live in the epoch after that too
        staking.heartbeat(sender=v.address)
    holders = [a.address for a in ACTORS] + [str(c.address) for c in (opg, escrow, staking, distributor)]
    system = System(
        opg=opg,
        escrow=escrow,
        staking=staking,
        distributor=distributor,
        s_opg=Storage(opg),
        s_escrow=Storage(escrow),
        s_staking=Storage(staking),
        s_dist=Storage(distributor),
        escrow_domain=Domain.escrow(chain_id, str(escrow.address)),
        staking_domain=staking_domain,
        epoch0_end=distributor.current_epoch_end(),
        epoch0=distributor.current_epoch(),
        holders=holders,
        deploy_time=deploy_time,
        live_epoch=distributor.epoch_now(),
    )
    v = Voucher(payer=PAYERS[0].address, node=HONEST.address, max_cumulative=7)
    assert bytes(escrow.voucher_digest(v.payer, v.node, 7)) == v.digest(system.escrow_domain)
    return system


def _short_repr(self) -> str:
    return f"<{self.compiler_data.contract_path} at {self.address}>"


@pytest.fixture(scope="module")
def boa_system():
    boa_py_evm.register_raw_precompile("0x0000000000000000000000000000000000000001", _memo_ecrecover, force=True)
    chain_id = boa.env.evm.patch.chain_id
    try:
        with pytest.MonkeyPatch.context() as mp, boa.env.anchor():
            mp.setattr(VyperContract, "__repr__", _short_repr)
            # The devnet's chain id: the test parameters' short periods and delay are refused on any other chain.
            boa.env.evm.patch.chain_id = DEVNET_CHAIN_ID
            system = deploy()
            m = build_initial_model(system)
            _check_invariants(system, m, {})
            _check_views(system, m)
            yield system
    finally:
        boa.env.evm.patch.chain_id = chain_id
        boa_py_evm.deregister_raw_precompile("0x0000000000000000000000000000000000000001")


# --------------------------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------------------------


@dataclass
class Stake:
    role: int = ROLE_NONE
    jailed: bool = False
    stake: int = 0
    unbonding: int = 0
    ready_at: int = 0
    fresh: int = 0
    fresh_since: int = 0
    jailed_at: int = 0
    restore: int = 0
    released_at: int = 0

    def as_tuple(self):
        return (
            self.role, int(self.jailed), self.stake, self.unbonding, self.ready_at, self.fresh, self.fresh_since,
            self.jailed_at, self.restore, self.released_at,
        )  # fmt: skip


@dataclass
class Served:
    """A receipt a node signed (and the truth about it)."""

    receipt: Receipt
    sig: bytes
    h: bytes
    fraudulent: bool
    payer: Actor
    node: Actor


@dataclass
class Model:
    tok: dict[str, int]
    burned: int = 0
    credits: dict[str, int] = field(default_factory=dict)
    withdrawal: dict[str, tuple[int, int]] = field(default_factory=dict)  # payer -> (amount, ready_at)
    spent: dict[tuple, int] = field(default_factory=dict)
    settled_at: dict[tuple, int] = field(default_factory=dict)
    spent_before: dict[tuple, int] = field(default_factory=dict)  # a channel's spent before its last settlement
    by_proposal: dict[tuple, bool] = field(default_factory=dict)  # its mark was set through a proposal (held)
    node_settled_at: dict[str, int] = field(default_factory=dict)
    voided: dict[tuple, int] = field(default_factory=dict)
    refunded: dict[tuple, int] = field(default_factory=dict)
    max_payer_signed: dict[tuple, int] = field(default_factory=dict)
    max_key_signed: dict[tuple, int] = field(default_factory=dict)
    key_charged: dict[tuple, int] = field(default_factory=dict)
    keys: dict[tuple, tuple[int, int]] = field(default_factory=dict)  # (payer, key) -> (expiry, allowance)
    key_granted: dict[str, int] = field(default_factory=dict)
    vouchers: dict[tuple, list] = field(default_factory=dict)  # ch -> [(max, sig, signer Actor)]
    served_cum: dict[tuple, int] = field(default_factory=dict)  # what the node has served on the channel
    served_unsettled_since: dict[tuple, int] = field(default_factory=dict)  # honest channels awaiting settlement
    stakes: dict[str, Stake] = field(default_factory=dict)
    staked_in: dict[str, int] = field(default_factory=dict)
    withdrawn_stake: dict[str, int] = field(default_factory=dict)
    weight_in: dict[tuple, int] = field(default_factory=dict)
    total_weight: dict[int, int] = field(default_factory=dict)
    receipts: list[Served] = field(default_factory=list)
    request_no: int = 0
    fraud_proven: dict[bytes, int] = field(default_factory=dict)
    valid_proven: dict[bytes, int] = field(default_factory=dict)
    flagged: set = field(default_factory=set)
    disputes: dict[bytes, tuple[str, int, int]] = field(default_factory=dict)
    bonds_held: int = 0
    # NodeStaking v3: per-account refund reserve (burned two windows after the last slash), pay windows
    # (window, previous, current), each channel's latest voided range, first accusation per receipt.
    stake_reserve: dict[str, int] = field(default_factory=dict)
    stake_reserve_until: dict[str, int] = field(default_factory=dict)
    pay_window: dict[str, tuple[int, int, int, int]] = field(default_factory=dict)
    pays: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # node -> [(settled at, amount)]
    void_range: dict[tuple, tuple[int, int]] = field(default_factory=dict)
    accused_at: dict[bytes, int] = field(default_factory=dict)
    # the v3 attack invariants (issue 13)
    taken: dict[str, list] = field(default_factory=dict)  # account -> [(time, amount)] of every slash
    paid_fraud: dict[str, int] = field(default_factory=dict)  # node -> what payers paid for receipts proven fraudulent
    unaccepted: set = field(default_factory=set)  # (channel, maxCumulative) of vouchers /verify never accepted
    unaccepted: set = field(default_factory=set)  # (channel, maxCumulative) of vouchers /verify never accepted
    evidence_used: set = field(default_factory=set)
    last_verifier_slash: dict[str, int] = field(default_factory=dict)
    slashes_per_evidence: Counter = field(default_factory=Counter)
    # distributor
    claimable: dict[str, int] = field(default_factory=dict)
    epoch_fees: dict[int, int] = field(default_factory=dict)
    node_epoch_fees: dict[tuple, int] = field(default_factory=dict)
    pool: dict[int, int] = field(default_factory=dict)
    pool_collected: dict[tuple, int] = field(default_factory=dict)
    funding: dict[int, int] = field(default_factory=dict)
    reserve: int = 0
    finalized: dict[int, int] = field(default_factory=dict)
    finalized_reserve: int = 0
    next_to_finalize: int = 0
    emission_collected: dict[tuple, int] = field(default_factory=dict)


def build_initial_model(system: System) -> Model:
    tok = {h: 0 for h in system.holders}
    tok[TREASURY.address] = TOTAL_SUPPLY
    m = Model(tok=tok)
    esc, stk, dist = str(system.escrow.address), str(system.staking.address), str(system.distributor.address)
    for address, amount in INITIAL_WALLET.items():
        move(m, TREASURY.address, address, amount + INITIAL_CREDITS.get(address, 0))
    for address, amount in INITIAL_CREDITS.items():
        move(m, address, esc, amount)
        m.credits[address] = amount
    for actor, role, stake in INITIAL_REGISTRATIONS:
        move(m, actor.address, stk, stake)
        fresh = 0 if role == ROLE_VERIFIER else stake  # the verifiers' heartbeats matured their stake
        m.stakes[actor.address] = Stake(role=role, stake=stake, fresh=fresh, fresh_since=system.deploy_time)
        m.staked_in[actor.address] = stake
    move(m, TREASURY.address, dist, INITIAL_EMISSION_RESERVE)
    m.reserve = INITIAL_EMISSION_RESERVE
    m.funding[0] = INITIAL_EMISSION_RESERVE
    e1 = system.live_epoch
    for e in (e1, e1 + 1):
        for v in VERIFIERS:
            w = m.stakes[v.address].stake
            m.weight_in[(e, v.address)] = w
            m.total_weight[e] = m.total_weight.get(e, 0) + w
    return m


def move(m: Model, src: str, dst: str, amount: int) -> None:
    m.tok[src] -= amount
    m.tok[dst] += amount


def bps_of(amount: int, bps: int) -> int:
    return (amount * bps + BPS - 1) // BPS


# --------------------------------------------------------------------------------------------------------------
# The state machine
# --------------------------------------------------------------------------------------------------------------

SYSTEM: System | None = None
INITIAL_MODEL: Model | None = None

amounts = st.one_of(
    st.integers(min_value=1, max_value=10**6),
    st.integers(min_value=1, max_value=3_000).map(lambda x: x * OPG),
)
percent = st.integers(min_value=0, max_value=100)
TIME_STEPS = [1, 600, 3_599, 3_600, 3_601, 7_200, 43_200, 86_400, 86_401, 2 * 86_400 + 1, 3 * 86_400]
CLAIM_KINDS = ["latest", "latest", "latest", "older", "stale", "forged", "tampered", "overdraw", "other_key"]


class ProtocolMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        assert SYSTEM is not None and INITIAL_MODEL is not None
        import copy

        self.sys = SYSTEM
        self.m = copy.deepcopy(INITIAL_MODEL)
        self._anchor = boa.env.anchor()
        self._anchor.__enter__()
        self.last_spent: dict[tuple, int] = {}

    def teardown(self):
        try:
            if sys.exc_info()[1] is None:
                _check_views(self.sys, self.m)
        finally:
            self._anchor.__exit__(None, None, None)

    # ---- helpers ------------------------------------------------------------------------------------------

    @property
    def now(self) -> int:
        return boa.env.timestamp

    def epoch_now(self) -> int:
        s = self.sys
        return s.epoch0 if self.now < s.epoch0_end else s.epoch0 + (self.now - s.epoch0_end) // EPOCH + 1

    def mature(self, a: str) -> Stake:
        s = self.m.stakes[a]
        if s.fresh > 0 and self.now >= s.fresh_since + P.warmup:
            s.fresh = 0
        return s

    def available_of(self, p: str) -> int:
        bal = self.m.credits.get(p, 0)
        w = self.m.withdrawal.get(p)
        if w and self.now < w[1] + THAW:
            return bal - min(bal, w[0])
        return bal

    def paid_in_window(self, n: str) -> int:
        window, older, previous, current = self.m.pay_window.get(n, (-3, 0, 0, 0))
        return pay_in_window(window, older, previous, current, self.now)

    def capacity(self, n: str) -> int:
        """NodeStaking v3 `pay_capacity` (R10): active stake / fraud_multiplier less the pay still disputable."""
        s = self.m.stakes.get(n)
        if s is None or s.role != ROLE_INFERENCE or s.jailed:
            return 0
        return max(0, s.stake // P.fraud_multiplier - self.paid_in_window(n))

    def record_pay(self, n: str, amount: int) -> None:
        window, older, previous, current = self.m.pay_window.get(n, (-3, 0, 0, 0))
        self.m.pays.setdefault(n, []).append((self.now, amount))
        now = self.now // PAY_WINDOW
        if now == window:
            self.m.pay_window[n] = (now, older, previous, current + amount)
        elif now == window + 1:
            self.m.pay_window[n] = (now, previous, current, amount)
        elif now == window + 2:
            self.m.pay_window[n] = (now, current, 0, amount)
        else:
            self.m.pay_window[n] = (now, 0, 0, amount)

    def payable(self, n: str) -> bool:
        return self.capacity(n) > 0

    def active_as(self, a: str, role: int) -> bool:
        s = self.m.stakes.get(a)
        return s is not None and s.role == role and not s.jailed and s.stake >= MIN_STAKE[role]

    def vote_weight(self, v: str, epoch: int) -> int:
        s = self.m.stakes.get(v)
        if s is None or s.role != ROLE_VERIFIER or s.jailed:
            return 0
        return min(self.m.weight_in.get((epoch, v), 0), s.stake + s.unbonding)

    def outstanding(self, p: str, key: bool) -> int:
        m, total = self.m, 0
        for n in NODES:
            ch = (p, n.address)
            cap = (
                m.max_key_signed.get(ch, 0) if key else max(m.max_payer_signed.get(ch, 0), m.max_key_signed.get(ch, 0))
            )
            total += max(0, cap - m.spent.get(ch, 0))
        return total

    def sign_voucher(self, payer: Actor, node: Actor, mx: int, signer: Actor) -> bytes:
        m, ch = self.m, (payer.address, node.address)
        sig = sign(signer, Voucher(payer=payer.address, node=node.address, max_cumulative=mx), self.sys.escrow_domain)
        if signer is payer:
            m.max_payer_signed[ch] = max(m.max_payer_signed.get(ch, 0), mx)
        elif signer is KEYS[PAYERS.index(payer)]:
            m.max_key_signed[ch] = max(m.max_key_signed.get(ch, 0), mx)
        m.vouchers.setdefault(ch, []).append((mx, sig, signer))
        return sig

    def held(self, ch: tuple) -> bool:
        """CreditEscrow: a channel whose mark a settlement by proposal set holds it dispute_window + MAX_FUTURE."""
        return self.m.by_proposal.get(ch, False) and self.now <= self.m.settled_at[ch] + WINDOW + MAX_FUTURE

    def admissible(self, r: Receipt) -> bool:
        ch = (r.payer, r.node)  # a later settlement reopens only what it paid (second review, finding 1)
        start = max(r.timestamp, self.m.settled_at.get(ch, 0)) if r.cumulative > self.m.spent_before.get(ch, 0) else (
            r.timestamp)
        accused = self.m.accused_at.get(r.struct_hash(), 0)
        return self.now <= start + WINDOW or (accused != 0 and self.now <= accused + WINDOW)  # R8

    def take(self, a: str, amount: int) -> int:
        s = self.m.stakes[a]
        taken = min(amount, s.stake + s.unbonding)
        from_stake = min(taken, s.stake)
        s.stake -= from_stake
        s.unbonding -= taken - from_stake
        s.fresh = min(s.fresh, s.stake)
        self.m.taken.setdefault(a, []).append((self.now, taken))
        return taken

    def outstanding_to(self, n: str) -> int:
        """Caps the node accepted and has not been paid yet, over all payers."""
        m, total = self.m, 0
        for p in PAYERS:
            ch = (p.address, n)
            total += max(0, max(m.max_payer_signed.get(ch, 0), m.max_key_signed.get(ch, 0)) - m.spent.get(ch, 0))
        return total

    def jail(self, a: str) -> None:
        s = self.m.stakes[a]
        if not s.jailed:
            s.jailed, s.jailed_at, s.restore = True, self.now, s.stake

    def try_release(self, a: str) -> bool:
        s = self.m.stakes[a]
        if not s.jailed:
            return True
        if self.now < s.jailed_at + WINDOW or s.stake < s.restore or s.stake < MIN_STAKE[s.role]:
            return False
        s.jailed, s.released_at = False, self.now
        return True

    def pay_out(self, to: str, amount: int) -> None:
        move(self.m, str(self.sys.staking.address), to, amount)

    def burn_from_staking(self, amount: int) -> None:
        self.m.tok[str(self.sys.staking.address)] -= amount
        self.m.burned += amount

    def hold(self, a: str, amount: int) -> None:
        """NodeStaking v3 (R11): slashed stake is the account's refund reserve, burnable two windows later."""
        self.m.stake_reserve[a] = amount
        self.m.stake_reserve_until[a] = self.now + 2 * WINDOW + MAX_FUTURE

    def slashed_event(self, expected_kind: int):
        evs = [e for e in self.sys.staking.get_logs() if type(e).__name__ == "Slashed"]
        assert len(evs) == 1, evs
        ev = evs[0]
        assert ev.kind == expected_kind
        self.m.slashes_per_evidence[bytes(ev.evidence)] += 1
        return ev

    def slash_trustless(self, account: str, evidence: bytes, bps: int, kind: int, caller: Actor) -> int:
        """Model of _slash_trustless after the evidence checks passed; returns the amount."""
        s = self.m.stakes[account]
        slashable = s.stake + s.unbonding
        self.jail(account)
        amount = self.take(account, bps_of(slashable, bps))
        assert amount <= slashable
        reward = amount * P.challenger_reward_bps // BPS
        self.pay_out(caller.address, reward)
        self.hold(account, self.m.stake_reserve.get(account, 0) + amount - reward)
        self.m.evidence_used.add(evidence)
        ev = self.slashed_event(kind)
        assert ev.amount == amount and ev.reward == reward, (ev, amount, reward)
        return amount

    def credit_fees(self, runs: list[tuple[str, int]]) -> None:
        m, epoch = self.m, self.epoch_now()
        protocol_total = verifier_total = gross_total = 0
        for node, gross in runs:
            pf = (gross * P.protocol_fee_bps + BPS - 1) // BPS
            vf = min(gross * P.verifier_fee_bps // BPS, gross - pf)
            m.claimable[node] = m.claimable.get(node, 0) + gross - pf - vf
            m.node_epoch_fees[(epoch, node)] = m.node_epoch_fees.get((epoch, node), 0) + gross
            protocol_total += pf
            verifier_total += vf
            gross_total += gross
        m.epoch_fees[epoch] = m.epoch_fees.get(epoch, 0) + gross_total
        if verifier_total > 0:
            if m.total_weight.get(epoch, 0) > 0:
                m.pool[epoch] = m.pool.get(epoch, 0) + verifier_total
            else:
                protocol_total += verifier_total
        m.claimable[TREASURY.address] = m.claimable.get(TREASURY.address, 0) + protocol_total

    def finalize_model(self, epoch: int) -> str | None:
        """Model of _finalize_epoch: None if it succeeds, else the revert reason."""
        m = self.m
        if epoch in m.finalized:
            return None
        if epoch >= self.epoch_now():
            return "RewardDistributor: epoch not ended"
        if epoch >= m.next_to_finalize + 64:
            return "RewardDistributor: finalize earlier epochs first"
        available, allocated = m.finalized_reserve, 0
        for e in range(m.next_to_finalize, epoch + 1):
            available += m.funding.get(e, 0)
            emission = min(P.emission_per_epoch, available, m.epoch_fees.get(e, 0) * P.max_emission_per_fee_bps // BPS)
            available -= emission
            allocated += emission
            m.finalized[e] = emission
        m.finalized_reserve = available
        m.reserve -= allocated
        m.next_to_finalize = epoch + 1
        return None

    def heartbeat_model(self, v: Actor) -> str | None:
        if not self.active_as(v.address, ROLE_VERIFIER):
            return "NodeStaking: not an active verifier"
        s = self.mature(v.address)
        e = self.epoch_now() + 1
        w = s.stake - s.fresh
        m = self.m
        m.total_weight[e] = m.total_weight.get(e, 0) + w - m.weight_in.get((e, v.address), 0)
        m.weight_in[(e, v.address)] = w
        return None

    def do_heartbeat(self, v: Actor) -> None:
        reason = self.heartbeat_model(v)
        if reason:
            with boa.reverts(reason):
                self.sys.staking.heartbeat(sender=v.address)
        else:
            w = self.sys.staking.heartbeat(sender=v.address)
            assert w == self.m.weight_in[(self.epoch_now() + 1, v.address)]

    @initialize()
    def some_traffic(self):
        """Every example starts with receipts to judge: honest work, a wrong answer, an equivocation, a key."""
        self.authorize_key(0, 86_400, 500 * OPG)
        self.serve(0, 0, 50 * OPG, False, "none")
        self.serve(0, 1, 10**6, False, "none")
        self.serve(1, 1, 20 * OPG, False, "fraud")
        self.serve(1, 0, 30 * OPG, True, "equivocate")
        self.serve(1, 2, 5 * OPG, False, "none")
        self.relayer_settle()  # paid channels: fraud proofs then refund what the payer paid

    @rule(p=st.integers(0, 2), pct=st.integers(1, 100), wait=st.sampled_from([0, 1, 1_800, THAW - 1]))
    def request_then_withdraw(self, p, pct, wait):
        """Request a withdrawal, wait out the thaw (and up to just before expiry), withdraw."""
        self.request_withdrawal(p, pct)
        self.time_travel(THAW + wait, False)
        self.withdraw(p)

    # ---- escrow: deposits, withdrawals, session keys -----------------------------------------------------

    @rule(p=st.integers(0, 2), amount=amounts)
    def deposit(self, p, amount):
        payer, m, esc = PAYERS[p], self.m, self.sys.escrow
        amount = min(amount, m.tok[payer.address])
        if amount == 0:
            with boa.reverts("CreditEscrow: zero amount"):
                esc.deposit(0, sender=payer.address)
            return
        esc.deposit(amount, sender=payer.address)
        move(m, payer.address, str(esc.address), amount)
        m.credits[payer.address] += amount

    @rule(p=st.integers(0, 2), pct=st.integers(0, 120))
    def request_withdrawal(self, p, pct):
        payer, m = PAYERS[p], self.m
        balance = m.credits[payer.address]
        amount = balance * pct // 100
        if amount == 0:
            with boa.reverts("CreditEscrow: zero amount"):
                self.sys.escrow.request_withdrawal(amount, sender=payer.address)
            return
        if amount > balance:
            with boa.reverts("CreditEscrow: amount exceeds balance"):
                self.sys.escrow.request_withdrawal(amount, sender=payer.address)
            return
        self.sys.escrow.request_withdrawal(amount, sender=payer.address)
        m.withdrawal[payer.address] = (amount, self.now + THAW)

    @rule(p=st.integers(0, 2))
    def cancel_withdrawal(self, p):
        payer, m = PAYERS[p], self.m
        if payer.address not in m.withdrawal:
            with boa.reverts("CreditEscrow: no pending withdrawal"):
                self.sys.escrow.cancel_withdrawal(sender=payer.address)
            return
        self.sys.escrow.cancel_withdrawal(sender=payer.address)
        del m.withdrawal[payer.address]

    @rule(p=st.integers(0, 2))
    def withdraw(self, p):
        payer, m, esc = PAYERS[p], self.m, self.sys.escrow
        w = m.withdrawal.get(payer.address)
        reason = None
        if w is None:
            reason = "CreditEscrow: no pending withdrawal"
        elif self.now < w[1]:
            reason = "CreditEscrow: still thawing"
        elif self.now >= w[1] + THAW:
            reason = "CreditEscrow: withdrawal request expired"
        if reason:
            _note(f"withdraw refused: {reason}")
            with boa.reverts(reason):
                esc.withdraw(sender=payer.address)
            return
        expected = min(w[0], m.credits[payer.address])
        _note("withdraw paid")
        assert esc.withdraw(sender=payer.address) == expected
        del m.withdrawal[payer.address]
        m.credits[payer.address] -= expected
        move(m, str(esc.address), payer.address, expected)

    @rule(p=st.integers(0, 2), extra=st.sampled_from([0, 1, 3_600, 86_400, 3 * 86_400]), add=amounts)
    def authorize_key(self, p, extra, add):
        payer, key, m, esc = PAYERS[p], KEYS[p], self.m, self.sys.escrow
        k = (payer.address, key.address)
        expiry, allowance = m.keys.get(k, (0, 0))
        in_force = expiry > self.now
        new_expiry = (max(expiry, self.now + THAW) if in_force else self.now + THAW) + extra
        if extra == 1 and in_force and expiry > self.now + THAW:
            new_expiry = expiry - 1  # a decrease of a key in force is refused
            with boa.reverts("CreditEscrow: expiry decrease needs revocation"):
                esc.authorize_signer(key.address, new_expiry, allowance + add, sender=payer.address)
            return
        new_allowance = (allowance if in_force else 0) + add
        esc.authorize_signer(key.address, new_expiry, new_allowance, sender=payer.address)
        m.key_granted[payer.address] = m.key_granted.get(payer.address, 0) + add
        m.keys[k] = (new_expiry, new_allowance)
        _note("session key authorized")

    @rule(p=st.integers(0, 2))
    def revoke_key(self, p):
        payer, key, m = PAYERS[p], KEYS[p], self.m
        k = (payer.address, key.address)
        expiry, allowance = m.keys.get(k, (0, 0))
        if expiry <= self.now:
            with boa.reverts("CreditEscrow: signer not authorized"):
                self.sys.escrow.revoke_signer(key.address, sender=payer.address)
            return
        self.sys.escrow.revoke_signer(key.address, sender=payer.address)
        m.keys[k] = (min(expiry, self.now + THAW), allowance)
        _note("session key revoked")

    # ---- serving requests (receipts and vouchers) --------------------------------------------------------

    @rule(
        n=st.sampled_from([0, 0, 1, 1]),
        p=st.integers(0, 2),
        amount=st.one_of(st.integers(1, 10**6), st.integers(1, 400).map(lambda x: x * OPG)),
        use_key=st.booleans(),
        cheat=st.sampled_from(["none", "none", "fraud", "equivocate"]),
    )
    def serve(self, n, p, amount, use_key, cheat):
        """A node serves one request: the payer (or its key) signs a voucher, the node signs a receipt."""
        node, payer, m = NODES[n], PAYERS[p], self.m
        ch = (payer.address, node.address)
        cum = max(m.served_cum.get(ch, 0), m.spent.get(ch, 0)) + amount
        signer = KEYS[p] if use_key else payer
        if payer in WELL_BEHAVED or node is HONEST:  # the relayer's /verify rule
            cap_now = max(m.max_payer_signed.get(ch, 0), m.max_key_signed.get(ch, 0))
            extra = max(0, cum - max(cap_now, m.spent.get(ch, 0)))
            if self.outstanding(payer.address, False) + extra > self.available_of(payer.address):
                _note("serve refused by /verify (credits)")
                return
            if node is HONEST and self.outstanding_to(node.address) + extra > self.capacity(node.address):
                _note("serve refused by /verify (node capacity)")
                return
            if use_key:
                expiry, allowance = m.keys.get((payer.address, signer.address), (0, 0))
                key_extra = max(0, cum - max(m.max_key_signed.get(ch, 0), m.spent.get(ch, 0)))
                if expiry < self.now + THAW or self.outstanding(payer.address, True) + key_extra > allowance:
                    _note("serve refused by /verify (key)")
                    return
        self.sign_voucher(payer, node, cum, signer)
        m.served_cum[ch] = cum
        if node is HONEST:
            m.served_unsettled_since.setdefault(ch, self.now)
            cheat = "none"
        m.request_no += 1
        req = m.request_no
        self.add_receipt(node, payer, req, amount, cum, cheat == "fraud", 0)
        if cheat == "equivocate":  # a second, different receipt for the same request id
            self.add_receipt(node, payer, req, amount, cum, True, 1)
        _note(f"served ({node.name}, {cheat}, {'key' if use_key else 'payer'})")

    def add_receipt(self, node, payer, req, amount, cum, fraudulent, variant) -> Served:
        out = f"wrong-{req}-{variant}" if fraudulent else f"right-{req}"
        r = Receipt(
            request_id="0x" + keccak(text=f"request-{req}").hex(),
            payer=payer.address,
            node=node.address,
            model_id="0x" + keccak(text="model").hex(),
            input_hash="0x" + keccak(text=f"input-{req}").hex(),
            output_hash="0x" + keccak(text=out).hex(),
            amount=amount,
            cumulative=cum,
            timestamp=self.now,
        )
        served = Served(r, sign(node, r, self.sys.staking_domain), r.struct_hash(), fraudulent, payer, node)
        self.m.receipts.append(served)
        return served

    # ---- settlement --------------------------------------------------------------------------------------

    def predict_and_settle(self, claims: list[tuple], label: str, sender: Actor = RELAYER) -> list[int]:
        """claims: (payer, node, mx, sig, signer or None, total). Predicts each outcome, settles, compares."""
        m, now = self.m, self.now
        if any(c[5] > c[2] for c in claims):
            with boa.reverts("CreditEscrow: total exceeds voucher"):
                self._settle_call(claims, sender)
            return []
        expected, runs, cur, run_amount, run_count = [], [], None, 0, 0
        node_capacity, proposed = 0, sender is not RELAYER
        for i, (payer, node, _mx, _sig, signer, total) in enumerate(claims):
            ch = (payer.address, node.address)
            if node is not cur:
                cur, node_capacity = node, self.capacity(node.address)
            prev = m.spent.get(ch, 0)
            outcome, key = SETTLED, None
            held = self.held(ch)  # a settlement by proposal holds the channel's mark (late self-settled fraud)
            if total <= prev:
                outcome = SKIP_STALE
            elif held and proposed and m.settled_at[ch] != now:
                outcome = SKIP_HELD
            elif total - prev > node_capacity:
                outcome = SKIP_NOT_PAYABLE
            else:
                delta = total - prev
                if signer is None:
                    outcome = SKIP_BAD_SIGNATURE
                elif signer is not payer:
                    key = (payer.address, signer.address)
                    if m.keys.get(key, (0, 0))[0] <= now:
                        outcome = SKIP_BAD_SIGNATURE
                if outcome == SETTLED:
                    if m.credits[payer.address] < delta:
                        outcome = SKIP_BALANCE
                    elif key is not None:
                        expiry, allowance = m.keys[key]
                        if allowance < delta:
                            outcome = SKIP_ALLOWANCE
                        else:
                            m.keys[key] = (expiry, allowance - delta)
                            m.key_charged[ch] = m.key_charged.get(ch, 0) + delta
                if outcome == SETTLED:
                    m.credits[payer.address] -= delta
                    m.spent[ch] = total
                    if not held:
                        m.spent_before[ch], m.settled_at[ch], m.by_proposal[ch] = prev, now, proposed
                    node_capacity -= delta
                    run_amount += delta
                    run_count += 1
            expected.append(outcome)
            if run_count > 0 and (i + 1 == len(claims) or claims[i + 1][1] is not node):
                runs.append((node.address, run_amount))
                m.node_settled_at[node.address] = now
                self.record_pay(node.address, run_amount)
                run_amount = run_count = 0
        got = self._settle_call(claims, sender)
        assert got == expected, f"{label}: outcomes {got}, model {expected}"
        for o in expected:
            _note(f"claim outcome {o}")
        if runs:
            move(m, str(self.sys.escrow.address), str(self.sys.distributor.address), sum(a for _, a in runs))
            self.credit_fees(runs)
        return got

    @staticmethod
    def _tuples(claims) -> list:
        tuples = []
        for payer, node, mx, sig, _signer, total in claims:
            r, vs = compact_signature(sig)
            tuples.append((payer.address, node.address, mx, r, vs, total))
        return tuples

    def _settle_call(self, claims, sender: Actor = RELAYER):
        return list(self.sys.escrow.settle_batch(self._tuples(claims), bytes(32), sender=sender.address))

    def settle_as_other(self, claims: list[tuple], other: Actor, label: str) -> list[int]:
        """R1: anyone but the facilitator settles only a proposed batch, a claim delay after proposing it; the
        relayer (the facilitator) follows `BatchProposed` and settles every claim it promised first."""
        esc = self.sys.escrow
        with boa.reverts("CreditEscrow: batch not proposed"):
            self._settle_call(claims, other)
        esc.propose_batch(self._tuples(claims), bytes(32), sender=other.address)
        self.relayer_settle()  # the facilitator answers the proposal
        delay = esc.claim_delay()
        with boa.reverts("CreditEscrow: proposal not due"):
            self._settle_call(claims, other)
        self.time_travel(delay, False)
        _note(f"batch settled by another party after its proposal ({label})")
        return self.predict_and_settle(claims, label, other)

    @rule(
        specs=st.lists(
            st.tuples(st.integers(0, 2), st.integers(0, 2), st.sampled_from(CLAIM_KINDS), st.integers(1, 100), amounts),
            min_size=1,
            max_size=5,
        ),
        sort_by_node=st.booleans(),
        break_batch=st.integers(0, 19),
        by_other=st.sampled_from([False, False, True]),
    )
    def settle_batch(self, specs, sort_by_node, break_batch, by_other):
        """Random claims: latest and older vouchers, stale, forged, tampered, over-balance, unpayable node."""
        m, claims = self.m, []
        for p, n, kind, pct, inc in specs:
            payer, node = PAYERS[p], NODES[n]
            ch = (payer.address, node.address)
            spent = m.spent.get(ch, 0)
            vs = m.vouchers.get(ch, [])
            if kind in ("latest", "older", "stale") and not vs:
                kind = "forged"
            if kind == "latest":
                mx, sig, signer = max(vs, key=lambda x: x[0])
                total = spent + max(1, (mx - spent) * pct // 100) if mx > spent else mx
            elif kind == "older":
                mx, sig, signer = vs[pct % len(vs)]
                total = mx
            elif kind == "stale":
                mx, sig, signer = vs[pct % len(vs)]
                total = min(mx, spent) if spent else mx
            elif kind == "forged":  # signed by the node or a stranger, never by the payer
                mx = spent + inc
                signer = node if pct % 2 else RELAYER
                sig = sign(
                    signer, Voucher(payer=payer.address, node=node.address, max_cumulative=mx), self.sys.escrow_domain
                )
                signer, total = None, mx
            elif kind == "other_key":  # another payer's session key
                other = KEYS[(p + 1) % 3]
                mx = spent + inc
                sig = sign(
                    other, Voucher(payer=payer.address, node=node.address, max_cumulative=mx), self.sys.escrow_domain
                )
                signer, total = other, mx
            elif kind == "tampered":  # a genuine signature with a raised cap
                good = (
                    vs[pct % len(vs)][1]
                    if vs
                    else sign(
                        payer,
                        Voucher(payer=payer.address, node=UNREG.address, max_cumulative=inc),
                        self.sys.escrow_domain,
                    )
                )
                mx = max(m.max_payer_signed.get(ch, 0), m.max_key_signed.get(ch, 0), spent) + inc
                sig, signer, total = good, None, mx
            else:  # overdraw: the reckless payer signs beyond its credits
                payer = PAYERS[2]
                ch = (payer.address, node.address)
                spent = m.spent.get(ch, 0)
                mx = spent + m.credits[payer.address] + inc
                sig = self.sign_voucher(payer, node, mx, payer)
                m.unaccepted.add((ch, mx))
                signer, total = payer, mx
            claims.append((payer, node, mx, sig, signer, total))
        if sort_by_node:
            claims.sort(key=lambda c: NODES.index(c[1]))
        if break_batch == 0:
            payer, node, mx, sig, signer, total = claims[0]
            claims[0] = (payer, node, mx, sig, signer, mx + 1)
        # The relayer (the facilitator) settles only vouchers /verify accepted; anything else comes from another
        # party (here the cheating node, or the reckless payer) through a proposal.
        if by_other or any(((c[0].address, c[1].address), c[2]) in m.unaccepted for c in claims):
            self.settle_as_other(claims, CHEAT if break_batch % 2 else PAYERS[2], "settle_batch")
        else:
            self.predict_and_settle(claims, "settle_batch")

    def relayer_settle(self) -> None:
        """The relayer settles the newest voucher of every channel the nodes served; checks the honest node is paid."""
        m, claims = self.m, []
        for n in NODES:
            for payer in PAYERS:
                ch = (payer.address, n.address)
                vs = [
                    v for v in m.vouchers.get(ch, []) if v[0] <= m.served_cum.get(ch, 0) and (ch, v[0]) not in m.unaccepted
                ]
                if not vs:
                    continue
                mx, sig, signer = max(vs, key=lambda x: x[0])
                claims.append((payer, n, mx, sig, signer, mx))
        if not claims:
            return
        due = {ch: since for ch, since in m.served_unsettled_since.items()}
        outcomes = self.predict_and_settle(claims, "relayer")
        for (payer, node, _mx, _sig, _signer, _total), outcome in zip(claims, outcomes, strict=True):
            ch = (payer.address, node.address)
            if node is HONEST and ch in due:  # every payer, the reckless one too (R1)
                # Served under /verify and settled within a thaw period: paid in full.
                assert self.now < due[ch] + THAW
                assert outcome in (SETTLED, SKIP_STALE) and m.spent[ch] >= m.served_cum[ch], (
                    f"honest node not paid in full on {ch}: outcome {outcome}, spent {m.spent[ch]}, "
                    f"served {m.served_cum[ch]}"
                )
                _note("honest node paid in full")
        m.served_unsettled_since.clear()

    @rule()
    def relayer_settles(self):
        self.relayer_settle()

    # ---- v3 attacks as rules (issue 13) -------------------------------------------------------------------

    @rule(p=st.integers(0, 2), amount=amounts)
    def attack_payer_settles_its_balance_elsewhere_first(self, p, amount):
        """R1: after the honest node served it against credits /verify said were available, the payer signs its
        whole balance to the cheating node (its accomplice) and settles that first. Only a facilitator settles at
        once: the accomplice must propose and wait, and the relayer settles the honest node's claims meanwhile."""
        m, payer = self.m, PAYERS[p]
        self.serve(0, p, amount, False, "none")
        ch = (payer.address, ACCOMPLICE.address)
        mx = m.spent.get(ch, 0) + m.credits[payer.address]  # exactly its whole balance
        if m.credits[payer.address] == 0:
            return
        sig = self.sign_voucher(payer, ACCOMPLICE, mx, payer)
        m.unaccepted.add((ch, mx))
        outcomes = self.settle_as_other([(payer, ACCOMPLICE, mx, sig, payer, mx)], ACCOMPLICE, "R1 attack")
        _note(f"R1 attack: the accomplice's claim {'settled (what was left)' if outcomes == [SETTLED] else f'skipped (reason {outcomes[0]})'}")

    @rule(p=st.integers(0, 2), amount=amounts, variant=st.sampled_from(["same_batch", "relayer_follows", "proposal"]))
    def attack_late_self_settled_fraud(self, p, amount, variant):
        """Second review of v3 (high): the cheating node keeps a fraudulent receipt and a 1-wei one after it from the
        relayer, settles them itself more than a dispute window later, and moves the channel's mark past the
        fraudulent range at once: both claims in one proposed batch, the 1 wei by the relayer after the payer's fresh
        request, or the 1 wei by a second proposal (skipped, reason 6). Safety: the range a settlement by proposal
        paid stays provable (model and chain: an honest verifier's flag is admitted) after any of them."""
        m, payer = self.m, PAYERS[p]
        ch = (payer.address, CHEAT.address)
        self.serve(1, p, amount, False, "fraud")
        fraud, first = m.receipts[-1], m.served_cum.get(ch, 0)
        if fraud.node is not CHEAT or fraud.receipt.cumulative != first:
            return  # /verify refused it
        self.serve(1, p, 1, False, "none")
        if m.served_cum[ch] != first + 1:
            return
        sigs = {mx: sig for mx, sig, signer in m.vouchers[ch] if signer is payer}
        m.unaccepted |= {(ch, first), (ch, first + 1)}  # withheld: no verifier samples them
        self.time_travel(WINDOW + 1, False)
        c1, c2 = ((payer, CHEAT, t, sigs[t], payer, t) for t in (first, first + 1))
        if variant == "same_batch":
            outcomes = self.settle_as_other([c1, c2], CHEAT, "late self-settlement")
        else:
            outcomes = self.settle_as_other([c1], CHEAT, "late self-settlement")
            if outcomes == [SETTLED] and variant == "relayer_follows":
                m.unaccepted.discard((ch, first + 1))
                self.relayer_settle()
            elif outcomes == [SETTLED]:
                assert self.settle_as_other([c2], CHEAT, "second proposal") == [SKIP_HELD]
        if outcomes[0] != SETTLED:
            return
        assert self.admissible(fraud.receipt), "the self-settled fraudulent range is already too old"
        v = HONEST_V[0]
        if self.active_as(v.address, ROLE_VERIFIER) and fraud.h not in m.fraud_proven:
            with boa.env.anchor():  # the chain agrees: the receipt is still admissible
                self.sys.staking.flag(fraud.receipt.as_tuple(), fraud.sig, sender=v.address)
        _note(f"late self-settled fraud ({variant}): still provable")

    @rule(keep=st.sampled_from([1, 10**18, 100 * OPG]), wait=st.sampled_from([0, 3_600, 86_400]))
    def attack_cheater_exits_then_settles(self, keep, wait):
        """R10: the cheating node unbonds all but `keep`, settles its (fraudulent) vouchers, waits out the
        unbonding period and withdraws; the fraud proofs that follow must still cost it the multiple."""
        m, a = self.m, CHEAT
        s = self.mature(a.address)
        if s.stake > keep:
            self.request_unbond(1, 100 * (s.stake - keep) // s.stake if s.stake else 0)
        self.time_travel(wait or 1, False)
        claims = []
        for payer in PAYERS:
            ch = (payer.address, a.address)
            vs = [v for v in m.vouchers.get(ch, []) if v[0] <= m.served_cum.get(ch, 0)]
            if vs:
                mx, sig, signer = max(vs, key=lambda x: x[0])
                claims.append((payer, a, mx, sig, signer, mx))
        if claims:
            outcomes = self.predict_and_settle(claims, "cheater exit")
            _note(f"cheater exit: {outcomes.count(SETTLED)} settled, {outcomes.count(SKIP_NOT_PAYABLE)} beyond backing")
        self.time_travel(P.unbonding_period, False)
        self.withdraw_unbonded(1)
        for k, x in enumerate([x for x in m.receipts if x.fraudulent]):  # prove_fraud picks among these
            if x.node is a and x.h not in m.fraud_proven:
                self.prove_fraud(k)

    @rule(amount=st.integers(1, 300).map(lambda x: x * OPG), burn_wait=st.sampled_from([0, 2 * 86_400 + 1]))
    def attack_two_victims_of_one_offence(self, amount, burn_wait):
        """R11: the cheating node defrauds two payers, both paid; two proofs of one offence refund both payers
        (the second out of the first proof's reserve if its own slash is short) before anything burns."""
        before = len(self.m.receipts)
        self.serve(1, 0, amount, False, "fraud")
        self.serve(1, 1, amount, False, "fraud")
        self.relayer_settle()
        victims = self.m.receipts[before:]
        for k, x in enumerate([x for x in self.m.receipts if x.fraudulent]):  # prove_fraud picks among these
            if any(x is v for v in victims):
                self.prove_fraud(k)
        if burn_wait:
            self.time_travel(burn_wait, False)
        self.burn_reserve(1)

    # ---- time ------------------------------------------------------------------------------------------

    @rule(seconds=st.sampled_from(TIME_STEPS), to_next_epoch=st.sampled_from([True, True, False]))
    def time_travel(self, seconds, to_next_epoch):
        """Time passes; the relayer settles honest work before a thaw period elapses; honest verifiers stay live."""
        m = self.m
        if m.served_unsettled_since and min(m.served_unsettled_since.values()) + THAW <= self.now + seconds:
            self.relayer_settle()
        boa.env.time_travel(seconds=seconds)
        for v in HONEST_V:
            self.do_heartbeat(v)
        if to_next_epoch:  # into the next epoch, live (the honest verifiers heartbeat there too)
            e = self.epoch_now()
            boundary = self.sys.epoch0_end + (e - self.sys.epoch0) * EPOCH
            if m.served_unsettled_since and min(m.served_unsettled_since.values()) + THAW <= boundary:
                self.relayer_settle()
            boa.env.time_travel(seconds=boundary - self.now)
            assert self.epoch_now() == e + 1
            for v in HONEST_V:
                self.do_heartbeat(v)

    # ---- staking ---------------------------------------------------------------------------------------

    @rule(i=st.integers(0, len(VERIFIERS) - 1))
    def heartbeat(self, i):
        self.do_heartbeat(VERIFIERS[i])

    @rule(i=st.sampled_from([0, 1, 2, 3]), amount=amounts)
    def add_stake(self, i, amount):
        """Top-ups by the nodes and the honest verifiers (sybils stay below a third of the weight)."""
        a, m = [HONEST, CHEAT, *HONEST_V][i], self.m
        amount = min(amount, m.tok[a.address])
        if amount == 0:
            with boa.reverts("NodeStaking: zero amount"):
                self.sys.staking.add_stake(0, sender=a.address)
            return
        s = self.mature(a.address)
        self.sys.staking.add_stake(amount, sender=a.address)
        s.stake += amount
        s.fresh += amount
        s.fresh_since = self.now
        if self.try_release(a.address) and s.released_at == self.now:
            _note("released by add_stake")
        move(m, a.address, str(self.sys.staking.address), amount)
        m.staked_in[a.address] += amount

    @rule(i=st.sampled_from([0, 1, 4, 5]), pct=st.integers(0, 100))
    def request_unbond(self, i, pct):
        a = STAKERS[i]
        s = self.mature(a.address)
        amount = s.stake * pct // 100
        if a is HONEST:  # keeps its accepted, unpaid work backed (what its /verify admission relied on)
            keep = (self.outstanding_to(a.address) + self.paid_in_window(a.address)) * P.fraud_multiplier
            amount = min(amount, max(0, s.stake - keep))
        if amount == 0:
            with boa.reverts("NodeStaking: zero amount"):
                self.sys.staking.request_unbond(0, sender=a.address)
            return
        self.sys.staking.request_unbond(amount, sender=a.address)
        s.stake -= amount
        s.fresh -= min(s.fresh, amount)
        s.unbonding += amount
        s.ready_at = self.now + P.unbonding_period
        paid_at = self.m.node_settled_at.get(a.address, 0)  # pay before the request stays backed while provable
        if paid_at:
            s.ready_at = max(s.ready_at, paid_at + 2 * WINDOW + MAX_FUTURE + 1)

    @rule(i=st.sampled_from([0, 1, 4, 5]))
    def withdraw_unbonded(self, i):
        a, m = STAKERS[i], self.m
        s = m.stakes[a.address]
        reason = None
        if s.unbonding == 0:
            reason = "NodeStaking: nothing unbonding"
        elif self.now < s.ready_at:
            reason = "NodeStaking: still unbonding"
        if reason:
            with boa.reverts(reason):
                self.sys.staking.withdraw_unbonded(sender=a.address)
            return
        _note("unbonded stake withdrawn")
        assert self.sys.staking.withdraw_unbonded(sender=a.address) == s.unbonding
        self.pay_out(a.address, s.unbonding)
        m.withdrawn_stake[a.address] = m.withdrawn_stake.get(a.address, 0) + s.unbonding
        s.unbonding = 0

    @rule(i=st.sampled_from([1, 4, 5]))
    def unjail(self, i):
        a = STAKERS[i]
        s = self.m.stakes[a.address]
        if not s.jailed:
            with boa.reverts("NodeStaking: not jailed"):
                self.sys.staking.unjail(sender=a.address)
            return
        if not self.try_release(a.address):
            with boa.reverts("NodeStaking: jail not over"):
                self.sys.staking.unjail(sender=a.address)
            return
        _note("unjailed")
        self.sys.staking.unjail(sender=a.address)

    # ---- slashing ----------------------------------------------------------------------------------------

    def pick(self, which: int, pred) -> Served | None:
        cands = [s for s in self.m.receipts if pred(s)]
        return cands[which % len(cands)] if cands else None

    def verdicts(self, h: bytes, voters: list[Actor], valid: bool) -> list:
        voters = sorted(voters, key=lambda a: int(a.address, 16))
        return [
            (v.address, sign(v, Verdict(receipt_hash="0x" + h.hex(), valid=valid), self.sys.staking_domain))
            for v in voters
        ]

    def tally(self, voters: list[Actor]) -> str | None:
        epoch = self.epoch_now()
        total = self.m.total_weight.get(epoch, 0)
        if total == 0:
            return "NodeStaking: no live weight"
        weight = sum(self.vote_weight(v.address, epoch) for v in voters)
        if weight * BPS < total * P.fraud_quorum_bps:
            return "NodeStaking: quorum not reached"
        return None

    def judge_reason(self, s: Served, valid: bool, voters: list[Actor]) -> str | None:
        m = self.m
        if not self.admissible(s.receipt):
            return "NodeStaking: evidence too old"
        if valid:
            if s.h in m.valid_proven:
                return "NodeStaking: evidence already used"
            if s.h in m.fraud_proven:
                return "NodeStaking: proven fraudulent"
        else:
            if s.h in m.fraud_proven:
                return "NodeStaking: evidence already used"
            if s.h in m.valid_proven:
                return "NodeStaking: proven valid"
        return self.tally(voters)

    @rule(which=st.integers(0, 50))
    def prove_fraud(self, which):
        """The honest verifiers' valid=false verdicts on an actually cheating receipt."""
        s = self.pick(which, lambda r: r.fraudulent)
        if s is None:
            return
        m, stk, r = self.m, self.sys.staking, s.receipt
        ch = (r.payer, r.node)
        voters = [v for v in HONEST_V if self.vote_weight(v.address, self.epoch_now()) > 0]
        reason = self.judge_reason(s, False, voters)
        verdicts = self.verdicts(s.h, voters, False)
        if reason:
            _note(f"fraud proof refused: {reason}")
            with boa.reverts(reason):
                stk.slash_fraud(r.as_tuple(), s.sig, verdicts, sender=RELAYER.address)
            return
        epoch = self.epoch_now()
        weights = [self.vote_weight(v, epoch) for v, _ in verdicts]
        m.fraud_proven[s.h] = self.now
        spent, voided = m.spent.get(ch, 0), m.voided.get(ch, 0)
        if r.cumulative > spent:
            m.voided[ch] = voided + r.cumulative - spent
            m.spent[ch] = r.cumulative
        node = m.stakes[r.node]
        slashable = node.stake + node.unbonding
        penalty = min(r.amount, slashable) * P.fraud_multiplier
        if not node.jailed:  # R5: an offence is what is proven while jailed, whatever the receipt's timestamp
            penalty += bps_of(slashable, P.fraud_slash_bps)
            self.jail(r.node)
        amount = self.take(r.node, penalty)
        refund = 0
        low, high = r.cumulative - r.amount, r.cumulative
        if r.amount <= r.cumulative and spent > low:
            paid = min(high, spent) - low
            void_low, void_high = m.void_range.get(ch, (0, 0))
            overlap = min(void_high, high) - max(void_low, low)
            if overlap > 0:
                paid -= min(paid, overlap)  # charges an earlier proof voided were never paid
            refund = min(paid, spent - voided - m.refunded.get(ch, 0))
        if r.cumulative > spent:
            void_low, void_high = m.void_range.get(ch, (0, 0))
            m.void_range[ch] = (void_low if ch in m.void_range and void_high == spent else spent, r.cumulative)
        held = m.stake_reserve.get(r.node, 0)
        from_slash = min(refund, amount)
        from_reserve = min(refund - from_slash, held)
        due = refund
        refund = from_slash + from_reserve  # R11: victims first, out of the slash, then the reserve
        # R11: a defrauded payer is refunded in full whenever this proof and the node's reserve can cover it.
        assert refund == due or refund == amount + held, (refund, due, amount, held)
        m.paid_fraud[r.node] = m.paid_fraud.get(r.node, 0) + due
        m.refunded[ch] = m.refunded.get(ch, 0) + refund
        reward = (amount - from_slash) * P.challenger_reward_bps // BPS
        shares = [reward * w // sum(weights) for w in weights]
        stk.slash_fraud(r.as_tuple(), s.sig, verdicts, sender=RELAYER.address)
        ev = self.slashed_event(KIND_FRAUD)
        assert (ev.amount, ev.refund, ev.reward) == (amount, refund, sum(shares)), (ev, amount, refund, shares)
        assert amount <= slashable and refund <= r.amount  # invariant 6
        if s.h in m.disputes:
            payer, bond, _ = m.disputes.pop(s.h)
            m.bonds_held -= bond
            self.pay_out(payer, bond)
            _note("dispute bond returned to the payer")
        self.pay_out(r.payer, refund)
        for (v, _), share in zip(verdicts, shares, strict=True):
            self.pay_out(v, share)
        self.hold(r.node, held - from_reserve + amount - from_slash - sum(shares))
        _note(f"fraud slashed (refund {'> 0' if refund else '= 0'}{', from the reserve' if from_reserve else ''})")

    @rule(which=st.integers(0, 50), valid_true=st.booleans())
    def attack_sybils_accuse_honest_receipt(self, which, valid_true):
        """Sybil verifiers (below a third of the live weight) try to prove an honest receipt fraudulent."""
        s = self.pick(which, lambda r: not r.fraudulent)
        if s is None:
            return
        reason = self.judge_reason(s, False, SYBILS)
        assert reason is not None, "model: sybils alone reached the fraud quorum"
        with boa.reverts(reason):
            self.sys.staking.slash_fraud(
                s.receipt.as_tuple(), s.sig, self.verdicts(s.h, SYBILS, False), sender=SYBILS[0].address
            )
        _note(f"sybil fraud attack refused: {reason}")

    @rule(which=st.integers(0, 50))
    def prove_valid(self, which):
        """The honest verifiers' valid=true verdicts on a receipt with the right answer."""
        s = self.pick(which, lambda r: not r.fraudulent)
        if s is None:
            return
        m, r = self.m, s.receipt
        voters = [v for v in HONEST_V if self.vote_weight(v.address, self.epoch_now()) > 0]
        reason = self.judge_reason(s, True, voters)
        verdicts = self.verdicts(s.h, voters, True)
        if reason:
            _note(f"prove_valid refused: {reason}")
            with boa.reverts(reason):
                self.sys.staking.prove_valid(r.as_tuple(), s.sig, verdicts, sender=RELAYER.address)
            return
        self.sys.staking.prove_valid(r.as_tuple(), s.sig, verdicts, sender=RELAYER.address)
        m.valid_proven[s.h] = self.now
        if s.h in m.disputes:
            _payer, bond, _ = m.disputes.pop(s.h)
            m.bonds_held -= bond
            self.pay_out(r.node, bond)
            _note("dispute bond paid to the node")
        _note("validity proven")

    @rule(which=st.integers(0, 50), who=st.integers(0, 2))
    def flag(self, which, who):
        """A sybil flags an honest receipt, an honest verifier flags a cheating one, or the payer disputes."""
        m = self.m
        fraudulent = who == 1 or (who == 2 and which % 2 == 1)  # payers dispute both kinds
        s = self.pick(which, lambda r: r.fraudulent == fraudulent)
        if s is None:
            return
        flagger = [SYBILS[which % 2], HONEST_V[which % 2], s.payer][who]
        r = s.receipt
        reason = None
        if not self.admissible(r):
            reason = "NodeStaking: evidence too old"
        elif s.h in m.fraud_proven or s.h in m.valid_proven:
            reason = "NodeStaking: already judged"
        elif flagger is s.payer:
            if s.h in m.disputes:
                reason = "NodeStaking: already disputed"
        elif not self.active_as(flagger.address, ROLE_VERIFIER):
            reason = "NodeStaking: not an active verifier"
        elif (s.h, flagger.address) in m.flagged:
            reason = "NodeStaking: already flagged"
        if reason is None and flagger is s.payer and m.tok[flagger.address] < r.amount:
            return  # cannot afford the bond
        if reason:
            _note(f"flag refused: {reason}")
            with boa.reverts(reason):
                self.sys.staking.flag(r.as_tuple(), s.sig, sender=flagger.address)
            return
        self.sys.staking.flag(r.as_tuple(), s.sig, sender=flagger.address)
        m.accused_at.setdefault(s.h, self.now)
        if flagger is s.payer:
            m.disputes[s.h] = (flagger.address, r.amount, self.now)
            m.bonds_held += r.amount
            move(m, flagger.address, str(self.sys.staking.address), r.amount)
            _note("payer disputed")
        else:
            m.flagged.add((s.h, flagger.address))
            _note("verifier flagged")

    @rule(which=st.integers(0, 50))
    def reclaim_bond(self, which):
        m = self.m
        if not m.disputes:
            return
        h = sorted(m.disputes)[which % len(m.disputes)]
        payer, bond, opened = m.disputes[h]
        if self.now <= opened + 2 * WINDOW:
            with boa.reverts("NodeStaking: dispute still open"):
                self.sys.staking.reclaim_bond(h, sender=RELAYER.address)
            return
        self.sys.staking.reclaim_bond(h, sender=RELAYER.address)
        del m.disputes[h]
        m.bonds_held -= bond
        self.pay_out(payer, bond)
        _note("bond reclaimed")

    @rule(i=st.integers(0, 7))
    def burn_reserve(self, i):
        """NodeStaking v3 (R11): anyone burns an account's reserve two dispute windows after its last slash."""
        m = self.m
        a = STAKERS[i % len(STAKERS)].address
        held = m.stake_reserve.get(a, 0)
        reason = None
        if held == 0:
            reason = "NodeStaking: no reserve"
        elif self.now <= m.stake_reserve_until[a]:
            reason = "NodeStaking: reserve still held"
        if reason:
            with boa.reverts(reason):
                self.sys.staking.burn_reserve(a, sender=RELAYER.address)
            return
        # R11: no victim of the offence can still be refunded: every paid, unproven fraudulent receipt of the
        # account dated before its last slash is out of its dispute window.
        last_slash = m.stake_reserve_until[a] - 2 * WINDOW - MAX_FUTURE
        for x in m.receipts:
            r, ch = x.receipt, (x.receipt.payer, x.receipt.node)
            if (x.fraudulent and r.node == a and x.h not in m.fraud_proven and r.timestamp <= last_slash
                    and m.spent.get(ch, 0) - m.voided.get(ch, 0) > r.cumulative - r.amount):
                assert not self.admissible(r), f"reserve of {a} burned while a victim could still prove {x.h.hex()}"
        assert self.sys.staking.burn_reserve(a, sender=RELAYER.address) == held
        m.stake_reserve[a] = 0
        self.burn_from_staking(held)
        _note("reserve burned")

    @rule(which=st.integers(0, 50), j=st.integers(0, 1), use_flag=st.booleans())
    def slash_wrong_verifier(self, which, j, use_flag):
        """A sybil's contrary verdict after the quorum decided: false accuser (kind 6) or lazy (kind 3)."""
        m, sybil = self.m, SYBILS[j]
        s = self.pick(which, lambda r: r.h in m.fraud_proven or r.h in m.valid_proven)
        if s is None:
            return
        lazy = s.h in m.fraud_proven
        kind = KIND_LAZY if lazy else KIND_FALSE_ACCUSER
        proven_at = m.fraud_proven[s.h] if lazy else m.valid_proven[s.h]
        if use_flag and not lazy:
            sig = b""
        else:
            sig = sign(sybil, Verdict(receipt_hash="0x" + s.h.hex(), valid=lazy), self.sys.staking_domain)
        evidence = keccak(_abi_encode(["uint8", "bytes32", "address"], [kind, s.h, sybil.address]))
        last = m.last_verifier_slash.get(sybil.address, 0)
        st_ = m.stakes[sybil.address]
        reason = None
        if sig == b"" and (s.h, sybil.address) not in m.flagged:
            reason = "NodeStaking: no flag"
        elif self.now > proven_at + WINDOW:
            reason = "NodeStaking: evidence too old"
        elif last != 0 and self.now < last + WINDOW:
            reason = "NodeStaking: slashed this window"
        elif evidence in m.evidence_used:
            reason = "NodeStaking: evidence already used"
        elif st_.stake + st_.unbonding == 0:
            reason = "NodeStaking: nothing to slash"
        if reason:
            _note(f"slash_verifier refused: {reason}")
            with boa.reverts(reason):
                self.sys.staking.slash_verifier(s.h, sybil.address, sig, sender=RELAYER.address)
            return
        m.last_verifier_slash[sybil.address] = self.now
        self.sys.staking.slash_verifier(s.h, sybil.address, sig, sender=RELAYER.address)
        self.slash_trustless(sybil.address, evidence, P.fraud_slash_bps, kind, RELAYER)
        _note(f"verifier slashed kind {kind}")

    @rule(which=st.integers(0, 50))
    def slash_equivocation(self, which):
        m = self.m
        pairs = {}
        for s in m.receipts:
            pairs.setdefault((s.node.address, s.receipt.request_id), []).append(s)
        twins = [v for v in pairs.values() if len(v) == 2]
        if not twins:
            return
        a, b = twins[which % len(twins)]
        node = a.node.address
        evidence = keccak(
            _abi_encode(
                ["uint8", "address", "bytes32"], [KIND_EQUIVOCATION, node, bytes.fromhex(a.receipt.request_id[2:])]
            )
        )
        st_ = m.stakes[node]
        reason = None
        if not self.admissible(a.receipt) or not self.admissible(b.receipt):
            reason = "NodeStaking: evidence too old"
        elif evidence in m.evidence_used:
            reason = "NodeStaking: evidence already used"
        elif st_.stake + st_.unbonding == 0:
            reason = "NodeStaking: nothing to slash"
        if reason:
            _note(f"equivocation refused: {reason}")
            with boa.reverts(reason):
                self.sys.staking.slash_equivocation(
                    a.receipt.as_tuple(), a.sig, b.receipt.as_tuple(), b.sig, sender=RELAYER.address
                )
            return
        self.sys.staking.slash_equivocation(
            a.receipt.as_tuple(), a.sig, b.receipt.as_tuple(), b.sig, sender=RELAYER.address
        )
        self.slash_trustless(node, evidence, P.equivocation_slash_bps, KIND_EQUIVOCATION, RELAYER)
        _note("equivocation slashed")

    # ---- rewards ---------------------------------------------------------------------------------------

    def epochs(self) -> list[int]:
        return sorted(set(self.m.epoch_fees) | set(self.m.pool) | {self.epoch_now() - 1, self.epoch_now()})

    @rule(which=st.integers(0, 20), i=st.integers(0, len(VERIFIERS) - 1))
    def collect_verifier_reward(self, which, i):
        m, v = self.m, VERIFIERS[i]
        pools = sorted(e for e in m.pool if (e, v.address) not in m.pool_collected)
        epoch = pools[which % len(pools)] if pools and which % 4 else self.epochs()[which % len(self.epochs())]
        w = m.weight_in.get((epoch, v.address), 0)
        reason = None
        if epoch >= self.epoch_now():
            reason = "RewardDistributor: epoch not ended"
        elif (epoch, v.address) in m.pool_collected:
            reason = "RewardDistributor: reward already collected"
        elif w == 0:
            reason = "RewardDistributor: no weight in epoch"
        if reason:
            with boa.reverts(reason):
                self.sys.distributor.collect_verifier_reward(v.address, epoch, sender=RELAYER.address)
            return
        self.sys.distributor.collect_verifier_reward(v.address, epoch, sender=RELAYER.address)
        share = m.pool.get(epoch, 0) * w // m.total_weight[epoch]
        m.pool_collected[(epoch, v.address)] = share
        # R9: a verifier jailed at any moment since the epoch began forfeits its share to the treasury.
        start = self.sys.epoch0_end + (epoch - self.sys.epoch0 - 1) * EPOCH
        st_ = m.stakes[v.address]
        if st_.jailed or st_.jailed_at >= start or st_.released_at > start:
            assert v in SYBILS, f"honest verifier {v} forfeited its reward"
            m.claimable[TREASURY.address] = m.claimable.get(TREASURY.address, 0) + share
            _note("verifier reward forfeited (jailed since the epoch began)")
            return
        m.claimable[v.address] = m.claimable.get(v.address, 0) + share
        _note(f"verifier reward collected {'> 0' if share else '= 0'}")

    @rule(which=st.integers(0, 20), n=st.integers(0, 1))
    def collect_emission(self, which, n):
        m, node = self.m, NODES[n]
        due = sorted(e for (e, a) in m.node_epoch_fees if a == node.address and (e, a) not in m.emission_collected)
        epoch = due[which % len(due)] if due and which % 4 else self.epochs()[which % len(self.epochs())]
        dist = self.sys.distributor
        if (epoch, node.address) in m.emission_collected:
            with boa.reverts("RewardDistributor: emission already collected"):
                dist.collect_emission(node.address, epoch, sender=RELAYER.address)
            return
        import copy

        saved = copy.deepcopy((m.finalized, m.finalized_reserve, m.reserve, m.next_to_finalize))
        reason = self.finalize_model(epoch)
        fees = m.node_epoch_fees.get((epoch, node.address), 0)
        if reason is None and fees == 0:
            reason = "RewardDistributor: no fees in epoch"
        if reason:
            m.finalized, m.finalized_reserve, m.reserve, m.next_to_finalize = saved
            with boa.reverts(reason):
                dist.collect_emission(node.address, epoch, sender=RELAYER.address)
            return
        dist.collect_emission(node.address, epoch, sender=RELAYER.address)
        share = m.finalized[epoch] * fees // m.epoch_fees[epoch]
        m.emission_collected[(epoch, node.address)] = share
        m.claimable[node.address] = m.claimable.get(node.address, 0) + share
        assert share <= fees * P.max_emission_per_fee_bps // BPS + 1
        _note(f"emission collected {'> 0' if share else '= 0'}")

    @rule(which=st.integers(0, 20))
    def finalize_epoch(self, which):
        import copy

        m = self.m
        epoch = self.epochs()[which % len(self.epochs())]
        saved = copy.deepcopy((m.finalized, m.finalized_reserve, m.reserve, m.next_to_finalize))
        reason = self.finalize_model(epoch)
        if reason:
            m.finalized, m.finalized_reserve, m.reserve, m.next_to_finalize = saved
            with boa.reverts(reason):
                self.sys.distributor.finalize_epoch(epoch, sender=RELAYER.address)
            return
        self.sys.distributor.finalize_epoch(epoch, sender=RELAYER.address)

    @rule(i=st.integers(0, len(ACTORS) - 1), targeted=st.booleans())
    def claim(self, i, targeted):
        m = self.m
        actor = ACTORS[i]
        owed = [a for a in ACTORS if m.claimable.get(a.address, 0) > 0]
        if targeted and owed:
            actor = owed[i % len(owed)]
        expected = m.claimable.get(actor.address, 0)
        if expected == 0:
            with boa.reverts("RewardDistributor: nothing to claim"):
                self.sys.distributor.claim(sender=actor.address)
            return
        assert self.sys.distributor.claim(sender=actor.address) == expected
        m.claimable[actor.address] = 0
        move(m, str(self.sys.distributor.address), actor.address, expected)
        _note("claim paid")

    # ---- invariants --------------------------------------------------------------------------------------

    @invariant()
    def protocol_invariants(self):
        _STATS["~steps checked"] += 1
        _check_invariants(self.sys, self.m, self.last_spent)


# --------------------------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------------------------


def _abi_encode(types, values) -> bytes:
    from eth_abi import encode

    return encode(types, values)


def _snapshot(system: System) -> dict:
    so, se, ss, sd = system.s_opg, system.s_escrow, system.s_staking, system.s_dist
    return {
        "total_supply": so.get("totalSupply"),
        "balances": {h: so.get("balanceOf", h) for h in system.holders},
        "credits": {p.address: se.get("balance_of", p.address) for p in PAYERS},
        "spent": {
            (p.address, n.address): se.get("_channel", p.address, n.address) & SPENT_MASK for p in PAYERS for n in NODES
        },
        "voided": {(p.address, n.address): se.get("voided", p.address, n.address) for p in PAYERS for n in NODES},
        "stakes": {a.address: tuple(ss.get("nodes", a.address, offset=i) for i in range(10)) for a in STAKERS},
        "bonds_held": ss.get("bonds_held"),
        "reserves_held": ss.get("reserves_held"),
        "claimable": {a.address: sd.get("claimable", a.address) for a in ACTORS},
        "reserve": sd.get("emission_reserve"),
    }


def _check_invariants(system: System, m: Model, last_spent: dict) -> None:
    snap = _snapshot(system)
    bal = snap["balances"]
    esc, stk, dist = str(system.escrow.address), str(system.staking.address), str(system.distributor.address)

    # (1) OPG conservation.
    assert sum(bal.values()) == snap["total_supply"] == TOTAL_SUPPLY - m.burned, "inv 1"
    assert bal == m.tok, f"token balances differ from the model: {_diff(bal, m.tok)}"

    # (2) escrow holds exactly the payers' credits.
    assert bal[esc] == sum(snap["credits"].values()), "inv 2"
    assert snap["credits"] == {p.address: m.credits[p.address] for p in PAYERS}

    # (3) staking holds exactly stake + unbonding + dispute bonds.
    assert bal[stk] == (
        sum(s[2] + s[3] for s in snap["stakes"].values()) + snap["bonds_held"] + snap["reserves_held"]
    ), "inv 3"
    assert snap["bonds_held"] == m.bonds_held
    assert snap["reserves_held"] == sum(m.stake_reserve.values())
    for a in STAKERS:
        s = m.stakes[a.address]
        chain = snap["stakes"][a.address]
        model = s.as_tuple()
        # `fresh` matures lazily on chain: compare it only as an upper bound.
        assert chain[:5] + chain[6:] == model[:5] + model[6:], f"stake of {a}: chain {chain} model {model}"
        assert chain[5] == model[5] or (model[5] == 0 and boa.env.timestamp >= s.fresh_since + P.warmup), (
            a,
            chain,
            model,
        )

    # (4) distributor solvency, from the model.
    pools = sum(m.pool.values()) - sum(m.pool_collected.values())
    emissions = sum(m.finalized.values()) - sum(m.emission_collected.values())
    owed = sum(m.claimable.values()) + m.reserve + pools + emissions
    assert snap["claimable"] == {a.address: m.claimable.get(a.address, 0) for a in ACTORS}, (
        f"claimable differs: {_diff(snap['claimable'], m.claimable)}"
    )
    assert snap["reserve"] == m.reserve
    assert bal[dist] >= owed, f"inv 4: distributor holds {bal[dist]} but owes {owed}"
    assert bal[dist] - owed < 10**9, f"inv 4: {bal[dist] - owed} wei stuck in the distributor"

    # (5) channels.
    for p in PAYERS:
        paid = 0
        for n in NODES:
            ch = (p.address, n.address)
            spent, voided = snap["spent"][ch], snap["voided"][ch]
            assert spent >= last_spent.get(ch, 0), f"inv 5: spent{ch} decreased"
            assert spent == m.spent.get(ch, 0) and voided == m.voided.get(ch, 0), (ch, spent, voided)
            assert spent - voided <= m.max_payer_signed.get(ch, 0) + m.key_charged.get(ch, 0), f"inv 5: {ch}"
            paid += spent - voided - m.refunded.get(ch, 0)
        caps = sum(m.max_payer_signed.get((p.address, n.address), 0) for n in NODES)
        assert paid <= caps + m.key_granted.get(p.address, 0), f"inv 5: payer {p} paid {paid}"
    last_spent.update(snap["spent"])

    # (6) no evidence slashes twice (per-slash bounds are checked where the slash happens).
    assert all(c == 1 for c in m.slashes_per_evidence.values()), f"inv 6: {m.slashes_per_evidence}"

    # (8) R10: pay that can still be disputed stays backed by `fraud_multiplier` times it in stake, however the
    # node exits (unbonding, withdrawing), unless slashes took that stake since the pay.
    now = boa.env.timestamp
    for n in (HONEST, CHEAT, ACCOMPLICE):
        # provable: settled at most 2 dispute windows + MAX_FUTURE ago (a flag in the last admissible second);
        # `pay_capacity` counts at least that (checked against the model's pay buckets in `capacity`).
        since = now - 2 * WINDOW - MAX_FUTURE
        disputable = sum(a for t, a in m.pays.get(n.address, []) if t >= since)
        assert pay_in_window(*m.pay_window.get(n.address, (-3, 0, 0, 0)), now) >= disputable, f"inv 8: {n} forgot pay"
        if disputable == 0:
            continue
        s = snap["stakes"][n.address]
        taken_since = sum(a for t, a in m.taken.get(n.address, []) if t >= since)
        assert s[2] + s[3] + taken_since >= P.fraud_multiplier * disputable, (
            f"inv 8: {n} holds {s[2] + s[3]} (+{taken_since} slashed) for {disputable} of disputable pay"
        )

    # (9) a cheater's loss is at least `fraud_multiplier` x what its payers paid for receipts proven fraudulent,
    # or all it staked (whatever it did in between: unbonding, withdrawing, more fraud).
    loss = sum(a for _, a in m.taken.get(CHEAT.address, []))
    assert loss >= P.fraud_multiplier * m.paid_fraud.get(CHEAT.address, 0) or loss == m.staked_in[
        CHEAT.address] - m.withdrawn_stake.get(CHEAT.address, 0), f"inv 9: {CHEAT} lost {loss}"

    # (7) the honest node and the honest verifiers never lose stake.
    for a in (HONEST, *HONEST_V):
        s = snap["stakes"][a.address]
        assert s[1] == 0 and s[2] + s[3] + m.withdrawn_stake.get(a.address, 0) == m.staked_in[a.address], a


def _diff(a: dict, b: dict) -> dict:
    return {k: (a.get(k), b.get(k)) for k in set(a) | set(b) if a.get(k, 0) != b.get(k, 0)}


def _check_views(system: System, m: Model) -> None:
    snap = _snapshot(system)
    opg, esc, stk, dist = system.opg, system.escrow, system.staking, system.distributor
    assert opg.totalSupply() == snap["total_supply"]
    for h in system.holders:
        assert opg.balanceOf(h) == snap["balances"][h]
    for p in PAYERS:
        assert esc.balance_of(p.address) == snap["credits"][p.address]
        for n in NODES:
            assert esc.spent(p.address, n.address) == snap["spent"][(p.address, n.address)]
            assert esc.voided(p.address, n.address) == snap["voided"][(p.address, n.address)]
            ch = (p.address, n.address)
            assert esc.settled_at(*ch) == m.settled_at.get(ch, 0)
            assert tuple(esc.last_settlement(*ch)) == (m.settled_at.get(ch, 0), m.spent_before.get(ch, 0))
            held = m.settled_at[ch] + WINDOW + MAX_FUTURE if m.by_proposal.get(ch) else 0
            assert esc.held_until(*ch) == held
        k = (p.address, KEYS[PAYERS.index(p)].address)
        assert tuple(esc.signer_of(*k)) == m.keys.get(k, (0, 0))
    for a in STAKERS:
        assert tuple(stk.nodes(a.address))[2:4] == snap["stakes"][a.address][2:4]
    assert stk.bonds_held() == snap["bonds_held"]
    for a in ACTORS:
        assert dist.claimable_of(a.address) == snap["claimable"][a.address]
    assert dist.emission_reserve() == snap["reserve"]
    assert dist.epoch_now() == _epoch_now(system)
    e = _epoch_now(system)
    assert stk.total_weight_in(e) == m.total_weight.get(e, 0)
    for v in VERIFIERS:
        assert stk.weight_in(e, v.address) == m.weight_in.get((e, v.address), 0)


def _epoch_now(system: System) -> int:
    now = boa.env.timestamp
    return system.epoch0 if now < system.epoch0_end else system.epoch0 + (now - system.epoch0_end) // EPOCH + 1


# --------------------------------------------------------------------------------------------------------------
# The test
# --------------------------------------------------------------------------------------------------------------


def test_protocol_invariants(boa_system):
    global SYSTEM, INITIAL_MODEL
    SYSTEM, INITIAL_MODEL = boa_system, build_initial_model(boa_system)
    _STATS.clear()
    started = time.perf_counter()
    run_state_machine_as_test(
        ProtocolMachine,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            print_blob=True,
        ),
    )
    print(f"\nproperty test: {EXAMPLES} examples x {STEPS} steps in {time.perf_counter() - started:.1f} s")
    for label, count in sorted(_STATS.items()):
        print(f"  {label:<48} {count}")


# --------------------------------------------------------------------------------------------------------------
# Regressions and attacks (deterministic, fast)
# --------------------------------------------------------------------------------------------------------------


def _receipt(system: System, node: Actor, payer: Actor, tag: str, amount: int, cumulative: int) -> tuple:
    r = Receipt(
        request_id="0x" + keccak(text=f"regression-{tag}").hex(),
        payer=payer.address,
        node=node.address,
        model_id="0x" + bytes(32).hex(),
        input_hash="0x" + keccak(text=f"in-{tag}").hex(),
        output_hash="0x" + keccak(text=f"out-{tag}").hex(),
        amount=amount,
        cumulative=cumulative,
        timestamp=boa.env.timestamp,
    )
    return r, sign(node, r, system.staking_domain), r.struct_hash()


def _verdicts(system: System, h: bytes, voters: list[Actor], valid: bool) -> list:
    voters = sorted(voters, key=lambda a: int(a.address, 16))
    return [
        (v.address, sign(v, Verdict(receipt_hash="0x" + h.hex(), valid=valid), system.staking_domain)) for v in voters
    ]


def _settle(system: System, payer: Actor, node: Actor, total: int) -> list:
    v = Voucher(payer=payer.address, node=node.address, max_cumulative=total)
    r, vs = compact_signature(sign(payer, v, system.escrow_domain))
    return list(
        system.escrow.settle_batch(
            [(payer.address, node.address, total, r, vs, total)], bytes(32), sender=RELAYER.address
        )
    )


def test_fraud_refunds_never_exceed_what_the_channel_paid(boa_system):
    """v1 regression, still applies: three fraudulent receipts over one paid range refund it once, in total."""
    s, payer = boa_system, PAYERS[0]
    paid = 100 * OPG
    with boa.env.anchor():
        assert _settle(s, payer, CHEAT, paid) == [SETTLED]
        refunds = 0
        for tag in ("a", "b", "c"):
            r, sig, h = _receipt(s, CHEAT, payer, tag, paid, paid)
            before = s.opg.balanceOf(payer.address)
            s.staking.slash_fraud(r.as_tuple(), sig, _verdicts(s, h, HONEST_V, False), sender=RELAYER.address)
            refunds += s.opg.balanceOf(payer.address) - before
        assert refunds == paid, f"payer paid {paid} on the channel but was refunded {refunds}"


def test_attack_sybil_verifiers_below_quorum_cannot_slash_honest_node(boa_system):
    s = boa_system
    with boa.env.anchor():
        assert _settle(s, PAYERS[0], HONEST, 10 * OPG) == [SETTLED]
        r, sig, h = _receipt(s, HONEST, PAYERS[0], "honest", 10 * OPG, 10 * OPG)
        stake = s.staking.nodes(HONEST.address)[2]
        with boa.reverts("NodeStaking: quorum not reached"):
            s.staking.slash_fraud(r.as_tuple(), sig, _verdicts(s, h, SYBILS, False), sender=SYBILS[0].address)
        assert s.staking.nodes(HONEST.address)[2] == stake and s.escrow.voided(PAYERS[0].address, HONEST.address) == 0


def test_honest_verifiers_reach_quorum_and_prove_the_receipt_valid(boa_system):
    s = boa_system
    with boa.env.anchor():
        r, sig, h = _receipt(s, HONEST, PAYERS[0], "honest-valid", 10 * OPG, 10 * OPG)
        s.staking.prove_valid(r.as_tuple(), sig, _verdicts(s, h, HONEST_V, True), sender=RELAYER.address)
        assert s.staking.valid_proven_at(h) == boa.env.timestamp
        with boa.reverts("NodeStaking: proven valid"):
            s.staking.slash_fraud(r.as_tuple(), sig, _verdicts(s, h, SYBILS, False), sender=SYBILS[0].address)
