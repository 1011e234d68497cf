# pragma version ~=0.4.3
# pragma nonreentrancy on
# SPDX-License-Identifier: AGPL-3.0-only
"""
@title OPG node staking and slashing
@custom:contract-name NodeStaking
@license GNU Affero General Public License v3.0 only
@notice Inference nodes and verifiers register with a role and an
        OPG stake, add stake, unbond (stake leaves only after
        `unbonding_period`, and stays slashable until then) and
        withdraw. Three kinds of evidence slash a stake:
        - equivocation: two Receipts signed by one node for one
          `requestId` with different contents (anyone submits; the
          submitter earns `challenger_reward_bps`, the rest burns);
        - fraud: a Receipt plus `Verdict(valid=false)` signed by at
          least `fraud_quorum` distinct active verifiers (the payer
          gets `amount` back if the receipt was settled, the
          verifiers share the challenger reward, the rest burns,
          the node is jailed until it tops its stake up);
        - lazy verifier: a `Verdict(valid=true)` for a receipt
          already proven fraudulent here.
        Evidence older than `dispute_window` is refused, and the
        same evidence never slashes twice. Receipts and Verdicts are
        EIP-712 messages of the domain "OPG Node Staking" "1".
"""

from ethereum.ercs import IERC20

from snekmate.auth import ownable

initializes: ownable

from snekmate.auth import ownable_2step

initializes: ownable_2step[ownable := ownable]

from snekmate.utils import eip712_domain_separator as eip712

initializes: eip712

from .modules import signatures

exports: (
    ownable.owner,
    ownable_2step.pending_owner,
    ownable_2step.transfer_ownership,
    ownable_2step.accept_ownership,
    ownable_2step.renounce_ownership,
    eip712.eip712Domain,
)


interface IOPG:
    def transfer(to: address, amount: uint256) -> bool: nonpayable
    def transferFrom(owner: address, to: address, amount: uint256) -> bool: nonpayable
    def burn(amount: uint256): nonpayable


interface ICreditEscrow:
    def spent(payer: address, node: address) -> uint256: view


interface IRewardDistributor:
    def on_verifier_stake_change(verifier: address, stake: uint256): nonpayable


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


# @dev A verifier's signature over `Verdict(receiptHash, valid=false)`.
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


# @dev Roles.
ROLE_NONE: public(constant(uint8)) = 0
ROLE_INFERENCE: public(constant(uint8)) = 1
ROLE_VERIFIER: public(constant(uint8)) = 2


# @dev The basis-point denominator.
BPS: public(constant(uint256)) = 10_000


# @dev Hard bounds of the periods.
MIN_DISPUTE_WINDOW: public(constant(uint256)) = 60
MAX_DISPUTE_WINDOW: public(constant(uint256)) = 30 * 86_400
MAX_UNBONDING_PERIOD: public(constant(uint256)) = 60 * 86_400


# @dev Hard upper bound of `challenger_reward_bps`.
MAX_CHALLENGER_REWARD_BPS: public(constant(uint256)) = 5_000


# @dev The most verdicts one fraud proof carries (upper bound of `fraud_quorum`).
MAX_VERDICTS: public(constant(uint256)) = 16


# @dev The longest endpoint URL.
MAX_ENDPOINT_LENGTH: constant(uint256) = 256


# @dev EIP-712 type hash of `Receipt`.
RECEIPT_TYPEHASH: public(constant(bytes32)) = keccak256(
    "Receipt(bytes32 requestId,address payer,address node,bytes32 modelId,bytes32 inputHash,bytes32 outputHash,uint256 amount,uint256 cumulative,uint64 timestamp)"
)


# @dev EIP-712 type hash of `Verdict`.
VERDICT_TYPEHASH: public(constant(bytes32)) = keccak256("Verdict(bytes32 receiptHash,bool valid)")


# @dev The OPG token.
token: public(immutable(IOPG))


# @dev The RewardDistributor, told of every verifier stake change.
distributor: public(immutable(IRewardDistributor))


# @dev The CreditEscrow, read to know whether a receipt was settled.
escrow: public(ICreditEscrow)


# @dev Every registered account.
nodes: public(HashMap[address, Node])


# @dev Where a node serves (inference API, payload release).
endpoint: public(HashMap[address, String[MAX_ENDPOINT_LENGTH]])


# @dev The least active stake of a role.
min_stake: public(HashMap[uint8, uint256])


# @dev How long evidence stays admissible after a receipt's timestamp.
dispute_window: public(uint256)


# @dev How long unbonding stake stays locked (>= dispute_window).
unbonding_period: public(uint256)


# @dev Share of stake + unbonding slashed for equivocation.
equivocation_slash_bps: public(uint256)


# @dev Share of stake + unbonding slashed for fraud or lazy verification.
fraud_slash_bps: public(uint256)


# @dev Share of a slash (after any refund) paid to the challenger(s).
challenger_reward_bps: public(uint256)


# @dev Distinct active verifiers needed to prove fraud.
fraud_quorum: public(uint256)


# @dev Evidence keys already used (equivocation and lazy-verifier evidence).
evidence_used: public(HashMap[bytes32, bool])


# @dev What fraud refunds paid back to a payer on its channel with a node.
refunded: public(HashMap[address, HashMap[address, uint256]])


# @dev Receipt struct hashes proven fraudulent, with the receipt's timestamp.
fraud_proven_at: public(HashMap[bytes32, uint256])


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


event Jailed:
    node: indexed(address)


event Unjailed:
    node: indexed(address)


event Slashed:
    node: indexed(address)
    evidence: indexed(bytes32)
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


event SlashingUpdated:
    equivocation_slash_bps: uint256
    fraud_slash_bps: uint256
    challenger_reward_bps: uint256


event FraudQuorumUpdated:
    fraud_quorum: uint256


# @dev `Slashed.kind` values.
KIND_EQUIVOCATION: public(constant(uint8)) = 1
KIND_FRAUD: public(constant(uint8)) = 2
KIND_LAZY_VERIFIER: public(constant(uint8)) = 3


@deploy
def __init__(
    token_: IOPG,
    distributor_: IRewardDistributor,
    min_inference_stake: uint256,
    min_verifier_stake: uint256,
    dispute_window_: uint256,
    unbonding_period_: uint256,
    equivocation_slash_bps_: uint256,
    fraud_slash_bps_: uint256,
    challenger_reward_bps_: uint256,
    fraud_quorum_: uint256,
):
    """
    @dev Sets the token, the distributor and all parameters; the
         deployer becomes the owner.
    @param token_ The OPG token.
    @param distributor_ The RewardDistributor.
    @param min_inference_stake Least stake of an inference node.
    @param min_verifier_stake Least stake of a verifier.
    @param dispute_window_ Evidence admissibility window (60 s..30 days).
    @param unbonding_period_ Unbonding lock (>= dispute window, <= 60 days).
    @param equivocation_slash_bps_ Equivocation slash (1..10,000 bps).
    @param fraud_slash_bps_ Fraud / lazy-verifier slash (1..10,000 bps).
    @param challenger_reward_bps_ Challenger share (<= 5,000 bps).
    @param fraud_quorum_ Verdicts needed for fraud (1..16).
    """
    assert token_.address != empty(address), "NodeStaking: token is the zero address"
    assert distributor_.address != empty(address), "NodeStaking: distributor is the zero address"
    ownable.__init__()
    ownable_2step.__init__()
    eip712.__init__("OPG Node Staking", "1")
    token = token_
    distributor = distributor_
    self._set_min_stake(ROLE_INFERENCE, min_inference_stake)
    self._set_min_stake(ROLE_VERIFIER, min_verifier_stake)
    self._set_periods(dispute_window_, unbonding_period_)
    self._set_slashing(equivocation_slash_bps_, fraud_slash_bps_, challenger_reward_bps_)
    self._set_fraud_quorum(fraud_quorum_)


@external
def connect(escrow_: ICreditEscrow):
    """
    @dev Wires the CreditEscrow, once.
    @notice Only the owner, only once.
    @param escrow_ The CreditEscrow.
    """
    ownable._check_owner()
    assert self.escrow.address == empty(address), "NodeStaking: already connected"
    assert escrow_.address != empty(address), "NodeStaking: escrow is the zero address"
    self.escrow = escrow_
    log Connected(escrow=escrow_.address)


@external
def register(role: uint8, stake: uint256, endpoint_: String[MAX_ENDPOINT_LENGTH]):
    """
    @dev Registers the caller with a role and an initial stake.
    @notice The caller must have approved `stake` OPG. An account has
            one role for life.
    @param role ROLE_INFERENCE (1) or ROLE_VERIFIER (2).
    @param stake The initial stake, at least `min_stake[role]`.
    @param endpoint_ Where the node serves, non-empty.
    """
    assert role == ROLE_INFERENCE or role == ROLE_VERIFIER, "NodeStaking: invalid role"
    assert self.nodes[msg.sender].role == ROLE_NONE, "NodeStaking: already registered"
    assert stake >= self.min_stake[role], "NodeStaking: stake below minimum"
    assert len(endpoint_) > 0, "NodeStaking: empty endpoint"
    self.nodes[msg.sender] = Node(role=role, jailed=False, stake=stake, unbonding=0, unbond_ready_at=0)
    self.endpoint[msg.sender] = endpoint_
    log Registered(node=msg.sender, role=role, stake=stake, endpoint=endpoint_)
    assert extcall token.transferFrom(msg.sender, self, stake, default_return_value=True)
    self._sync_verifier(msg.sender)


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
    @dev Adds `amount` OPG to the caller's active stake; a jailed
         node whose stake is back at the minimum is released.
    @param amount The OPG amount, approved beforehand.
    """
    node: Node = self.nodes[msg.sender]
    assert node.role != ROLE_NONE, "NodeStaking: not registered"
    assert amount > 0, "NodeStaking: zero amount"
    node.stake += amount
    log StakeAdded(node=msg.sender, amount=amount, stake=node.stake)
    if node.jailed and node.stake >= self.min_stake[node.role]:
        node.jailed = False
        log Unjailed(node=msg.sender)
    self.nodes[msg.sender] = node
    assert extcall token.transferFrom(msg.sender, self, amount, default_return_value=True)
    self._sync_verifier(msg.sender)


@external
def request_unbond(amount: uint256):
    """
    @dev Moves `amount` of active stake to unbonding. All unbonding
         stake becomes withdrawable `unbonding_period` after the
         latest request, and stays slashable until withdrawn.
    @param amount The amount, at most the active stake.
    """
    node: Node = self.nodes[msg.sender]
    assert node.role != ROLE_NONE, "NodeStaking: not registered"
    assert amount > 0, "NodeStaking: zero amount"
    assert amount <= node.stake, "NodeStaking: amount exceeds stake"
    node.stake -= amount
    node.unbonding += amount
    node.unbond_ready_at = block.timestamp + self.unbonding_period
    self.nodes[msg.sender] = node
    log UnbondRequested(node=msg.sender, amount=amount, unbonding=node.unbonding, ready_at=node.unbond_ready_at)
    self._sync_verifier(msg.sender)


@external
def withdraw_unbonded() -> uint256:
    """
    @dev Pays the caller its unbonding stake once the period is over.
    @return uint256 The amount paid.
    """
    node: Node = self.nodes[msg.sender]
    assert node.unbonding > 0, "NodeStaking: nothing unbonding"
    assert block.timestamp >= node.unbond_ready_at, "NodeStaking: still unbonding"
    amount: uint256 = node.unbonding
    self.nodes[msg.sender].unbonding = 0
    log UnbondedWithdrawn(node=msg.sender, amount=amount)
    assert extcall token.transfer(msg.sender, amount, default_return_value=True)
    return amount


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
    assert a.node == b.node, "NodeStaking: receipts of different nodes"
    assert a.request_id == b.request_id, "NodeStaking: different request ids"
    hash_a: bytes32 = self._receipt_hash(a)
    hash_b: bytes32 = self._receipt_hash(b)
    assert hash_a != hash_b, "NodeStaking: identical receipts"
    self._check_fresh(a.timestamp)
    self._check_fresh(b.timestamp)
    self._check_receipt_signature(a.node, hash_a, signature_a)
    self._check_receipt_signature(b.node, hash_b, signature_b)
    evidence: bytes32 = keccak256(abi_encode(KIND_EQUIVOCATION, a.node, a.request_id))
    self._use_evidence(evidence)
    amount: uint256 = self._slash(a.node, self.equivocation_slash_bps)
    reward: uint256 = amount * self.challenger_reward_bps // BPS
    burned: uint256 = amount - reward
    log Slashed(
        node=a.node, evidence=evidence, kind=KIND_EQUIVOCATION, amount=amount, refund=0, reward=reward, burned=burned
    )
    self._pay(msg.sender, reward)
    self._burn(burned)
    return amount


@external
def slash_fraud(receipt: Receipt, signature: Bytes[65], verdicts: DynArray[SignedVerdict, MAX_VERDICTS]) -> uint256:
    """
    @dev Slashes a node whose receipt at least `fraud_quorum`
         distinct active verifiers judged invalid. The payer is
         refunded `receipt.amount` out of the slash if the receipt
         was settled (never more in total than the channel paid),
         the verifiers share the challenger reward,
         the rest is burned, the node is jailed.
    @param receipt The fraudulent receipt.
    @param signature The node's signature of `receipt`.
    @param verdicts `Verdict(valid=false)` signatures, verifiers in
           strictly ascending address order.
    @return uint256 The amount slashed.
    """
    receipt_hash: bytes32 = self._receipt_hash(receipt)
    assert self.fraud_proven_at[receipt_hash] == 0, "NodeStaking: evidence already used"
    self._check_fresh(receipt.timestamp)
    self._check_receipt_signature(receipt.node, receipt_hash, signature)
    count: uint256 = len(verdicts)
    assert count >= self.fraud_quorum, "NodeStaking: quorum not reached"
    digest: bytes32 = self._verdict_digest(receipt_hash, False)
    previous: address = empty(address)
    for verdict: SignedVerdict in verdicts:
        assert convert(verdict.verifier, uint160) > convert(
            previous, uint160
        ), "NodeStaking: verifiers not strictly ascending"
        previous = verdict.verifier
        assert self._is_active_as(verdict.verifier, ROLE_VERIFIER), "NodeStaking: verifier not active"
        assert signatures._is_valid_signature_now(
            verdict.verifier, digest, verdict.signature
        ), "NodeStaking: invalid verdict signature"
    self.fraud_proven_at[receipt_hash] = max(convert(receipt.timestamp, uint256), 1)
    amount: uint256 = self._slash(receipt.node, self.fraud_slash_bps)
    refund: uint256 = 0
    # Settled means the channel paid at least this receipt's total; a receipt
    # whose amount exceeds its own total is malformed and refunds nothing.
    # Refunds on a channel never exceed what it paid, however many fraudulent
    # receipts a node signed for it (else a colluding payer could take the
    # slashed stake instead of it being burned).
    if receipt.amount <= receipt.cumulative:
        paid: uint256 = staticcall self.escrow.spent(receipt.payer, receipt.node)
        if paid >= receipt.cumulative:
            refund = min(min(receipt.amount, amount), paid - self.refunded[receipt.payer][receipt.node])
            self.refunded[receipt.payer][receipt.node] += refund
    share: uint256 = (amount - refund) * self.challenger_reward_bps // BPS // count
    burned: uint256 = amount - refund - share * count
    log Slashed(
        node=receipt.node,
        evidence=receipt_hash,
        kind=KIND_FRAUD,
        amount=amount,
        refund=refund,
        reward=share * count,
        burned=burned,
    )
    self._pay(receipt.payer, refund)
    for verdict: SignedVerdict in verdicts:
        self._pay(verdict.verifier, share)
    self._burn(burned)
    return amount


@external
def slash_lazy_verifier(receipt_hash: bytes32, verifier: address, signature: Bytes[65]) -> uint256:
    """
    @dev Slashes a verifier that signed `Verdict(valid=true)` for a
         receipt proven fraudulent here. Anyone may submit; the
         caller earns the challenger reward, the rest is burned,
         the verifier is jailed.
    @param receipt_hash The EIP-712 struct hash of the fraudulent receipt.
    @param verifier The verifier.
    @param signature Its `Verdict(receipt_hash, valid=true)` signature.
    @return uint256 The amount slashed.
    """
    proven_at: uint256 = self.fraud_proven_at[receipt_hash]
    assert proven_at != 0, "NodeStaking: receipt not proven fraudulent"
    self._check_fresh(convert(proven_at, uint64))
    assert self.nodes[verifier].role == ROLE_VERIFIER, "NodeStaking: not a verifier"
    assert signatures._is_valid_signature_now(
        verifier, self._verdict_digest(receipt_hash, True), signature
    ), "NodeStaking: invalid verdict signature"
    evidence: bytes32 = keccak256(abi_encode(KIND_LAZY_VERIFIER, receipt_hash, verifier))
    self._use_evidence(evidence)
    amount: uint256 = self._slash(verifier, self.fraud_slash_bps)
    reward: uint256 = amount * self.challenger_reward_bps // BPS
    burned: uint256 = amount - reward
    log Slashed(
        node=verifier, evidence=evidence, kind=KIND_LAZY_VERIFIER, amount=amount, refund=0, reward=reward, burned=burned
    )
    self._pay(msg.sender, reward)
    self._burn(burned)
    return amount


@external
def sync_verifier(account: address):
    """
    @dev Reports `account`'s current active stake to the distributor,
         e.g. after the owner raised the verifiers' minimum stake.
    @notice Anyone may call it; it only re-reads this contract's state.
    @param account A registered verifier.
    """
    assert self.nodes[account].role == ROLE_VERIFIER, "NodeStaking: not a verifier"
    self._sync_verifier(account)


@external
@view
def is_active(account: address) -> bool:
    """
    @dev True for a registered, unjailed account whose active stake
         meets its role's minimum.
    @param account The account.
    @return bool Whether it is active.
    """
    return self._is_active_as(account, self.nodes[account].role)


@external
@view
def is_active_as(account: address, role: uint8) -> bool:
    """
    @dev `is_active` for a given role (the escrow asks for INFERENCE).
    @param account The account.
    @param role The role it must have.
    @return bool Whether it is active in `role`.
    """
    return self._is_active_as(account, role)


@external
@view
def receipt_hash(receipt: Receipt) -> bytes32:
    """
    @dev The EIP-712 struct hash of a Receipt (what Verdicts sign).
    @param receipt The receipt.
    @return bytes32 Its struct hash.
    """
    return self._receipt_hash(receipt)


@external
@view
def receipt_digest(receipt: Receipt) -> bytes32:
    """
    @dev The EIP-712 digest a node signs for `receipt`.
    @param receipt The receipt.
    @return bytes32 The digest.
    """
    return eip712._hash_typed_data_v4(self._receipt_hash(receipt))


@external
@view
def verdict_digest(receipt_hash: bytes32, valid: bool) -> bytes32:
    """
    @dev The EIP-712 digest a verifier signs.
    @param receipt_hash The receipt's struct hash.
    @param valid The verdict.
    @return bytes32 The digest.
    """
    return self._verdict_digest(receipt_hash, valid)


@external
def set_min_stake(role: uint8, amount: uint256):
    """
    @dev Sets a role's minimum stake.
    @notice Only the owner. Bounds: a valid role, amount > 0.
    @param role ROLE_INFERENCE or ROLE_VERIFIER.
    @param amount The minimum stake.
    """
    ownable._check_owner()
    self._set_min_stake(role, amount)


@external
def set_periods(dispute_window_: uint256, unbonding_period_: uint256):
    """
    @dev Sets the dispute window and the unbonding period.
    @notice Only the owner. Bounds: 60 s <= dispute window <= 30 days,
            dispute window <= unbonding period <= 60 days.
    @param dispute_window_ The dispute window.
    @param unbonding_period_ The unbonding period.
    """
    ownable._check_owner()
    self._set_periods(dispute_window_, unbonding_period_)


@external
def set_slashing(equivocation_slash_bps_: uint256, fraud_slash_bps_: uint256, challenger_reward_bps_: uint256):
    """
    @dev Sets the slash sizes and the challenger reward.
    @notice Only the owner. Bounds: slashes 1..10,000 bps, reward <= 5,000 bps.
    @param equivocation_slash_bps_ The equivocation slash.
    @param fraud_slash_bps_ The fraud and lazy-verifier slash.
    @param challenger_reward_bps_ The challenger reward.
    """
    ownable._check_owner()
    self._set_slashing(equivocation_slash_bps_, fraud_slash_bps_, challenger_reward_bps_)


@external
def set_fraud_quorum(fraud_quorum_: uint256):
    """
    @dev Sets how many distinct verifiers prove fraud.
    @notice Only the owner. Bounds: 1..16.
    @param fraud_quorum_ The quorum.
    """
    ownable._check_owner()
    self._set_fraud_quorum(fraud_quorum_)


@internal
def _set_min_stake(role: uint8, amount: uint256):
    """
    @dev Validates and stores a role's minimum stake.
    """
    assert role == ROLE_INFERENCE or role == ROLE_VERIFIER, "NodeStaking: invalid role"
    assert amount > 0, "NodeStaking: min stake out of bounds"
    self.min_stake[role] = amount
    log MinStakeUpdated(role=role, amount=amount)


@internal
def _set_periods(dispute_window_: uint256, unbonding_period_: uint256):
    """
    @dev Validates and stores the periods.
    """
    assert (
        dispute_window_ >= MIN_DISPUTE_WINDOW and dispute_window_ <= MAX_DISPUTE_WINDOW
    ), "NodeStaking: dispute window out of bounds"
    assert (
        unbonding_period_ >= dispute_window_ and unbonding_period_ <= MAX_UNBONDING_PERIOD
    ), "NodeStaking: unbonding period out of bounds"
    self.dispute_window = dispute_window_
    self.unbonding_period = unbonding_period_
    log PeriodsUpdated(dispute_window=dispute_window_, unbonding_period=unbonding_period_)


@internal
def _set_slashing(equivocation_slash_bps_: uint256, fraud_slash_bps_: uint256, challenger_reward_bps_: uint256):
    """
    @dev Validates and stores the slashing parameters.
    """
    assert (
        equivocation_slash_bps_ > 0 and equivocation_slash_bps_ <= BPS
    ), "NodeStaking: equivocation slash out of bounds"
    assert fraud_slash_bps_ > 0 and fraud_slash_bps_ <= BPS, "NodeStaking: fraud slash out of bounds"
    assert challenger_reward_bps_ <= MAX_CHALLENGER_REWARD_BPS, "NodeStaking: challenger reward out of bounds"
    self.equivocation_slash_bps = equivocation_slash_bps_
    self.fraud_slash_bps = fraud_slash_bps_
    self.challenger_reward_bps = challenger_reward_bps_
    log SlashingUpdated(
        equivocation_slash_bps=equivocation_slash_bps_,
        fraud_slash_bps=fraud_slash_bps_,
        challenger_reward_bps=challenger_reward_bps_,
    )


@internal
def _set_fraud_quorum(fraud_quorum_: uint256):
    """
    @dev Validates and stores the fraud quorum.
    """
    assert fraud_quorum_ >= 1 and fraud_quorum_ <= MAX_VERDICTS, "NodeStaking: fraud quorum out of bounds"
    self.fraud_quorum = fraud_quorum_
    log FraudQuorumUpdated(fraud_quorum=fraud_quorum_)


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
def _check_fresh(timestamp: uint64):
    """
    @dev Refuses evidence older than the dispute window.
    """
    assert convert(timestamp, uint256) + self.dispute_window >= block.timestamp, "NodeStaking: evidence too old"


@internal
@view
def _check_receipt_signature(node: address, receipt_hash: bytes32, signature: Bytes[65]):
    """
    @dev Refuses a receipt not signed by its node.
    """
    assert signatures._is_valid_signature_now(
        node, eip712._hash_typed_data_v4(receipt_hash), signature
    ), "NodeStaking: invalid receipt signature"


@internal
def _use_evidence(evidence: bytes32):
    """
    @dev Marks evidence used, refusing it the second time.
    """
    assert not self.evidence_used[evidence], "NodeStaking: evidence already used"
    self.evidence_used[evidence] = True


@internal
def _slash(account: address, bps: uint256) -> uint256:
    """
    @dev Takes `bps` of active plus unbonding stake (rounded up),
         active stake first, and jails the account.
    @return uint256 The amount taken.
    """
    node: Node = self.nodes[account]
    total: uint256 = node.stake + node.unbonding
    assert total > 0, "NodeStaking: nothing to slash"
    amount: uint256 = min((total * bps + BPS - 1) // BPS, total)
    from_stake: uint256 = min(amount, node.stake)
    node.stake -= from_stake
    node.unbonding -= amount - from_stake
    if not node.jailed:
        node.jailed = True
        log Jailed(node=account)
    self.nodes[account] = node
    self._sync_verifier(account)
    return amount


@internal
def _sync_verifier(account: address):
    """
    @dev Reports a verifier's active stake (0 unless active) to the distributor.
    """
    if self.nodes[account].role == ROLE_VERIFIER:
        stake: uint256 = 0
        if self._is_active_as(account, ROLE_VERIFIER):
            stake = self.nodes[account].stake
        extcall distributor.on_verifier_stake_change(account, stake)


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
