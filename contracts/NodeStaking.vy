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
        and stays slashable until then) and withdraw. Slashing punishes
        only cheaters:
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
          the escrow; the first proof of an offence also takes
          `fraud_slash_bps` and jails the node for at least a dispute
          window, until its stake is back at its pre-slash level;
        - verifiers answer for their votes: both ways on one receipt
          (trustless), `valid=true` on a receipt proven fraudulent
          (lazy), `valid=false` or a flag on a receipt proven valid by
          the quorum (false accuser), at most once per window each.
        Evidence is ECDSA only and counts whether or not the signer has
        code; it is admissible for `dispute_window` from the later of
        the receipt's timestamp and the channel's last settlement.
        Verifiers flag receipts on-chain and payers dispute them with a
        bond, so no relayer can censor an accusation. Receipts,
        Verdicts and Registrations are EIP-712 messages of the domain
        "OPG Node Staking" "1". Parameters change only through a
        timelock.
"""

from ethereum.ercs import IERC20

from snekmate.auth import ownable

initializes: ownable

from snekmate.auth import ownable_2step

initializes: ownable_2step[ownable := ownable]

from snekmate.utils import eip712_domain_separator as eip712

initializes: eip712

from .modules import signatures

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


interface IOPG:
    def transfer(to: address, amount: uint256) -> bool: nonpayable
    def transferFrom(owner: address, to: address, amount: uint256) -> bool: nonpayable
    def burn(amount: uint256): nonpayable


interface ICreditEscrow:
    def settled_at(payer: address, node: address) -> uint256: view
    def node_settled_at(node: address) -> uint256: view
    def void_charges(payer: address, node: address, cumulative: uint256) -> (uint256, uint256): nonpayable


interface IRewardDistributor:
    def epoch_now() -> uint256: view


# @dev A node's signed statement of one served request.
struct Receipt:
    request_id: bytes32
    payer: address
    node: address
    model_id: bytes32
    input_hash: bytes32
    output_hash: bytes32
    amount: uint256
    cumulative: uint256
    timestamp: uint64


# @dev A verifier's signature over a `Verdict`.
struct SignedVerdict:
    verifier: address
    signature: Bytes[65]


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


# @dev Roles.
ROLE_NONE: constant(uint8) = 0
ROLE_INFERENCE: public(constant(uint8)) = 1
ROLE_VERIFIER: public(constant(uint8)) = 2


# @dev The basis-point denominator.
BPS: constant(uint256) = 10_000


# @dev Hard bounds of the periods.
MIN_DISPUTE_WINDOW: constant(uint256) = 60
MAX_DISPUTE_WINDOW: constant(uint256) = 30 * 86_400
MAX_UNBONDING_PERIOD: constant(uint256) = 60 * 86_400
MAX_WARMUP: constant(uint256) = 30 * 86_400


# @dev Hard upper bound of `min_stake` (1% of the supply).
MAX_MIN_STAKE: public(constant(uint256)) = 10_000_000 * 10**18


# @dev Hard upper bound of `challenger_reward_bps`.
MAX_CHALLENGER_REWARD_BPS: constant(uint256) = 5_000


# @dev Hard bounds of `fraud_quorum_bps` (never a simple minority).
MIN_FRAUD_QUORUM_BPS: constant(uint256) = 5_000


# @dev Hard upper bound of `fraud_multiplier`.
MAX_FRAUD_MULTIPLIER: constant(uint256) = 100


# @dev How far after the block a receipt may be dated before it is itself slashable.
MAX_FUTURE: public(constant(uint256)) = 300


# @dev How much longer than the longest period the governance delay must be.
DELAY_MARGIN: constant(uint256) = 86_400


# @dev The most verdicts one proof carries.
MAX_VERDICTS: constant(uint256) = 32


# @dev The longest endpoint URL.
MAX_ENDPOINT_LENGTH: constant(uint256) = 256


# @dev EIP-712 type hash of `Receipt`.
RECEIPT_TYPEHASH: public(constant(bytes32)) = keccak256(
    "Receipt(bytes32 requestId,address payer,address node,bytes32 modelId,bytes32 inputHash,bytes32 outputHash,uint256 amount,uint256 cumulative,uint64 timestamp)"
)


# @dev EIP-712 type hash of `Verdict`.
VERDICT_TYPEHASH: public(constant(bytes32)) = keccak256("Verdict(bytes32 receiptHash,bool valid)")


# @dev EIP-712 type hash of `Registration` (proof that an account holds its ECDSA key).
REGISTRATION_TYPEHASH: public(constant(bytes32)) = keccak256("Registration(address account)")


# @dev `Slashed.kind` values.
KIND_EQUIVOCATION: constant(uint8) = 1
KIND_FRAUD: constant(uint8) = 2
KIND_LAZY_VERIFIER: constant(uint8) = 3
KIND_INVALID_RECEIPT: constant(uint8) = 4
KIND_DOUBLE_VOTE: constant(uint8) = 5
KIND_FALSE_ACCUSER: constant(uint8) = 6


# @dev The OPG token.
token: public(immutable(IOPG))


# @dev The RewardDistributor, the epoch clock of heartbeats.
distributor: public(immutable(IRewardDistributor))


# @dev The CreditEscrow: channel settlement times, and voiding of fraudulent charges.
escrow: public(ICreditEscrow)


# @dev Every registered account.
nodes: public(HashMap[address, Node])


# @dev Where a node serves (inference API, payload release).
endpoint: public(HashMap[address, String[MAX_ENDPOINT_LENGTH]])


# @dev The least active stake of a role for new service and votes.
min_stake: public(HashMap[uint8, uint256])


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


event Connected:
    escrow: indexed(address)


event Registered:
    node: indexed(address)
    role: uint8
    stake: uint256
    endpoint: String[MAX_ENDPOINT_LENGTH]


event EndpointUpdated:
    node: indexed(address)
    endpoint: String[MAX_ENDPOINT_LENGTH]


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


event Slashed:
    node: indexed(address)
    evidence: indexed(bytes32)
    payer: indexed(address)
    kind: uint8
    amount: uint256
    refund: uint256
    reward: uint256
    burned: uint256


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


@deploy
def __init__(
    token_: IOPG,
    distributor_: IRewardDistributor,
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
    @dev Sets the token, the distributor and all parameters; the
         deployer becomes the owner.
    @param token_ The OPG token.
    @param distributor_ The RewardDistributor (epoch clock).
    @param min_inference_stake Least stake of an inference node.
    @param min_verifier_stake Least stake of a verifier.
    @param dispute_window_ Evidence admissibility window (60 s..30 days).
    @param unbonding_period_ Unbonding lock (2 dispute windows..60 days).
    @param warmup_ Stake age before it weighs (dispute window..30 days).
    @param equivocation_slash_bps_ Equivocation slash (1..10,000 bps).
    @param fraud_slash_bps_ Per-offence fraud and verifier slash (1..10,000 bps).
    @param challenger_reward_bps_ Challenger share (<= 5,000 bps).
    @param fraud_multiplier_ Penalty per proven receipt, times its amount (1..100).
    @param fraud_quorum_bps_ Verifier weight needed (5,000..10,000 bps).
    @param delay_ Governance delay (>= unbonding period, warmup + 1 day).
    """
    assert token_.address != empty(address), "NodeStaking: zero address"
    assert distributor_.address != empty(address), "NodeStaking: zero address"
    ownable.__init__()
    ownable_2step.__init__()
    eip712.__init__("OPG Node Staking", "1")
    timelock.__init__()
    token = token_
    distributor = distributor_
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
    assert self.escrow.address == empty(address), "NodeStaking: already connected"
    assert escrow_.address != empty(address), "NodeStaking: zero address"
    self.escrow = escrow_
    log Connected(escrow=escrow_.address)


@external
def register(role: uint8, stake: uint256, endpoint_: String[MAX_ENDPOINT_LENGTH], signature: Bytes[65]):
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
    assert role == ROLE_INFERENCE or role == ROLE_VERIFIER, "NodeStaking: invalid role"
    assert self.nodes[msg.sender].role == ROLE_NONE, "NodeStaking: already registered"
    assert stake >= self.min_stake[role], "NodeStaking: stake below minimum"
    assert len(endpoint_) > 0, "NodeStaking: empty endpoint"
    assert (
        signatures._try_recover(self._registration_digest(msg.sender), signature) == msg.sender
    ), "NodeStaking: invalid registration"
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
    self.endpoint[msg.sender] = endpoint_
    log Registered(node=msg.sender, role=role, stake=stake, endpoint=endpoint_)
    assert extcall token.transferFrom(msg.sender, self, stake, default_return_value=True)


@external
def set_endpoint(endpoint_: String[MAX_ENDPOINT_LENGTH]):
    """
    @dev Changes the caller's endpoint.
    @param endpoint_ The new endpoint, non-empty.
    """
    assert self.nodes[msg.sender].role != ROLE_NONE, "NodeStaking: not registered"
    assert len(endpoint_) > 0, "NodeStaking: empty endpoint"
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
    assert node.role != ROLE_NONE, "NodeStaking: not registered"
    assert amount > 0, "NodeStaking: zero amount"
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
    assert self.nodes[msg.sender].jailed, "NodeStaking: not jailed"
    assert self._try_release(msg.sender), "NodeStaking: jail not over"


@external
def request_unbond(amount: uint256):
    """
    @dev Moves `amount` of active stake to unbonding (fresh stake
         first). All unbonding stake becomes withdrawable
         `unbonding_period` after the latest request, and stays
         slashable until withdrawn.
    @param amount The amount, at most the active stake.
    """
    node: Node = self._mature(self.nodes[msg.sender])
    assert node.role != ROLE_NONE, "NodeStaking: not registered"
    assert amount > 0, "NodeStaking: zero amount"
    assert amount <= node.stake, "NodeStaking: amount exceeds stake"
    node.stake -= amount
    node.fresh -= min(node.fresh, amount)
    node.unbonding += amount
    node.unbond_ready_at = block.timestamp + self.unbonding_period
    self.nodes[msg.sender] = node
    log UnbondRequested(node=msg.sender, amount=amount, unbonding=node.unbonding, ready_at=node.unbond_ready_at)


@external
def withdraw_unbonded() -> uint256:
    """
    @dev Pays the caller its unbonding stake once the period is over
         and, for an inference node, a dispute window after its last
         settlement (stake outlives every settled receipt's window).
    @return uint256 The amount paid.
    """
    node: Node = self.nodes[msg.sender]
    assert node.unbonding > 0, "NodeStaking: nothing unbonding"
    assert block.timestamp >= node.unbond_ready_at, "NodeStaking: still unbonding"
    if node.role == ROLE_INFERENCE:
        last: uint256 = staticcall self.escrow.node_settled_at(msg.sender)
        assert block.timestamp >= last + self.dispute_window, "NodeStaking: still disputable"
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
    assert (
        node.role == ROLE_VERIFIER and not node.jailed and node.stake >= self.min_stake[ROLE_VERIFIER]
    ), "NodeStaking: not an active verifier"
    self.nodes[msg.sender].fresh = node.fresh
    epoch: uint256 = (staticcall distributor.epoch_now()) + 1
    weight: uint256 = node.stake - node.fresh
    total: uint256 = self.total_weight_in[epoch] + weight - self.weight_in[epoch][msg.sender]
    self.weight_in[epoch][msg.sender] = weight
    self.total_weight_in[epoch] = total
    log Heartbeat(verifier=msg.sender, epoch=epoch, weight=weight, total_weight=total)
    return weight


@external
def flag(receipt: Receipt, signature: Bytes[65]):
    """
    @dev Accuses a receipt in public, so every verifier re-executes it
         and no relayer can bury the accusation.
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
    assert (
        self.fraud_proven_at[receipt_hash] == 0 and self.valid_proven_at[receipt_hash] == 0
    ), "NodeStaking: already judged"
    bond: uint256 = 0
    if msg.sender == receipt.payer:
        bond = receipt.amount
        assert bond > 0, "NodeStaking: zero amount"
        assert self.disputes[receipt_hash].bond == 0, "NodeStaking: already disputed"
        self.disputes[receipt_hash] = Dispute(payer=msg.sender, bond=bond, opened_at=block.timestamp)
        self.bonds_held += bond
    else:
        assert self._is_active_as(msg.sender, ROLE_VERIFIER), "NodeStaking: not an active verifier"
        assert not self.flagged_by[receipt_hash][msg.sender], "NodeStaking: already flagged"
        self.flagged_by[receipt_hash][msg.sender] = True
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
    assert open_dispute.bond > 0, "NodeStaking: no open dispute"
    assert block.timestamp > open_dispute.opened_at + 2 * self.dispute_window, "NodeStaking: dispute still open"
    self._resolve_dispute(receipt_hash, open_dispute.payer)


@external
def slash_equivocation(a: Receipt, signature_a: Bytes[65], b: Receipt, signature_b: Bytes[65]) -> uint256:
    """
    @dev Slashes a node that signed two different Receipts for one
         request id. Anyone may submit; the caller earns the
         challenger reward, the rest is burned, the node is jailed.
    @param a The first receipt.
    @param signature_a The node's signature of `a`.
    @param b The second receipt.
    @param signature_b The node's signature of `b`.
    @return uint256 The amount slashed.
    """
    assert a.node == b.node, "NodeStaking: different nodes"
    assert a.request_id == b.request_id, "NodeStaking: different request ids"
    hash_a: bytes32 = self._check_evidence(a, signature_a)
    hash_b: bytes32 = self._check_evidence(b, signature_b)
    assert hash_a != hash_b, "NodeStaking: identical receipts"
    evidence: bytes32 = keccak256(abi_encode(KIND_EQUIVOCATION, a.node, a.request_id))
    return self._slash_trustless(a.node, evidence, KIND_EQUIVOCATION, self.equivocation_slash_bps)


@external
def slash_invalid_receipt(receipt: Receipt, signature: Bytes[65]) -> uint256:
    """
    @dev Slashes a node for a receipt no honest node signs: dated
         more than `MAX_FUTURE` after the block, or charging more than
         its own cumulative. Anyone may submit, like equivocation.
    @param receipt The receipt.
    @param signature The node's signature of `receipt`.
    @return uint256 The amount slashed.
    """
    receipt_hash: bytes32 = self._check_evidence(receipt, signature)
    assert (
        convert(receipt.timestamp, uint256) > block.timestamp + MAX_FUTURE or receipt.amount > receipt.cumulative
    ), "NodeStaking: receipt is well-formed"
    evidence: bytes32 = keccak256(abi_encode(KIND_INVALID_RECEIPT, receipt_hash))
    return self._slash_trustless(receipt.node, evidence, KIND_INVALID_RECEIPT, self.equivocation_slash_bps)


@external
def slash_fraud(receipt: Receipt, signature: Bytes[65], verdicts: DynArray[SignedVerdict, MAX_VERDICTS]) -> uint256:
    """
    @dev Proves a receipt fraudulent with `Verdict(valid=false)`
         signatures reaching the quorum of this epoch's live verifier
         weight. The escrow voids the channel's charges up to the
         receipt; the node loses `fraud_multiplier * amount` (and, on
         the first proof of an offence, `fraud_slash_bps` of its stake,
         and is jailed). Out of it the payer is refunded what it paid
         for the receipt, the verifiers share the challenger reward by
         weight, and the rest is burned.
    @param receipt The fraudulent receipt.
    @param signature The node's signature of `receipt`.
    @param verdicts The verdicts, verifiers in strictly ascending order.
    @return uint256 The amount slashed.
    """
    receipt_hash: bytes32 = self._check_evidence(receipt, signature)
    assert self.fraud_proven_at[receipt_hash] == 0, "NodeStaking: evidence already used"
    assert self.valid_proven_at[receipt_hash] == 0, "NodeStaking: proven valid"
    assert self.nodes[receipt.node].role == ROLE_INFERENCE, "NodeStaking: not an inference node"
    weights: DynArray[uint256, MAX_VERDICTS] = []
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
    if not node.jailed and convert(receipt.timestamp, uint256) >= node.released_at:
        penalty += self._bps_of(slashable, self.fraud_slash_bps)
        self._jail(receipt.node)
    amount: uint256 = self._take(receipt.node, penalty)

    # The refund is what the payer paid for this receipt's range of the
    # channel, never more than the channel paid net of voided charges and
    # earlier refunds (else a colluding payer could take the slashed stake).
    refund: uint256 = 0
    if receipt.amount <= receipt.cumulative and spent > receipt.cumulative - receipt.amount:
        paid: uint256 = min(receipt.amount, spent - (receipt.cumulative - receipt.amount))
        refund = min(min(paid, spent - voided - self.refunded[receipt.payer][receipt.node]), amount)
        self.refunded[receipt.payer][receipt.node] += refund
    reward: uint256 = (amount - refund) * self.challenger_reward_bps // BPS
    paid_rewards: uint256 = 0
    shares: DynArray[uint256, MAX_VERDICTS] = []
    for w: uint256 in weights:
        share: uint256 = reward * w // weight
        shares.append(share)
        paid_rewards += share
    burned: uint256 = amount - refund - paid_rewards
    log Slashed(
        node=receipt.node,
        evidence=receipt_hash,
        payer=receipt.payer,
        kind=KIND_FRAUD,
        amount=amount,
        refund=refund,
        reward=paid_rewards,
        burned=burned,
    )
    if self.disputes[receipt_hash].bond > 0:
        self._resolve_dispute(receipt_hash, self.disputes[receipt_hash].payer)
    self._pay(receipt.payer, refund)
    for i: uint256 in range(len(verdicts), bound=MAX_VERDICTS):
        self._pay(verdicts[i].verifier, shares[i])
    self._burn(burned)
    return amount


@external
def prove_valid(receipt: Receipt, signature: Bytes[65], verdicts: DynArray[SignedVerdict, MAX_VERDICTS]):
    """
    @dev Proves a receipt valid with `Verdict(valid=true)` signatures
         reaching the quorum: its accusers become slashable as false
         accusers and a payer's dispute bond goes to the node.
    @param receipt The receipt.
    @param signature The node's signature of `receipt`.
    @param verdicts The verdicts, verifiers in strictly ascending order.
    """
    receipt_hash: bytes32 = self._check_evidence(receipt, signature)
    assert self.valid_proven_at[receipt_hash] == 0, "NodeStaking: evidence already used"
    assert self.fraud_proven_at[receipt_hash] == 0, "NodeStaking: proven fraudulent"
    weights: DynArray[uint256, MAX_VERDICTS] = []
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
    assert self.nodes[verifier].role == ROLE_VERIFIER, "NodeStaking: not a verifier"
    self._check_verdict(receipt_hash, True, verifier, signature_valid)
    self._check_verdict(receipt_hash, False, verifier, signature_invalid)
    evidence: bytes32 = keccak256(abi_encode(KIND_DOUBLE_VOTE, receipt_hash, verifier))
    return self._slash_trustless(verifier, evidence, KIND_DOUBLE_VOTE, self.fraud_slash_bps)


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
    assert self.nodes[verifier].role == ROLE_VERIFIER, "NodeStaking: not a verifier"
    proven_at: uint256 = self.fraud_proven_at[receipt_hash]
    kind: uint8 = KIND_LAZY_VERIFIER
    if proven_at == 0:
        proven_at = self.valid_proven_at[receipt_hash]
        assert proven_at != 0, "NodeStaking: receipt not judged"
        kind = KIND_FALSE_ACCUSER
    if len(signature) == 0 and kind == KIND_FALSE_ACCUSER:
        assert self.flagged_by[receipt_hash][verifier], "NodeStaking: no flag"
    else:
        self._check_verdict(receipt_hash, kind == KIND_LAZY_VERIFIER, verifier, signature)
    window: uint256 = self.dispute_window
    assert block.timestamp <= proven_at + window, "NodeStaking: evidence too old"
    last: uint256 = self.last_verifier_slash[verifier]
    assert last == 0 or block.timestamp >= last + window, "NodeStaking: slashed this window"
    self.last_verifier_slash[verifier] = block.timestamp
    evidence: bytes32 = keccak256(abi_encode(kind, receipt_hash, verifier))
    return self._slash_trustless(verifier, evidence, kind, self.fraud_slash_bps)


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
         never pay for work already done).
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
    assert timelock.delay >= self._delay_floor(), "NodeStaking: periods above delay"


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
            slashes 1..10,000 bps, reward <= 5,000 bps, multiplier 1..100,
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
    @dev Whether settlement may pay `node`: a registered inference
         node that is not jailed and still has stake behind its
         receipts (the minimum stake does not gate pay for work
         already done; a node that withdrew all its stake is not paid,
         as nothing could be slashed for what it would settle).
    @param node The node.
    @return bool Whether claims to it settle.
    """
    n: Node = self.nodes[node]
    return n.role == ROLE_INFERENCE and not n.jailed and n.stake + n.unbonding > 0


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
def receipt_hash(receipt: Receipt) -> bytes32:
    """
    @dev The EIP-712 struct hash of a Receipt (what Verdicts sign).
    @param receipt The receipt.
    @return bytes32 Its struct hash.
    """
    return self._receipt_hash(receipt)


@internal
def _slash_trustless(account: address, evidence: bytes32, kind: uint8, bps: uint256) -> uint256:
    """
    @dev Uses `evidence` once, jails `account`, takes `bps` of its
         stake, pays the caller the challenger reward, burns the rest.
    """
    self._use_evidence(evidence)
    node: Node = self.nodes[account]
    slashable: uint256 = node.stake + node.unbonding
    assert slashable > 0, "NodeStaking: nothing to slash"
    self._jail(account)
    amount: uint256 = self._take(account, self._bps_of(slashable, bps))
    reward: uint256 = amount * self.challenger_reward_bps // BPS
    burned: uint256 = amount - reward
    log Slashed(
        node=account,
        evidence=evidence,
        payer=empty(address),
        kind=kind,
        amount=amount,
        refund=0,
        reward=reward,
        burned=burned,
    )
    self._pay(msg.sender, reward)
    self._burn(burned)
    return amount


@internal
def _tally(
    receipt_hash: bytes32, valid: bool, verdicts: DynArray[SignedVerdict, MAX_VERDICTS]
) -> (DynArray[uint256, MAX_VERDICTS], uint256, uint256):
    """
    @dev Checks the verdicts and that their weight reaches the quorum
         of this epoch's live weight.
    @return (DynArray, uint256, uint256) Each verdict's weight, their
            sum and the total live weight.
    """
    epoch: uint256 = staticcall distributor.epoch_now()
    total: uint256 = self.total_weight_in[epoch]
    assert total > 0, "NodeStaking: no live weight"
    digest: bytes32 = self._verdict_digest(receipt_hash, valid)
    weights: DynArray[uint256, MAX_VERDICTS] = []
    weight: uint256 = 0
    previous: address = empty(address)
    for verdict: SignedVerdict in verdicts:
        assert convert(verdict.verifier, uint160) > convert(previous, uint160), "NodeStaking: verifiers not ascending"
        previous = verdict.verifier
        assert (signatures._try_recover(digest, verdict.signature) == verdict.verifier), "NodeStaking: invalid verdict"
        w: uint256 = self._vote_weight(verdict.verifier, epoch)
        weights.append(w)
        weight += w
    assert weight * BPS >= total * self.fraud_quorum_bps, "NodeStaking: quorum not reached"
    return weights, weight, total


@internal
@view
def _vote_weight(verifier: address, epoch: uint256) -> uint256:
    """
    @dev The epoch's snapshot weight, 0 for a jailed account, never
         more than what can still be slashed.
    """
    node: Node = self.nodes[verifier]
    if node.role != ROLE_VERIFIER or node.jailed:
        return 0
    return min(self.weight_in[epoch][verifier], node.stake + node.unbonding)


@internal
@view
def _check_evidence(receipt: Receipt, signature: Bytes[65]) -> bytes32:
    """
    @dev Checks the node's ECDSA signature and that the receipt is
         within `dispute_window` of the later of its timestamp and its
         channel's last settlement.
    @return bytes32 The receipt's struct hash.
    """
    receipt_hash: bytes32 = self._receipt_hash(receipt)
    assert (
        signatures._try_recover(eip712._hash_typed_data_v4(receipt_hash), signature) == receipt.node
    ), "NodeStaking: invalid receipt"
    start: uint256 = max(
        convert(receipt.timestamp, uint256), staticcall self.escrow.settled_at(receipt.payer, receipt.node)
    )
    assert block.timestamp <= start + self.dispute_window, "NodeStaking: evidence too old"
    return receipt_hash


@internal
@view
def _check_verdict(receipt_hash: bytes32, valid: bool, verifier: address, signature: Bytes[65]):
    """
    @dev Refuses a verdict not signed by `verifier` (ECDSA).
    """
    assert (
        signatures._try_recover(self._verdict_digest(receipt_hash, valid), signature) == verifier
    ), "NodeStaking: invalid verdict"


@internal
def _use_evidence(evidence: bytes32):
    """
    @dev Marks evidence used, refusing it the second time.
    """
    assert not self.evidence_used[evidence], "NodeStaking: evidence already used"
    self.evidence_used[evidence] = True


@internal
def _jail(account: address):
    """
    @dev Jails an account (if not yet jailed), remembering the active
         stake it must restore to be released.
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
    @return bool Whether it is free now.
    """
    node: Node = self.nodes[account]
    if not node.jailed:
        return True
    if (
        block.timestamp < node.jailed_at + self.dispute_window
        or node.stake < node.restore_stake
        or node.stake < self.min_stake[node.role]
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
    """
    return (amount * bps + BPS - 1) // BPS


@internal
@view
def _delay_floor() -> uint256:
    """
    @dev The least governance delay: the longest period participants rely on, plus a day.
    """
    return max(self.unbonding_period, self.warmup) + DELAY_MARGIN


@internal
def _set_min_stake(role: uint8, amount: uint256):
    """
    @dev Validates and stores a role's minimum stake.
    """
    assert role == ROLE_INFERENCE or role == ROLE_VERIFIER, "NodeStaking: invalid role"
    assert amount > 0 and amount <= MAX_MIN_STAKE, "NodeStaking: min stake out of bounds"
    self.min_stake[role] = amount
    log MinStakeUpdated(role=role, amount=amount)


@internal
def _set_periods(dispute_window_: uint256, unbonding_period_: uint256, warmup_: uint256):
    """
    @dev Validates and stores the periods.
    """
    assert (
        dispute_window_ >= MIN_DISPUTE_WINDOW and dispute_window_ <= MAX_DISPUTE_WINDOW
    ), "NodeStaking: window out of bounds"
    assert (
        unbonding_period_ >= 2 * dispute_window_ and unbonding_period_ <= MAX_UNBONDING_PERIOD
    ), "NodeStaking: unbonding out of bounds"
    assert warmup_ >= dispute_window_ and warmup_ <= MAX_WARMUP, "NodeStaking: warmup out of bounds"
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
    """
    assert (equivocation_slash_bps_ > 0 and equivocation_slash_bps_ <= BPS), "NodeStaking: slash out of bounds"
    assert fraud_slash_bps_ > 0 and fraud_slash_bps_ <= BPS, "NodeStaking: slash out of bounds"
    assert challenger_reward_bps_ <= MAX_CHALLENGER_REWARD_BPS, "NodeStaking: reward out of bounds"
    assert (
        fraud_multiplier_ >= 1 and fraud_multiplier_ <= MAX_FRAUD_MULTIPLIER
    ), "NodeStaking: multiplier out of bounds"
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
    """
    assert (
        fraud_quorum_bps_ >= MIN_FRAUD_QUORUM_BPS and fraud_quorum_bps_ <= BPS
    ), "NodeStaking: fraud quorum out of bounds"
    self.fraud_quorum_bps = fraud_quorum_bps_
    log FraudQuorumUpdated(fraud_quorum_bps=fraud_quorum_bps_)


@internal
@view
def _is_active_as(account: address, role: uint8) -> bool:
    """
    @dev Registered in `role`, not jailed, stake at least the minimum.
    """
    node: Node = self.nodes[account]
    return role != ROLE_NONE and node.role == role and not node.jailed and node.stake >= self.min_stake[role]


@internal
@view
def _receipt_hash(r: Receipt) -> bytes32:
    """
    @dev The EIP-712 struct hash of a Receipt.
    """
    return keccak256(
        abi_encode(
            RECEIPT_TYPEHASH,
            r.request_id,
            r.payer,
            r.node,
            r.model_id,
            r.input_hash,
            r.output_hash,
            r.amount,
            r.cumulative,
            r.timestamp,
        )
    )


@internal
@view
def _verdict_digest(receipt_hash: bytes32, valid: bool) -> bytes32:
    """
    @dev The EIP-712 digest of a Verdict.
    """
    return eip712._hash_typed_data_v4(keccak256(abi_encode(VERDICT_TYPEHASH, receipt_hash, valid)))


@internal
@view
def _registration_digest(account: address) -> bytes32:
    """
    @dev The EIP-712 digest of a Registration.
    """
    return eip712._hash_typed_data_v4(keccak256(abi_encode(REGISTRATION_TYPEHASH, account)))


@internal
def _pay(to: address, amount: uint256):
    """
    @dev Transfers `amount` OPG if it is not zero.
    """
    if amount > 0:
        assert extcall token.transfer(to, amount, default_return_value=True)


@internal
def _burn(amount: uint256):
    """
    @dev Burns `amount` OPG held here if it is not zero.
    """
    if amount > 0:
        extcall token.burn(amount)
