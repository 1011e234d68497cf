# pragma version ~=0.4.3
# pragma nonreentrancy on
# pragma optimize codesize
# SPDX-License-Identifier: AGPL-3.0-only
"""
@title OPG node staking and slashing
@custom:contract-name NodeStaking
@license GNU Affero General Public License v3.0 only
@notice Inference nodes and verifiers register with a role, an OPG
        stake and an ECDSA signature proving they hold their key; they
        add stake, unbond (stake leaves only after `unbonding_period`
        and stays slashable until then) and withdraw. Settlement pays
        a node only what its active stake can answer for: at most
        `stake / fraud_multiplier` within two dispute windows
        (`pay_capacity`), so a node proven fraudulent loses at least
        `fraud_multiplier` times what it was paid however it exits.
        Slashing punishes only cheaters:
        - equivocation and invalid receipts (future-dated or
          `amount > cumulative`) are proven by the node's own
          signatures; anyone submits;
        - fraud needs `Verdict(valid=false)` signatures whose stake
          weight reaches `fraud_quorum_bps` of the live verifier stake.
          Weights are snapshots: a verifier's `heartbeat()` in epoch e
          records its warm stake (stake older than `warmup`) as its
          weight in epoch e + 1, so fresh stake cannot dilute or swing a
          vote and idle stake cannot block one. Each proven receipt
          takes `fraud_multiplier` times its amount (the payer's refund
          first) and voids the channel's unsettled charges up to it in
          the escrow; a proof against a node that is not jailed also
          takes `fraud_slash_bps` of its stake and jails it for at least
          a dispute window, until its stake is back at its pre-slash
          level;
        - verifiers answer for their votes: both ways on one receipt
          (trustless), `valid=true` on a receipt proven fraudulent
          (lazy), `valid=false` or a flag on a receipt proven valid by
          the quorum (false accuser), at most once per window each.
        Nothing slashed is burned at once: what is not refunded or
        rewarded is the account's refund reserve for a dispute window,
        out of which later fraud proofs refund their payers, and only
        then may anyone burn it.
        Evidence is ECDSA only and counts whether or not the signer has
        code; it is admissible for `dispute_window` from the later of
        the receipt's timestamp and the channel's last settlement if
        that settlement paid part of its range (else from its
        timestamp), and for a dispute window after its first flag or
        dispute.
        Verifiers flag receipts on-chain and payers dispute them with a
        bond, so no relayer can censor an accusation. Receipts,
        Verdicts and Registrations are EIP-712 messages of the domain
        "OPG Node Staking" "1", hashed and recovered by the stateless
        `Evidence` contract. Parameters change only through a
        timelock; a raised verifier minimum binds only verifiers that
        register after it.
"""

from .interfaces import ICreditEscrow

from .interfaces import IEvidence

from .interfaces import INodeStaking

from .interfaces import IOPG

from .interfaces import IRewardDistributor

implements: INodeStaking

from snekmate.auth import ownable

initializes: ownable

from snekmate.auth import ownable_2step

initializes: ownable_2step[ownable := ownable]

from snekmate.utils import eip712_domain_separator as eip712

initializes: eip712

from .modules import timelock

initializes: timelock

exports: (
    ownable.owner,
    ownable_2step.pending_owner,
    ownable_2step.transfer_ownership,
    ownable_2step.accept_ownership,
    ownable_2step.renounce_ownership,
    eip712.eip712Domain,
    timelock.delay,
    timelock.queued_eta,
    timelock.GRACE_PERIOD,
)


# ---------------------------------------------------------------------
# Structs
# ---------------------------------------------------------------------


# @dev A registered account.
struct Node:
    role: uint8
    jailed: bool
    stake: uint256
    unbonding: uint256
    unbond_ready_at: uint256
    fresh: uint256
    fresh_since: uint256
    jailed_at: uint256
    restore_stake: uint256
    released_at: uint256


# @dev A payer's dispute of a receipt.
struct Dispute:
    payer: address
    bond: uint256
    opened_at: uint256


# ---------------------------------------------------------------------
# Constants
# ---------------------------------------------------------------------


# @dev Roles.
_ROLE_NONE: constant(uint8) = 0
ROLE_INFERENCE: public(constant(uint8)) = 1
ROLE_VERIFIER: public(constant(uint8)) = 2


# @dev The basis-point denominator.
_BPS: constant(uint256) = 10_000


# @dev Hard bounds of the periods.
_MIN_DISPUTE_WINDOW: constant(uint256) = 60
_MAX_DISPUTE_WINDOW: constant(uint256) = 30 * 86_400
_MAX_UNBONDING_PERIOD: constant(uint256) = 60 * 86_400
_MAX_WARMUP: constant(uint256) = 30 * 86_400


# @dev Hard upper bound of `min_stake` (1% of the supply).
MAX_MIN_STAKE: public(constant(uint256)) = 10_000_000 * 10**18


# @dev Hard upper bound of `challenger_reward_bps`.
_MAX_CHALLENGER_REWARD_BPS: constant(uint256) = 5_000


# @dev Hard lower bound of `fraud_quorum_bps` (never a simple minority).
_MIN_FRAUD_QUORUM_BPS: constant(uint256) = 5_000


# @dev Hard lower bound of `fraud_multiplier`: each proof takes at least twice
# the pay it refunds, so a challenger reward (<= half the rest) never leaves a
# later victim of the same node unrefunded.
_MIN_FRAUD_MULTIPLIER: constant(uint256) = 2


# @dev Hard upper bound of `fraud_multiplier`.
_MAX_FRAUD_MULTIPLIER: constant(uint256) = 100


# @dev How far after the block a receipt may be dated before it is itself slashable.
MAX_FUTURE: public(constant(uint256)) = 300


# @dev How much longer than the longest period the governance delay must be.
_DELAY_MARGIN: constant(uint256) = 86_400


# @dev The most verdicts one proof carries.
_MAX_VERDICTS: constant(uint256) = 32


# @dev The longest endpoint URL.
_MAX_ENDPOINT_LENGTH: constant(uint256) = 256


# @dev Bits of each amount in a packed pay window (more than the OPG supply).
_AMOUNT_BITS: constant(uint256) = 96


# @dev Mask of one packed amount.
_AMOUNT_MASK: constant(uint256) = 2**96 - 1


# @dev Bits of each bound in a packed void range.
_HALF_BITS: constant(uint256) = 128


# @dev Mask of one bound of a packed void range.
_HALF_MASK: constant(uint256) = 2**128 - 1


# @dev Bits of a pay bucket's index below its length in the top 64 bits of `_pay_window`.
_INDEX_BITS: constant(uint256) = 40


# @dev Mask of a pay bucket's index.
_INDEX_MASK: constant(uint256) = 2**40 - 1


# @dev `Slashed.kind` values.
_KIND_EQUIVOCATION: constant(uint8) = 1
_KIND_FRAUD: constant(uint8) = 2
_KIND_LAZY_VERIFIER: constant(uint8) = 3
_KIND_INVALID_RECEIPT: constant(uint8) = 4
_KIND_DOUBLE_VOTE: constant(uint8) = 5
_KIND_FALSE_ACCUSER: constant(uint8) = 6


# ---------------------------------------------------------------------
# Immutables and storage
# ---------------------------------------------------------------------


# @dev The OPG token.
token: public(immutable(IOPG))


# @dev The RewardDistributor, the epoch clock of heartbeats.
distributor: public(immutable(IRewardDistributor))


# @dev The stateless contract that hashes evidence and recovers its signers.
evidence: public(immutable(IEvidence))


# @dev The CreditEscrow: channel settlement times, pay records, and voiding of fraudulent charges.
escrow: public(ICreditEscrow)


# @dev Every registered account.
nodes: public(HashMap[address, Node])


# @dev Where a node serves (inference API, payload release).
endpoint: public(HashMap[address, String[_MAX_ENDPOINT_LENGTH]])


# @dev The least active stake of a role for new service and votes.
min_stake: public(HashMap[uint8, uint256])


# @dev A verifier's own minimum: `min_stake[VERIFIER]` when it registered (a later raise does not bind it).
verifier_floor: public(HashMap[address, uint256])


# @dev How long evidence stays admissible.
dispute_window: public(uint256)


# @dev How long unbonding stake stays locked (>= 2 dispute windows).
unbonding_period: public(uint256)


# @dev How old stake must be to weigh in a heartbeat (>= dispute window).
warmup: public(uint256)


# @dev Share of stake + unbonding slashed for equivocation or an invalid receipt.
equivocation_slash_bps: public(uint256)


# @dev Share of stake + unbonding slashed once per fraud offence, and per verifier offence.
fraud_slash_bps: public(uint256)


# @dev Share of a slash (after any refund) paid to the challenger(s).
challenger_reward_bps: public(uint256)


# @dev How many times its amount each proven fraudulent receipt costs the node.
fraud_multiplier: public(uint256)


# @dev Share of the live verifier weight whose verdicts prove fraud or validity.
fraud_quorum_bps: public(uint256)


# @dev A verifier's vote weight in an epoch (its warm stake at its heartbeat in the epoch before).
weight_in: public(HashMap[uint256, HashMap[address, uint256]])


# @dev The live verifier weight of an epoch (sum of `weight_in`).
total_weight_in: public(HashMap[uint256, uint256])


# @dev Evidence keys already used (equivocation, invalid receipt, verifier evidence).
evidence_used: public(HashMap[bytes32, bool])


# @dev When a receipt (by struct hash) was proven fraudulent; 0 if never.
fraud_proven_at: public(HashMap[bytes32, uint256])


# @dev When a receipt (by struct hash) was proven valid by the quorum; 0 if never.
valid_proven_at: public(HashMap[bytes32, uint256])


# @dev When a receipt (by struct hash) was first flagged or disputed; 0 if never.
accused_at: public(HashMap[bytes32, uint256])


# @dev Whether a verifier flagged a receipt on-chain (an accusation it answers for).
flagged_by: public(HashMap[bytes32, HashMap[address, bool]])


# @dev A payer's open dispute of a receipt.
disputes: public(HashMap[bytes32, Dispute])


# @dev The sum of open dispute bonds held here.
bonds_held: public(uint256)


# @dev When a verifier was last slashed as lazy or false accuser.
last_verifier_slash: public(HashMap[address, uint256])


# @dev What fraud refunds paid back to a payer on its channel with a node.
refunded: public(HashMap[address, HashMap[address, uint256]])


# @dev A channel's latest range of voided charges, `low << 128 | high` (never paid, never refunded).
_void_range: HashMap[address, HashMap[address, uint256]]


# @dev What settlement paid a node: `(length << 40 | index) << 192 | previous << 96 | current`, by bucket of
# `length` seconds (`dispute_window + MAX_FUTURE` when recorded); bucket `index` ends at `(index + 1) * length`.
_pay_window: HashMap[address, uint256]


# @dev What settlement paid a node in the window before `previous` (pay stays provable up to 2 windows after it).
_pay_older: HashMap[address, uint256]


# @dev Slashed stake of an account held to refund its later fraud victims before it burns.
reserve: public(HashMap[address, uint256])


# @dev When an account's reserve may be burned.
reserve_until: public(HashMap[address, uint256])


# @dev The sum of all reserves held here.
reserves_held: public(uint256)


# ---------------------------------------------------------------------
# Events
# ---------------------------------------------------------------------


event Connected:
    escrow: indexed(address)


event Registered:
    node: indexed(address)
    role: uint8
    stake: uint256
    endpoint: String[_MAX_ENDPOINT_LENGTH]


event EndpointUpdated:
    node: indexed(address)
    endpoint: String[_MAX_ENDPOINT_LENGTH]


event StakeAdded:
    node: indexed(address)
    amount: uint256
    stake: uint256


event UnbondRequested:
    node: indexed(address)
    amount: uint256
    unbonding: uint256
    ready_at: uint256


event UnbondedWithdrawn:
    node: indexed(address)
    amount: uint256


event Heartbeat:
    verifier: indexed(address)
    epoch: indexed(uint256)
    weight: uint256
    total_weight: uint256


event Jailed:
    node: indexed(address)
    until: uint256
    restore_stake: uint256


event Unjailed:
    node: indexed(address)


event Flagged:
    receipt_hash: indexed(bytes32)
    node: indexed(address)
    flagger: indexed(address)
    request_id: bytes32
    payer: address
    bond: uint256


event ValidityProven:
    receipt_hash: indexed(bytes32)
    node: indexed(address)
    weight: uint256
    total_weight: uint256


event FraudProven:
    receipt_hash: indexed(bytes32)
    node: indexed(address)
    weight: uint256
    total_weight: uint256


event DisputeResolved:
    receipt_hash: indexed(bytes32)
    payer: indexed(address)
    paid_to: indexed(address)
    bond: uint256


# @dev `burned` is what went to the account's reserve, burned after it (refunds of later proofs first).
event Slashed:
    node: indexed(address)
    evidence: indexed(bytes32)
    payer: indexed(address)
    kind: uint8
    amount: uint256
    refund: uint256
    reward: uint256
    burned: uint256


event ReserveBurned:
    node: indexed(address)
    amount: uint256


event MinStakeUpdated:
    role: indexed(uint8)
    amount: uint256


event PeriodsUpdated:
    dispute_window: uint256
    unbonding_period: uint256
    warmup: uint256


event SlashingUpdated:
    equivocation_slash_bps: uint256
    fraud_slash_bps: uint256
    challenger_reward_bps: uint256
    fraud_multiplier: uint256


event FraudQuorumUpdated:
    fraud_quorum_bps: uint256


# ---------------------------------------------------------------------
# Constructor and wiring
# ---------------------------------------------------------------------


@deploy
def __init__(
    token_: IOPG,
    distributor_: IRewardDistributor,
    evidence_: IEvidence,
    min_inference_stake: uint256,
    min_verifier_stake: uint256,
    dispute_window_: uint256,
    unbonding_period_: uint256,
    warmup_: uint256,
    equivocation_slash_bps_: uint256,
    fraud_slash_bps_: uint256,
    challenger_reward_bps_: uint256,
    fraud_multiplier_: uint256,
    fraud_quorum_bps_: uint256,
    delay_: uint256,
):
    """
    @dev Sets the token, the distributor, the evidence contract and all
         parameters; the deployer becomes the owner.
    @param token_ The OPG token.
    @param distributor_ The RewardDistributor (epoch clock).
    @param evidence_ The Evidence contract (hashing and signer recovery).
    @param min_inference_stake Least stake of an inference node.
    @param min_verifier_stake Least stake of a verifier.
    @param dispute_window_ Evidence admissibility window (60 s..30 days).
    @param unbonding_period_ Unbonding lock (2 dispute windows..60 days).
    @param warmup_ Stake age before it weighs (dispute window..30 days).
    @param equivocation_slash_bps_ Equivocation slash (1..10,000 bps).
    @param fraud_slash_bps_ Per-offence fraud and verifier slash (1..10,000 bps).
    @param challenger_reward_bps_ Challenger share (<= 5,000 bps).
    @param fraud_multiplier_ Penalty per proven receipt, times its amount (2..100).
    @param fraud_quorum_bps_ Verifier weight needed (5,000..10,000 bps).
    @param delay_ Governance delay (>= unbonding period, warmup + 1 day).
    """
    self._require(token_.address != empty(address), "NodeStaking: zero address")
    self._require(distributor_.address != empty(address), "NodeStaking: zero address")
    self._require(evidence_.address != empty(address), "NodeStaking: zero address")
    ownable.__init__()
    ownable_2step.__init__()
    eip712.__init__("OPG Node Staking", "1")
    timelock.__init__()
    token = token_
    distributor = distributor_
    evidence = evidence_
    self._set_min_stake(ROLE_INFERENCE, min_inference_stake)
    self._set_min_stake(ROLE_VERIFIER, min_verifier_stake)
    self._set_periods(dispute_window_, unbonding_period_, warmup_)
    self._set_slashing(equivocation_slash_bps_, fraud_slash_bps_, challenger_reward_bps_, fraud_multiplier_)
    self._set_fraud_quorum_bps(fraud_quorum_bps_)
    timelock._set_delay(delay_, self._delay_floor())


@external
def connect(escrow_: ICreditEscrow):
    """
    @dev Wires the CreditEscrow, once.
    @notice Only the owner, only once.
    @param escrow_ The CreditEscrow.
    """
    ownable._check_owner()
    self._require(self.escrow.address == empty(address), "NodeStaking: already connected")
    self._require(escrow_.address != empty(address), "NodeStaking: zero address")
    self.escrow = escrow_
    log Connected(escrow=escrow_.address)


# ---------------------------------------------------------------------
# Registration and stake
# ---------------------------------------------------------------------


@external
def register(role: uint8, stake: uint256, endpoint_: String[_MAX_ENDPOINT_LENGTH], signature: Bytes[65]):
    """
    @dev Registers the caller with a role and an initial stake.
    @notice The caller must have approved `stake` OPG and sign
            `Registration(caller)`: only an account with an ECDSA key,
            whose every receipt and verdict is evidence against it,
            may stake. An account has one role for life.
    @param role ROLE_INFERENCE (1) or ROLE_VERIFIER (2).
    @param stake The initial stake, at least `min_stake[role]`.
    @param endpoint_ Where the node serves, non-empty.
    @param signature The caller's signature of `Registration(caller)`.
    """
    self._require(role == ROLE_INFERENCE or role == ROLE_VERIFIER, "NodeStaking: invalid role")
    self._require(self.nodes[msg.sender].role == _ROLE_NONE, "NodeStaking: already registered")
    minimum: uint256 = self.min_stake[role]
    self._require(stake >= minimum, "NodeStaking: stake below minimum")
    self._require(len(endpoint_) > 0, "NodeStaking: empty endpoint")
    self._require(
        (staticcall evidence.registration_signer(eip712._domain_separator_v4(), msg.sender, signature) == msg.sender),
        "NodeStaking: invalid registration",
    )
    self.nodes[msg.sender] = Node(
        role=role,
        jailed=False,
        stake=stake,
        unbonding=0,
        unbond_ready_at=0,
        fresh=stake,
        fresh_since=block.timestamp,
        jailed_at=0,
        restore_stake=0,
        released_at=0,
    )
    if role == ROLE_VERIFIER:
        self.verifier_floor[msg.sender] = minimum
    self.endpoint[msg.sender] = endpoint_
    log Registered(node=msg.sender, role=role, stake=stake, endpoint=endpoint_)
    assert extcall token.transferFrom(msg.sender, self, stake, default_return_value=True)


@external
def set_endpoint(endpoint_: String[_MAX_ENDPOINT_LENGTH]):
    """
    @dev Changes the caller's endpoint.
    @param endpoint_ The new endpoint, non-empty.
    """
    self._require(self.nodes[msg.sender].role != _ROLE_NONE, "NodeStaking: not registered")
    self._require(len(endpoint_) > 0, "NodeStaking: empty endpoint")
    self.endpoint[msg.sender] = endpoint_
    log EndpointUpdated(node=msg.sender, endpoint=endpoint_)


@external
def add_stake(amount: uint256):
    """
    @dev Adds `amount` OPG to the caller's active stake (it weighs in
         heartbeats after the warm-up); releases a jailed account
         whose jail has served its time and whose stake is restored.
    @param amount The OPG amount, approved beforehand.
    """
    node: Node = self._mature(self.nodes[msg.sender])
    self._require(node.role != _ROLE_NONE, "NodeStaking: not registered")
    self._require(amount > 0, "NodeStaking: zero amount")
    node.stake += amount
    node.fresh += amount
    node.fresh_since = block.timestamp
    self.nodes[msg.sender] = node
    log StakeAdded(node=msg.sender, amount=amount, stake=node.stake)
    self._try_release(msg.sender)
    assert extcall token.transferFrom(msg.sender, self, amount, default_return_value=True)


@external
def unjail():
    """
    @dev Releases the caller from jail once a dispute window has
         passed since the jailing and its active stake is back at
         its level before the offence's first slash (and at least
         the role's minimum).
    """
    self._require(self.nodes[msg.sender].jailed, "NodeStaking: not jailed")
    self._require(self._try_release(msg.sender), "NodeStaking: jail not over")


@external
def request_unbond(amount: uint256):
    """
    @dev Moves `amount` of active stake to unbonding (fresh stake
         first). All unbonding stake becomes withdrawable
         `unbonding_period` after the latest request or, if later,
         right after the last second the node's pay before it is
         provable (its last settlement + two dispute windows +
         `MAX_FUTURE`, with a flag), and stays slashable until
         withdrawn. Unbonding stake backs no new pay: only active
         stake counts in `pay_capacity`.
    @param amount The amount, at most the active stake.
    """
    node: Node = self._mature(self.nodes[msg.sender])
    self._require(node.role != _ROLE_NONE, "NodeStaking: not registered")
    self._require(amount > 0, "NodeStaking: zero amount")
    self._require(amount <= node.stake, "NodeStaking: amount exceeds stake")
    node.stake -= amount
    node.fresh -= min(node.fresh, amount)
    node.unbonding += amount
    node.unbond_ready_at = block.timestamp + self.unbonding_period
    paid_at: uint256 = staticcall self.escrow.node_settled_at(msg.sender)
    if paid_at != 0:
        node.unbond_ready_at = max(node.unbond_ready_at, paid_at + 2 * self.dispute_window + MAX_FUTURE + 1)
    self.nodes[msg.sender] = node
    log UnbondRequested(node=msg.sender, amount=amount, unbonding=node.unbonding, ready_at=node.unbond_ready_at)


@external
def withdraw_unbonded() -> uint256:
    """
    @dev Pays the caller its unbonding stake from `unbond_ready_at`
         (see `request_unbond`). Settlements after the request do not
         delay it: they are backed by active stake only.
    @return uint256 The amount paid.
    """
    node: Node = self.nodes[msg.sender]
    self._require(node.unbonding > 0, "NodeStaking: nothing unbonding")
    self._require(block.timestamp >= node.unbond_ready_at, "NodeStaking: still unbonding")
    amount: uint256 = node.unbonding
    self.nodes[msg.sender].unbonding = 0
    log UnbondedWithdrawn(node=msg.sender, amount=amount)
    assert extcall token.transfer(msg.sender, amount, default_return_value=True)
    return amount


@external
def heartbeat() -> uint256:
    """
    @dev Records the calling verifier as live: its warm stake becomes
         its vote and reward weight in the next epoch. A verifier
         calls it once every epoch; calling again in the same epoch
         updates the weight.
    @return uint256 The weight recorded.
    """
    node: Node = self._mature(self.nodes[msg.sender])
    self._require(
        (
            node.role == ROLE_VERIFIER
            and not node.jailed
            and node.stake >= self._min_stake_of(msg.sender, ROLE_VERIFIER)
        ),
        "NodeStaking: not an active verifier",
    )
    self.nodes[msg.sender].fresh = node.fresh
    epoch: uint256 = (staticcall distributor.epoch_now()) + 1
    weight: uint256 = node.stake - node.fresh
    total: uint256 = self.total_weight_in[epoch] + weight - self.weight_in[epoch][msg.sender]
    self.weight_in[epoch][msg.sender] = weight
    self.total_weight_in[epoch] = total
    log Heartbeat(verifier=msg.sender, epoch=epoch, weight=weight, total_weight=total)
    return weight


# ---------------------------------------------------------------------
# Settlement hooks (CreditEscrow)
# ---------------------------------------------------------------------


@external
def record_pay(node: address, amount: uint256):
    """
    @dev Records what one settlement batch paid `node`, so later claims
         in the same two dispute windows stay within `pay_capacity`.
         Buckets keep the length they were recorded with; after a
         `dispute_window` change the first record folds what is still
         counted into one bucket of the new length that ends no
         earlier than the last recorded bucket.
    @notice Only the escrow, once per node run of a batch.
    @param node The node.
    @param amount The amount settled to it.
    """
    self._require(msg.sender == self.escrow.address, "NodeStaking: caller is not the escrow")
    length: uint256 = self.dispute_window + MAX_FUTURE
    window: uint256 = block.timestamp // length
    packed: uint256 = self._pay_window[node]
    last: uint256 = (packed >> 192) & _INDEX_MASK
    recorded: uint256 = packed >> (192 + _INDEX_BITS)
    previous: uint256 = 0
    current: uint256 = 0
    if recorded != length and recorded != 0:
        # The window changed since the last record (`set_periods`): what is still counted becomes the current
        # bucket of the new length, one that ends no earlier than the last recorded bucket.
        window = max(window, ((last + 1) * recorded - 1) // length)
        current = self._paid_in_window(node)
        self._pay_older[node] = 0
    elif last >= window:
        window = last
        previous = (packed >> _AMOUNT_BITS) & _AMOUNT_MASK
        current = packed & _AMOUNT_MASK
    elif last + 1 == window:
        self._pay_older[node] = (packed >> _AMOUNT_BITS) & _AMOUNT_MASK
        previous = packed & _AMOUNT_MASK
    elif last + 2 == window:
        self._pay_older[node] = packed & _AMOUNT_MASK
    else:
        self._pay_older[node] = 0
    current += amount
    self._require(current <= _AMOUNT_MASK, "NodeStaking: amount out of bounds")
    self._pay_window[node] = ((length << _INDEX_BITS | window) << 192) | previous << _AMOUNT_BITS | current


# ---------------------------------------------------------------------
# Accusations
# ---------------------------------------------------------------------


@external
def flag(receipt: IEvidence.Receipt, signature: Bytes[65]):
    """
    @dev Accuses a receipt in public, so every verifier re-executes it
         and no relayer can bury the accusation. The first accusation
         keeps the receipt admissible for a dispute window from now,
         so it can always be answered (`prove_valid`, `slash_fraud`).
         - An active verifier's flag counts as its `valid=false` vote:
           it is slashed as a false accuser if the quorum proves the
           receipt valid.
         - The receipt's payer disputes it, posting a bond equal to the
           receipt's amount: returned if fraud is proven, paid to the
           node if the quorum proves the receipt valid, reclaimable
           after two dispute windows otherwise (approve it first).
    @param receipt The receipt.
    @param signature The node's signature of `receipt`.
    """
    receipt_hash: bytes32 = self._check_evidence(receipt, signature)
    self._require(
        (self.fraud_proven_at[receipt_hash] == 0 and self.valid_proven_at[receipt_hash] == 0),
        "NodeStaking: already judged",
    )
    bond: uint256 = 0
    if msg.sender == receipt.payer:
        bond = receipt.amount
        self._require(bond > 0, "NodeStaking: zero amount")
        self._require(self.disputes[receipt_hash].bond == 0, "NodeStaking: already disputed")
        self.disputes[receipt_hash] = Dispute(payer=msg.sender, bond=bond, opened_at=block.timestamp)
        self.bonds_held += bond
    else:
        self._require(self._is_active_as(msg.sender, ROLE_VERIFIER), "NodeStaking: not an active verifier")
        self._require(not self.flagged_by[receipt_hash][msg.sender], "NodeStaking: already flagged")
        self.flagged_by[receipt_hash][msg.sender] = True
    if self.accused_at[receipt_hash] == 0:
        self.accused_at[receipt_hash] = block.timestamp
    log Flagged(
        receipt_hash=receipt_hash,
        node=receipt.node,
        flagger=msg.sender,
        request_id=receipt.request_id,
        payer=receipt.payer,
        bond=bond,
    )
    if bond > 0:
        assert extcall token.transferFrom(msg.sender, self, bond, default_return_value=True)


@external
def reclaim_bond(receipt_hash: bytes32):
    """
    @dev Returns a dispute bond to its payer when neither fraud nor
         validity was proven within two dispute windows.
    @param receipt_hash The disputed receipt's struct hash.
    """
    open_dispute: Dispute = self.disputes[receipt_hash]
    self._require(open_dispute.bond > 0, "NodeStaking: no open dispute")
    self._require(block.timestamp > open_dispute.opened_at + 2 * self.dispute_window, "NodeStaking: dispute still open")
    self._resolve_dispute(receipt_hash, open_dispute.payer)


# ---------------------------------------------------------------------
# Slashing
# ---------------------------------------------------------------------


@external
def slash_equivocation(
    a: IEvidence.Receipt, signature_a: Bytes[65], b: IEvidence.Receipt, signature_b: Bytes[65]
) -> uint256:
    """
    @dev Slashes a node that signed two different Receipts for one
         request id. Anyone may submit; the caller earns the
         challenger reward, the rest goes to the node's reserve, the
         node is jailed.
    @param a The first receipt.
    @param signature_a The node's signature of `a`.
    @param b The second receipt.
    @param signature_b The node's signature of `b`.
    @return uint256 The amount slashed.
    """
    self._require(a.node == b.node, "NodeStaking: different nodes")
    self._require(a.request_id == b.request_id, "NodeStaking: different request ids")
    hash_a: bytes32 = self._check_evidence(a, signature_a)
    hash_b: bytes32 = self._check_evidence(b, signature_b)
    self._require(hash_a != hash_b, "NodeStaking: identical receipts")
    key: bytes32 = keccak256(abi_encode(_KIND_EQUIVOCATION, a.node, a.request_id))
    return self._slash_trustless(a.node, key, _KIND_EQUIVOCATION, self.equivocation_slash_bps)


@external
def slash_invalid_receipt(receipt: IEvidence.Receipt, signature: Bytes[65]) -> uint256:
    """
    @dev Slashes a node for a receipt no honest node signs: dated
         more than `MAX_FUTURE` after the block, or charging more than
         its own cumulative. Anyone may submit, like equivocation.
    @param receipt The receipt.
    @param signature The node's signature of `receipt`.
    @return uint256 The amount slashed.
    """
    receipt_hash: bytes32 = self._check_evidence(receipt, signature)
    self._require(
        (convert(receipt.timestamp, uint256) > block.timestamp + MAX_FUTURE or receipt.amount > receipt.cumulative),
        "NodeStaking: receipt is well-formed",
    )
    key: bytes32 = keccak256(abi_encode(_KIND_INVALID_RECEIPT, receipt_hash))
    return self._slash_trustless(receipt.node, key, _KIND_INVALID_RECEIPT, self.equivocation_slash_bps)


@external
def slash_fraud(
    receipt: IEvidence.Receipt, signature: Bytes[65], verdicts: DynArray[IEvidence.SignedVerdict, _MAX_VERDICTS]
) -> uint256:
    """
    @dev Proves a receipt fraudulent with `Verdict(valid=false)`
         signatures reaching the quorum of this epoch's live verifier
         weight. The escrow voids the channel's charges up to the
         receipt; the node loses `fraud_multiplier * amount` (and, if
         it is not jailed, `fraud_slash_bps` of its stake, and is
         jailed: the offence rule reads only the chain's state, never
         the node's timestamps). The payer is refunded what it paid
         for the receipt (the part of its range below the channel's
         spent charges and outside its voided ones), first out of what
         this proof takes, then out of the node's reserve; the
         verifiers share the challenger reward of the rest by weight,
         and the rest goes to the node's reserve (burned after it).
    @param receipt The fraudulent receipt.
    @param signature The node's signature of `receipt`.
    @param verdicts The verdicts, verifiers in strictly ascending order.
    @return uint256 The amount slashed.
    """
    receipt_hash: bytes32 = self._check_evidence(receipt, signature)
    self._require(self.fraud_proven_at[receipt_hash] == 0, "NodeStaking: evidence already used")
    self._require(self.valid_proven_at[receipt_hash] == 0, "NodeStaking: proven valid")
    self._require(self.nodes[receipt.node].role == ROLE_INFERENCE, "NodeStaking: not an inference node")
    weights: DynArray[uint256, _MAX_VERDICTS] = []
    weight: uint256 = 0
    total_weight: uint256 = 0
    weights, weight, total_weight = self._tally(receipt_hash, False, verdicts)
    self.fraud_proven_at[receipt_hash] = block.timestamp
    log FraudProven(receipt_hash=receipt_hash, node=receipt.node, weight=weight, total_weight=total_weight)
    spent: uint256 = 0
    voided: uint256 = 0
    spent, voided = extcall self.escrow.void_charges(receipt.payer, receipt.node, receipt.cumulative)

    node: Node = self.nodes[receipt.node]
    slashable: uint256 = node.stake + node.unbonding
    penalty: uint256 = min(receipt.amount, slashable) * self.fraud_multiplier
    if not node.jailed:
        penalty += self._bps_of(slashable, self.fraud_slash_bps)
        self._jail(receipt.node)
    amount: uint256 = self._take(receipt.node, penalty)

    # The refund is what the payer paid for this receipt's range of the
    # channel, never more than the channel paid net of voided charges and
    # earlier refunds (else a colluding payer could take the slashed stake).
    refund: uint256 = 0
    if receipt.amount <= receipt.cumulative:
        refund = min(
            self._paid_for(receipt.payer, receipt.node, receipt.cumulative - receipt.amount, receipt.cumulative, spent),
            spent - voided - self.refunded[receipt.payer][receipt.node],
        )
    if receipt.cumulative > spent:
        self._record_void(receipt.payer, receipt.node, spent, receipt.cumulative)
    from_slash: uint256 = min(refund, amount)
    held: uint256 = self.reserve[receipt.node]
    from_reserve: uint256 = min(refund - from_slash, held)
    refund = from_slash + from_reserve
    self.refunded[receipt.payer][receipt.node] += refund
    reward: uint256 = (amount - from_slash) * self.challenger_reward_bps // _BPS
    paid_rewards: uint256 = 0
    shares: DynArray[uint256, _MAX_VERDICTS] = []
    for w: uint256 in weights:
        share: uint256 = reward * w // weight
        shares.append(share)
        paid_rewards += share
    reserved: uint256 = amount - from_slash - paid_rewards
    self._hold(receipt.node, held - from_reserve + reserved)
    log Slashed(
        node=receipt.node,
        evidence=receipt_hash,
        payer=receipt.payer,
        kind=_KIND_FRAUD,
        amount=amount,
        refund=refund,
        reward=paid_rewards,
        burned=reserved,
    )
    if self.disputes[receipt_hash].bond > 0:
        self._resolve_dispute(receipt_hash, self.disputes[receipt_hash].payer)
    self._pay(receipt.payer, refund)
    for i: uint256 in range(len(verdicts), bound=_MAX_VERDICTS):
        self._pay(verdicts[i].verifier, shares[i])
    return amount


@external
def prove_valid(
    receipt: IEvidence.Receipt, signature: Bytes[65], verdicts: DynArray[IEvidence.SignedVerdict, _MAX_VERDICTS]
):
    """
    @dev Proves a receipt valid with `Verdict(valid=true)` signatures
         reaching the quorum: its accusers become slashable as false
         accusers and a payer's dispute bond goes to the node.
    @param receipt The receipt.
    @param signature The node's signature of `receipt`.
    @param verdicts The verdicts, verifiers in strictly ascending order.
    """
    receipt_hash: bytes32 = self._check_evidence(receipt, signature)
    self._require(self.valid_proven_at[receipt_hash] == 0, "NodeStaking: evidence already used")
    self._require(self.fraud_proven_at[receipt_hash] == 0, "NodeStaking: proven fraudulent")
    weights: DynArray[uint256, _MAX_VERDICTS] = []
    weight: uint256 = 0
    total_weight: uint256 = 0
    weights, weight, total_weight = self._tally(receipt_hash, True, verdicts)
    self.valid_proven_at[receipt_hash] = block.timestamp
    log ValidityProven(receipt_hash=receipt_hash, node=receipt.node, weight=weight, total_weight=total_weight)
    if self.disputes[receipt_hash].bond > 0:
        self._resolve_dispute(receipt_hash, receipt.node)


@external
def slash_double_vote(
    receipt_hash: bytes32, verifier: address, signature_valid: Bytes[65], signature_invalid: Bytes[65]
) -> uint256:
    """
    @dev Slashes a verifier that signed both verdicts on one receipt.
         Anyone may submit; the caller earns the challenger reward.
    @param receipt_hash The receipt's struct hash.
    @param verifier The verifier.
    @param signature_valid Its `Verdict(receipt_hash, true)` signature.
    @param signature_invalid Its `Verdict(receipt_hash, false)` signature.
    @return uint256 The amount slashed.
    """
    self._require(self.nodes[verifier].role == ROLE_VERIFIER, "NodeStaking: not a verifier")
    self._check_verdict(receipt_hash, True, verifier, signature_valid)
    self._check_verdict(receipt_hash, False, verifier, signature_invalid)
    key: bytes32 = keccak256(abi_encode(_KIND_DOUBLE_VOTE, receipt_hash, verifier))
    return self._slash_trustless(verifier, key, _KIND_DOUBLE_VOTE, self.fraud_slash_bps)


@external
def slash_verifier(receipt_hash: bytes32, verifier: address, signature: Bytes[65]) -> uint256:
    """
    @dev Slashes a verifier whose verdict contradicts a proven outcome:
         `Verdict(valid=true)` on a receipt proven fraudulent (lazy), or
         `Verdict(valid=false)` (or an on-chain flag, with an empty
         signature) on a receipt the quorum proved valid (false
         accuser). Within a dispute window of the proof, at most once
         per verifier per window; anyone submits and earns the
         challenger reward.
    @param receipt_hash The receipt's struct hash.
    @param verifier The verifier.
    @param signature Its contrary verdict's signature, or empty for a flag.
    @return uint256 The amount slashed.
    """
    self._require(self.nodes[verifier].role == ROLE_VERIFIER, "NodeStaking: not a verifier")
    proven_at: uint256 = self.fraud_proven_at[receipt_hash]
    kind: uint8 = _KIND_LAZY_VERIFIER
    if proven_at == 0:
        proven_at = self.valid_proven_at[receipt_hash]
        self._require(proven_at != 0, "NodeStaking: receipt not judged")
        kind = _KIND_FALSE_ACCUSER
    if len(signature) == 0 and kind == _KIND_FALSE_ACCUSER:
        self._require(self.flagged_by[receipt_hash][verifier], "NodeStaking: no flag")
    else:
        self._check_verdict(receipt_hash, kind == _KIND_LAZY_VERIFIER, verifier, signature)
    window: uint256 = self.dispute_window
    self._require(block.timestamp <= proven_at + window, "NodeStaking: evidence too old")
    last: uint256 = self.last_verifier_slash[verifier]
    self._require(last == 0 or block.timestamp >= last + window, "NodeStaking: slashed this window")
    self.last_verifier_slash[verifier] = block.timestamp
    key: bytes32 = keccak256(abi_encode(kind, receipt_hash, verifier))
    return self._slash_trustless(verifier, key, kind, self.fraud_slash_bps)


@external
def burn_reserve(account: address) -> uint256:
    """
    @dev Burns an account's reserve once a dispute window has passed
         since the last slash added to it (every fraud victim that
         could still prove its receipt has been refunded first).
         Anyone may call it.
    @param account The slashed account.
    @return uint256 The amount burned.
    """
    amount: uint256 = self.reserve[account]
    self._require(amount > 0, "NodeStaking: no reserve")
    self._require(block.timestamp > self.reserve_until[account], "NodeStaking: reserve still held")
    self.reserve[account] = 0
    self.reserves_held -= amount
    log ReserveBurned(node=account, amount=amount)
    extcall token.burn(amount)
    return amount


# ---------------------------------------------------------------------
# Governance (timelocked)
# ---------------------------------------------------------------------


@external
def queue_change(call: Bytes[164]) -> bytes32:
    """
    @dev Queues a parameter change: the calldata of one of the
         setters below, executable by anyone once due.
    @notice Only the owner.
    @param call The setter's calldata.
    @return bytes32 The change's id.
    """
    ownable._check_owner()
    return timelock._queue(call)


@external
def cancel_change(id: bytes32):
    """
    @dev Cancels a queued parameter change.
    @notice Only the owner.
    @param id The change's id (keccak256 of its calldata).
    """
    ownable._check_owner()
    timelock._cancel(id)


@external
def set_min_stake(role: uint8, amount: uint256):
    """
    @dev Sets a role's minimum stake (gates new service and votes,
         never pay for work already done). A raised verifier minimum
         binds only verifiers registered after it: no parameter change
         removes live vote weight.
    @notice Anyone, once the owner's queued change is due. Bounds: a
            valid role, 0 < amount <= 10,000,000 OPG.
    @param role ROLE_INFERENCE or ROLE_VERIFIER.
    @param amount The minimum stake.
    """
    timelock._execute(keccak256(slice(msg.data, 0, 68)))
    self._set_min_stake(role, amount)


@external
def set_periods(dispute_window_: uint256, unbonding_period_: uint256, warmup_: uint256):
    """
    @dev Sets the dispute window, the unbonding period and the warm-up.
    @notice Anyone, once the owner's queued change is due. Bounds:
            60 s <= dispute window <= 30 days, 2 windows <= unbonding
            period <= 60 days, window <= warm-up <= 30 days, and the
            delay at least the longest of them + 1 day.
    @param dispute_window_ The dispute window.
    @param unbonding_period_ The unbonding period.
    @param warmup_ The warm-up.
    """
    timelock._execute(keccak256(slice(msg.data, 0, 100)))
    self._set_periods(dispute_window_, unbonding_period_, warmup_)
    self._require(timelock.delay >= self._delay_floor(), "NodeStaking: periods above delay")


@external
def set_slashing(
    equivocation_slash_bps_: uint256,
    fraud_slash_bps_: uint256,
    challenger_reward_bps_: uint256,
    fraud_multiplier_: uint256,
    fraud_quorum_bps_: uint256,
):
    """
    @dev Sets the slash sizes, the challenger reward, the fraud
         multiplier and the quorum.
    @notice Anyone, once the owner's queued change is due. Bounds:
            slashes 1..10,000 bps, reward <= 5,000 bps, multiplier 2..100,
            quorum 5,000..10,000 bps.
    @param equivocation_slash_bps_ The equivocation / invalid receipt slash.
    @param fraud_slash_bps_ The per-offence fraud and verifier slash.
    @param challenger_reward_bps_ The challenger reward.
    @param fraud_multiplier_ The penalty per proven receipt, times its amount.
    @param fraud_quorum_bps_ The verifier weight share that proves fraud or validity.
    """
    timelock._execute(keccak256(slice(msg.data, 0, 164)))
    self._set_slashing(equivocation_slash_bps_, fraud_slash_bps_, challenger_reward_bps_, fraud_multiplier_)
    self._set_fraud_quorum_bps(fraud_quorum_bps_)


@external
def set_delay(delay_: uint256):
    """
    @dev Sets the governance delay.
    @notice Anyone, once the owner's queued change is due. Bounds: at
            least the unbonding period and the warm-up + 1 day.
    @param delay_ The delay.
    """
    timelock._execute(keccak256(slice(msg.data, 0, 36)))
    timelock._set_delay(delay_, self._delay_floor())


# ---------------------------------------------------------------------
# External views
# ---------------------------------------------------------------------


@external
@view
def is_active(account: address) -> bool:
    """
    @dev Registered in its role, not jailed, stake at least its minimum.
    @param account The account.
    @return bool Whether it may serve (inference) or vote (verifier).
    """
    return self._is_active_as(account, self.nodes[account].role)


@external
@view
def is_active_as(account: address, role: uint8) -> bool:
    """
    @dev `is_active` for a given role.
    @param account The account.
    @param role The role it must have.
    @return bool Whether it is active in `role`.
    """
    return self._is_active_as(account, role)


@external
@view
def is_payable(node: address) -> bool:
    """
    @dev Whether settlement may pay `node` anything now: a registered
         inference node, not jailed, with `pay_capacity` left.
    @param node The node.
    @return bool Whether claims to it may settle.
    """
    return self._pay_capacity(node) > 0


@external
@view
def pay_capacity(node: address) -> uint256:
    """
    @dev How much more settlement may pay `node` now: its active stake
         divided by `fraud_multiplier`, less what it was paid in the
         current and the two previous windows of `dispute_window +
         MAX_FUTURE` (what may still be disputed); 0 for an account that is not a free
         inference node. Unbonding stake backs no new pay.
    @param node The node.
    @return uint256 The amount.
    """
    return self._pay_capacity(node)


@external
@view
def paid_in_window(node: address) -> uint256:
    """
    @dev What settlement paid `node` in the current and the two
         previous windows of `dispute_window + MAX_FUTURE` (its pay
         that may still be disputed).
    @param node The node.
    @return uint256 The amount.
    """
    return self._paid_in_window(node)


@external
@view
def warm_stake(account: address) -> uint256:
    """
    @dev The part of an account's active stake older than the warm-up
         (what a heartbeat now would record).
    @param account The account.
    @return uint256 The warm stake.
    """
    node: Node = self._mature(self.nodes[account])
    return node.stake - node.fresh


@external
@view
def vote_weight(verifier: address) -> uint256:
    """
    @dev A verifier's weight in proofs submitted now.
    @param verifier The verifier.
    @return uint256 Its weight.
    """
    return self._vote_weight(verifier, staticcall distributor.epoch_now())


@external
@view
def total_vote_weight() -> uint256:
    """
    @dev The live verifier weight proofs submitted now are measured against.
    @return uint256 The total weight of this epoch.
    """
    return self.total_weight_in[staticcall distributor.epoch_now()]


@external
@view
def receipt_hash(receipt: IEvidence.Receipt) -> bytes32:
    """
    @dev The EIP-712 struct hash of a Receipt (what Verdicts sign).
    @param receipt The receipt.
    @return bytes32 Its struct hash.
    """
    return staticcall evidence.receipt_hash(receipt)


# ---------------------------------------------------------------------
# Internal: evidence and votes
# ---------------------------------------------------------------------


@internal
@view
def _check_evidence(receipt: IEvidence.Receipt, signature: Bytes[65]) -> bytes32:
    """
    @dev Checks the node's ECDSA signature and that the receipt is
         admissible: within `dispute_window` of its timestamp or, if
         its range reaches into what its channel's last settlement
         paid (or is unpaid), of that settlement; or of its first flag
         or dispute. A later settlement never reopens a receipt that an
         earlier one paid, so pay stays provable at most two windows
         (plus `MAX_FUTURE`) after it was paid, within `_pay_window`.
    @param receipt The receipt.
    @param signature The node's signature of it.
    @return bytes32 The receipt's struct hash.
    """
    receipt_hash: bytes32 = empty(bytes32)
    signer: address = empty(address)
    receipt_hash, signer = staticcall evidence.receipt_signer(eip712._domain_separator_v4(), receipt, signature)
    self._require(signer == receipt.node, "NodeStaking: invalid receipt")
    window: uint256 = self.dispute_window
    start: uint256 = convert(receipt.timestamp, uint256)
    settled: uint256 = 0
    spent_before: uint256 = 0
    settled, spent_before = staticcall self.escrow.last_settlement(receipt.payer, receipt.node)
    if receipt.cumulative > spent_before:
        start = max(start, settled)
    accused: uint256 = self.accused_at[receipt_hash]
    self._require(
        (block.timestamp <= start + window or (accused != 0 and block.timestamp <= accused + window)),
        "NodeStaking: evidence too old",
    )
    return receipt_hash


@internal
@view
def _check_verdict(receipt_hash: bytes32, valid: bool, verifier: address, signature: Bytes[65]):
    """
    @dev Refuses a verdict not signed by `verifier` (ECDSA).
    @param receipt_hash The receipt's struct hash.
    @param valid The verdict.
    @param verifier The claimed signer.
    @param signature Its signature.
    """
    self._require(
        (staticcall evidence.verdict_signer(eip712._domain_separator_v4(), receipt_hash, valid, signature) == verifier),
        "NodeStaking: invalid verdict",
    )


@internal
@view
def _tally(
    receipt_hash: bytes32, valid: bool, verdicts: DynArray[IEvidence.SignedVerdict, _MAX_VERDICTS]
) -> (DynArray[uint256, _MAX_VERDICTS], uint256, uint256):
    """
    @dev Checks the verdicts and that their weight reaches the quorum
         of this epoch's live weight.
    @param receipt_hash The receipt's struct hash.
    @param valid The verdict they must sign.
    @param verdicts The verdicts, verifiers in strictly ascending order.
    @return (DynArray, uint256, uint256) Each verdict's weight, their
            sum and the total live weight.
    """
    epoch: uint256 = staticcall distributor.epoch_now()
    total: uint256 = self.total_weight_in[epoch]
    self._require(total > 0, "NodeStaking: no live weight")
    signers: DynArray[address, _MAX_VERDICTS] = staticcall evidence.verdict_signers(
        eip712._domain_separator_v4(), receipt_hash, valid, verdicts
    )
    weights: DynArray[uint256, _MAX_VERDICTS] = []
    weight: uint256 = 0
    previous: address = empty(address)
    for i: uint256 in range(len(verdicts), bound=_MAX_VERDICTS):
        verifier: address = verdicts[i].verifier
        self._require(convert(verifier, uint160) > convert(previous, uint160), "NodeStaking: verifiers not ascending")
        previous = verifier
        self._require(signers[i] == verifier, "NodeStaking: invalid verdict")
        w: uint256 = self._vote_weight(verifier, epoch)
        weights.append(w)
        weight += w
    self._require(weight * _BPS >= total * self.fraud_quorum_bps, "NodeStaking: quorum not reached")
    return weights, weight, total


@internal
@view
def _vote_weight(verifier: address, epoch: uint256) -> uint256:
    """
    @dev The epoch's snapshot weight, 0 for a jailed account, never
         more than what can still be slashed.
    @param verifier The verifier.
    @param epoch The epoch.
    @return uint256 Its weight.
    """
    node: Node = self.nodes[verifier]
    if node.role != ROLE_VERIFIER or node.jailed:
        return 0
    return min(self.weight_in[epoch][verifier], node.stake + node.unbonding)


@internal
@view
def _min_stake_of(account: address, role: uint8) -> uint256:
    """
    @dev The minimum stake that binds `account` in `role`: for a
         verifier the lower of the current minimum and the one it
         registered under, so a raise never silences a live verifier.
    @param account The account.
    @param role Its role.
    @return uint256 The minimum.
    """
    minimum: uint256 = self.min_stake[role]
    if role == ROLE_VERIFIER:
        return min(minimum, self.verifier_floor[account])
    return minimum


@internal
@view
def _is_active_as(account: address, role: uint8) -> bool:
    """
    @dev Registered in `role`, not jailed, stake at least its minimum.
    @param account The account.
    @param role The role it must have.
    @return bool Whether it is active in `role`.
    """
    node: Node = self.nodes[account]
    return (
        role != _ROLE_NONE and node.role == role and not node.jailed and node.stake >= self._min_stake_of(account, role)
    )


# ---------------------------------------------------------------------
# Internal: pay backing and refunds
# ---------------------------------------------------------------------


@internal
@view
def _paid_in_window(node: address) -> uint256:
    """
    @dev What `node` was paid in buckets that ended less than two
         windows of `dispute_window + MAX_FUTURE` ago: the current
         and the two previous buckets, at least the last two dispute
         windows plus `MAX_FUTURE`, as long as a flagged receipt stays
         provable after its settlement. Each bucket's end is read from
         its stored index and length, so a `dispute_window` change
         forgets no pay that is still provable.
    @param node The node.
    @return uint256 The amount.
    """
    packed: uint256 = self._pay_window[node]
    recorded: uint256 = packed >> (192 + _INDEX_BITS)
    # a bucket counts while `now < its end + 2 windows`; `end` is the previous bucket's (the current one's start)
    end: uint256 = ((packed >> 192) & _INDEX_MASK) * recorded
    horizon: uint256 = block.timestamp + 1
    length: uint256 = self.dispute_window + MAX_FUTURE
    paid: uint256 = 0
    if end + length * 2 >= horizon + recorded:
        paid = self._pay_older[node]
    if end + length * 2 >= horizon:
        paid += (packed >> _AMOUNT_BITS) & _AMOUNT_MASK
    if end + recorded + length * 2 >= horizon:
        paid += packed & _AMOUNT_MASK
    return paid


@internal
@view
def _pay_capacity(node: address) -> uint256:
    """
    @dev `stake / fraud_multiplier - paid_in_window` for a free
         inference node, else 0.
    @param node The node.
    @return uint256 What settlement may still pay it.
    """
    n: Node = self.nodes[node]
    if n.role != ROLE_INFERENCE or n.jailed:
        return 0
    backed: uint256 = n.stake // self.fraud_multiplier
    paid: uint256 = self._paid_in_window(node)
    if backed <= paid:
        return 0
    return backed - paid


@internal
@view
def _paid_for(payer: address, node: address, low: uint256, high: uint256, spent: uint256) -> uint256:
    """
    @dev What the channel paid for the charge range `[low, high)`: its
         part below `spent`, less its part in the channel's latest
         voided range (charges voided by an earlier proof were never
         paid, whichever receipt is proven first).
    @param payer The payer.
    @param node The node.
    @param low The receipt's `cumulative - amount`.
    @param high The receipt's `cumulative`.
    @param spent The channel's spent charges before this proof.
    @return uint256 The amount paid.
    """
    if spent <= low:
        return 0
    paid: uint256 = min(high, spent) - low
    packed: uint256 = self._void_range[payer][node]
    void_low: uint256 = max(packed >> _HALF_BITS, low)
    void_high: uint256 = min(packed & _HALF_MASK, high)
    if void_high > void_low:
        paid -= min(paid, void_high - void_low)
    return paid


@internal
def _record_void(payer: address, node: address, low: uint256, high: uint256):
    """
    @dev Records `[low, high)` as the channel's latest voided range,
         merged with the previous one when they touch.
    @param payer The payer.
    @param node The node.
    @param low The channel's spent charges before the void.
    @param high The voided receipt's cumulative.
    """
    packed: uint256 = self._void_range[payer][node]
    start: uint256 = low
    if packed != 0 and packed & _HALF_MASK == low:
        start = packed >> _HALF_BITS
    self._void_range[payer][node] = min(start, _HALF_MASK) << _HALF_BITS | min(high, _HALF_MASK)


@internal
def _hold(account: address, amount: uint256):
    """
    @dev Sets an account's reserve to `amount`, burnable two dispute
         windows plus `MAX_FUTURE` from now (a receipt flagged in the
         last admissible second stays provable for one more window, and
         its window may start up to `MAX_FUTURE` after its settlement).
    @param account The slashed account.
    @param amount Its new reserve.
    """
    self.reserves_held = self.reserves_held + amount - self.reserve[account]
    self.reserve[account] = amount
    self.reserve_until[account] = block.timestamp + 2 * self.dispute_window + MAX_FUTURE


# ---------------------------------------------------------------------
# Internal: slashing and jail
# ---------------------------------------------------------------------


@internal
def _slash_trustless(account: address, key: bytes32, kind: uint8, bps: uint256) -> uint256:
    """
    @dev Uses `key` once, jails `account`, takes `bps` of its stake,
         pays the caller the challenger reward, and adds the rest to
         the account's reserve.
    @param account The slashed account.
    @param key The evidence key.
    @param kind The `Slashed.kind`.
    @param bps The share of stake + unbonding taken.
    @return uint256 The amount slashed.
    """
    self._use_evidence(key)
    node: Node = self.nodes[account]
    slashable: uint256 = node.stake + node.unbonding
    self._require(slashable > 0, "NodeStaking: nothing to slash")
    self._jail(account)
    amount: uint256 = self._take(account, self._bps_of(slashable, bps))
    reward: uint256 = amount * self.challenger_reward_bps // _BPS
    reserved: uint256 = amount - reward
    self._hold(account, self.reserve[account] + reserved)
    log Slashed(
        node=account,
        evidence=key,
        payer=empty(address),
        kind=kind,
        amount=amount,
        refund=0,
        reward=reward,
        burned=reserved,
    )
    self._pay(msg.sender, reward)
    return amount


@internal
def _use_evidence(key: bytes32):
    """
    @dev Marks evidence used, refusing it the second time.
    @param key The evidence key.
    """
    self._require(not self.evidence_used[key], "NodeStaking: evidence already used")
    self.evidence_used[key] = True


@internal
def _jail(account: address):
    """
    @dev Jails an account (if not yet jailed), remembering the active
         stake it must restore to be released.
    @param account The account.
    """
    node: Node = self.nodes[account]
    if not node.jailed:
        node.jailed = True
        node.jailed_at = block.timestamp
        node.restore_stake = node.stake
        self.nodes[account] = node
        log Jailed(node=account, until=block.timestamp + self.dispute_window, restore_stake=node.stake)


@internal
def _try_release(account: address) -> bool:
    """
    @dev Releases a jailed account whose jail is over.
    @param account The account.
    @return bool Whether it is free now.
    """
    node: Node = self.nodes[account]
    if not node.jailed:
        return True
    if (
        block.timestamp < node.jailed_at + self.dispute_window
        or node.stake < node.restore_stake
        or node.stake < self._min_stake_of(account, node.role)
    ):
        return False
    node.jailed = False
    node.released_at = block.timestamp
    self.nodes[account] = node
    log Unjailed(node=account)
    return True


@internal
def _take(account: address, amount: uint256) -> uint256:
    """
    @dev Takes up to `amount` of active, then unbonding stake.
    @param account The account.
    @param amount The amount to take.
    @return uint256 The amount taken.
    """
    node: Node = self.nodes[account]
    taken: uint256 = min(amount, node.stake + node.unbonding)
    from_stake: uint256 = min(taken, node.stake)
    node.stake -= from_stake
    node.unbonding -= taken - from_stake
    node.fresh = min(node.fresh, node.stake)
    self.nodes[account] = node
    return taken


@internal
def _resolve_dispute(receipt_hash: bytes32, to: address):
    """
    @dev Pays a dispute's bond to `to` and closes it.
    @param receipt_hash The disputed receipt's struct hash.
    @param to Who gets the bond.
    """
    open_dispute: Dispute = self.disputes[receipt_hash]
    self.disputes[receipt_hash] = empty(Dispute)
    self.bonds_held -= open_dispute.bond
    log DisputeResolved(receipt_hash=receipt_hash, payer=open_dispute.payer, paid_to=to, bond=open_dispute.bond)
    self._pay(to, open_dispute.bond)


@internal
@view
def _mature(node: Node) -> Node:
    """
    @dev Turns fresh stake warm once it is older than the warm-up.
    @param node The account's record.
    @return Node The record with matured stake.
    """
    out: Node = node
    if out.fresh > 0 and block.timestamp >= out.fresh_since + self.warmup:
        out.fresh = 0
    return out


@internal
@pure
def _bps_of(amount: uint256, bps: uint256) -> uint256:
    """
    @dev `amount * bps / 10,000`, rounded up.
    @param amount The amount.
    @param bps The share in basis points.
    @return uint256 The share.
    """
    return (amount * bps + _BPS - 1) // _BPS


# ---------------------------------------------------------------------
# Internal: parameters
# ---------------------------------------------------------------------


@internal
@view
def _delay_floor() -> uint256:
    """
    @dev The least governance delay: the longest period participants rely on, plus a day.
    @return uint256 The floor.
    """
    return max(self.unbonding_period, self.warmup) + _DELAY_MARGIN


@internal
def _set_min_stake(role: uint8, amount: uint256):
    """
    @dev Validates and stores a role's minimum stake.
    @param role The role.
    @param amount The minimum.
    """
    self._require(role == ROLE_INFERENCE or role == ROLE_VERIFIER, "NodeStaking: invalid role")
    self._require(amount > 0 and amount <= MAX_MIN_STAKE, "NodeStaking: min stake out of bounds")
    self.min_stake[role] = amount
    log MinStakeUpdated(role=role, amount=amount)


@internal
def _set_periods(dispute_window_: uint256, unbonding_period_: uint256, warmup_: uint256):
    """
    @dev Validates and stores the periods.
    @param dispute_window_ The dispute window.
    @param unbonding_period_ The unbonding period.
    @param warmup_ The warm-up.
    """
    self._require(
        (dispute_window_ >= _MIN_DISPUTE_WINDOW and dispute_window_ <= _MAX_DISPUTE_WINDOW),
        "NodeStaking: window out of bounds",
    )
    self._require(
        (unbonding_period_ >= 2 * dispute_window_ and unbonding_period_ <= _MAX_UNBONDING_PERIOD),
        "NodeStaking: unbonding out of bounds",
    )
    self._require(warmup_ >= dispute_window_ and warmup_ <= _MAX_WARMUP, "NodeStaking: warmup out of bounds")
    self.dispute_window = dispute_window_
    self.unbonding_period = unbonding_period_
    self.warmup = warmup_
    log PeriodsUpdated(dispute_window=dispute_window_, unbonding_period=unbonding_period_, warmup=warmup_)


@internal
def _set_slashing(
    equivocation_slash_bps_: uint256,
    fraud_slash_bps_: uint256,
    challenger_reward_bps_: uint256,
    fraud_multiplier_: uint256,
):
    """
    @dev Validates and stores the slashing parameters.
    @param equivocation_slash_bps_ The equivocation / invalid receipt slash.
    @param fraud_slash_bps_ The per-offence fraud and verifier slash.
    @param challenger_reward_bps_ The challenger reward.
    @param fraud_multiplier_ The penalty per proven receipt, times its amount.
    """
    self._require((equivocation_slash_bps_ > 0 and equivocation_slash_bps_ <= _BPS), "NodeStaking: slash out of bounds")
    self._require(fraud_slash_bps_ > 0 and fraud_slash_bps_ <= _BPS, "NodeStaking: slash out of bounds")
    self._require(challenger_reward_bps_ <= _MAX_CHALLENGER_REWARD_BPS, "NodeStaking: reward out of bounds")
    self._require(
        (fraud_multiplier_ >= _MIN_FRAUD_MULTIPLIER and fraud_multiplier_ <= _MAX_FRAUD_MULTIPLIER),
        "NodeStaking: multiplier out of bounds",
    )
    self.equivocation_slash_bps = equivocation_slash_bps_
    self.fraud_slash_bps = fraud_slash_bps_
    self.challenger_reward_bps = challenger_reward_bps_
    self.fraud_multiplier = fraud_multiplier_
    log SlashingUpdated(
        equivocation_slash_bps=equivocation_slash_bps_,
        fraud_slash_bps=fraud_slash_bps_,
        challenger_reward_bps=challenger_reward_bps_,
        fraud_multiplier=fraud_multiplier_,
    )


@internal
def _set_fraud_quorum_bps(fraud_quorum_bps_: uint256):
    """
    @dev Validates and stores the fraud quorum.
    @param fraud_quorum_bps_ The quorum in basis points.
    """
    self._require(
        (fraud_quorum_bps_ >= _MIN_FRAUD_QUORUM_BPS and fraud_quorum_bps_ <= _BPS),
        "NodeStaking: fraud quorum out of bounds",
    )
    self.fraud_quorum_bps = fraud_quorum_bps_
    log FraudQuorumUpdated(fraud_quorum_bps=fraud_quorum_bps_)


@internal
@pure
def _require(condition: bool, reason: String[64]):
    """
    @dev Reverts with `reason` unless `condition` holds. One revert
         site for every check: an inline `assert` with a reason string
         costs ~130 bytes of code each, and NodeStaking must fit the
         24,576-byte limit (EIP-170).
    @param condition The condition that must hold.
    @param reason The revert reason, "NodeStaking: ...".
    """
    assert condition, reason


# ---------------------------------------------------------------------
# Internal: tokens
# ---------------------------------------------------------------------


@internal
def _pay(to: address, amount: uint256):
    """
    @dev Transfers `amount` OPG if it is not zero.
    @param to The recipient.
    @param amount The amount.
    """
    if amount > 0:
        assert extcall token.transfer(to, amount, default_return_value=True)
