# pragma version ~=0.4.3
# pragma nonreentrancy on
# SPDX-License-Identifier: AGPL-3.0-only
"""
@title OPG credit escrow
@custom:contract-name CreditEscrow
@license GNU Affero General Public License v3.0 only
@notice Payers prepay OPG credits here and sign cumulative Vouchers
        `Voucher(payer, node, maxCumulative)` (EIP-712 domain
        "OPG Credit Escrow" "1"): the node may have been paid at most
        `maxCumulative` in total, ever, on the (payer, node) channel.
        `settle_batch` (anyone) pays each claim's increase over what
        the channel already paid; stale claims and broke payers are
        skipped, never partially paid, so one bad claim never blocks
        a batch. Fees go to the RewardDistributor in one transfer per
        batch, and one packed `BatchSettled` log per batch records who
        paid what. Voucher signatures are ECDSA only (the payer's key
        or a session key's), compact (EIP-2098), and count whether or
        not the payer's address has code: no payer can repudiate a
        voucher after being served. Session keys carry an expiry and
        an allowance; settlement charges a session-signed claim to the
        key's allowance. Increases apply at once, decreases only
        through revocation, one thaw period later. Withdrawals thaw
        first and a ready request expires one thaw period after it
        became ready, so no standing instant exit exists; settlement
        may draw on thawing credits. NodeStaking voids the unsettled
        charges a fraud proof covers, so fraudulent work is never paid.
        Priority for promised credits: only a facilitator (the
        relayer whose `/verify` promised the credits; set at
        deployment, changed only through the timelock queue) settles
        at once. Anyone else first proposes a batch (`propose_batch`,
        announced by `BatchProposed`) and settles exactly that batch
        between `claim_delay` and two claim delays later: in between,
        the facilitator settles every claim it promised for those
        payers, so a payer cannot spend credits a node was promised
        by settling them to another node first.
        A channel's settlement by proposal (a node settling its own
        vouchers, whose receipts no verifier may have seen) holds the
        channel's evidence mark for `dispute_window + MAX_FUTURE`:
        until then a facilitator's settlement leaves the mark alone and
        another proposal's claim on the channel is skipped (reason 6)
        unless settled in the same second, so no later settlement of
        the channel dates the self-settled range out of its window.
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
    def receiveWithAuthorization(
        owner: address,
        to: address,
        amount: uint256,
        valid_after: uint256,
        valid_before: uint256,
        nonce: bytes32,
        v: uint8,
        r: bytes32,
        s: bytes32,
    ): nonpayable


interface INodeStaking:
    def pay_capacity(node: address) -> uint256: view
    def record_pay(node: address, amount: uint256): nonpayable
    def dispute_window() -> uint256: view
    def MAX_FUTURE() -> uint256: view


interface IRewardDistributor:
    def credit_fees(nodes: DynArray[address, MAX_CLAIMS], amounts: DynArray[uint256, MAX_CLAIMS]): nonpayable


# @dev One voucher-backed claim of a batch; the voucher signature is
# EIP-2098 compact (`r`, `vs` = s | (v - 27) << 255).
struct Claim:
    payer: address
    node: address
    max_cumulative: uint256
    r: bytes32
    vs: bytes32
    total: uint256


# @dev A pending withdrawal.
struct Withdrawal:
    amount: uint256
    ready_at: uint256


# @dev The most claims in one batch.
MAX_CLAIMS: public(constant(uint256)) = 256


# @dev The most facilitators set at deployment.
MAX_FACILITATORS: public(constant(uint256)) = 8


# @dev Least `claim_delay` (a few blocks); its upper bound is a quarter of the thaw period.
MIN_CLAIM_DELAY: public(constant(uint256)) = 5


# @dev `claim_delay` may be at most the thaw period divided by this.
_CLAIM_DELAY_DIVISOR: constant(uint256) = 4


# @dev The claim delay at deployment is the thaw period divided by this.
_DEFAULT_CLAIM_DELAY_DIVISOR: constant(uint256) = 8


# @dev Low 64 bits of a packed proposal word (its due time); the expiry is above them.
_TIME_BITS: constant(uint256) = 64
_TIME_MASK: constant(uint256) = 2**64 - 1


# @dev Hard bounds of `thaw_period`.
MIN_THAW_PERIOD: public(constant(uint256)) = 60
MAX_THAW_PERIOD: public(constant(uint256)) = 30 * 86_400


# @dev How much longer than the longest period the governance delay must be.
DELAY_MARGIN: public(constant(uint256)) = 86_400


# @dev Claim outcomes (`settle_batch` return values, `ClaimSkipped.reason`).
SETTLED: public(constant(uint8)) = 0
SKIP_STALE: public(constant(uint8)) = 1
SKIP_NODE_NOT_PAYABLE: public(constant(uint8)) = 2
SKIP_BAD_SIGNATURE: public(constant(uint8)) = 3
SKIP_INSUFFICIENT_BALANCE: public(constant(uint8)) = 4
SKIP_ALLOWANCE_EXCEEDED: public(constant(uint8)) = 5
SKIP_CHANNEL_HELD: public(constant(uint8)) = 6


# @dev Low 192 bits of a packed slot (amounts); the high 64 bits hold a time.
_LOW_MASK: constant(uint256) = 2**192 - 1


# @dev Mask of a channel's `spent` (low 96 bits, more than the OPG supply) and of its `spent` before its last settlement.
_SPENT_MASK: constant(uint256) = 2**96 - 1


# @dev Bits 192..254 of a channel slot: the time of its mark (its last settlement, or its held self-settlement).
_SETTLED_SHIFT: constant(uint256) = 192
_SETTLED_MASK: constant(uint256) = 2**63 - 1


# @dev Bit 255 of a channel slot: its mark was set by a settlement by proposal.
_BY_PROPOSAL_SHIFT: constant(uint256) = 255


# @dev Low 96 bits: the amount half of a `BatchSettled.settled` word.
_AMOUNT_BITS: constant(uint256) = 96


# @dev Low 255 bits of an EIP-2098 `vs`.
_S_MASK: constant(uint256) = 2**255 - 1


# @dev EIP-712 type hash of `Voucher`.
VOUCHER_TYPEHASH: public(constant(bytes32)) = keccak256("Voucher(address payer,address node,uint256 maxCumulative)")


# @dev The OPG token.
token: public(immutable(IOPG))


# @dev The NodeStaking: asked whether a claim's node may be paid, and the only caller of `void_charges`.
staking: public(immutable(INodeStaking))


# @dev The RewardDistributor, receiving every settled fee.
distributor: public(immutable(IRewardDistributor))


# @dev A payer's credits (including credits thawing for withdrawal).
balance_of: public(HashMap[address, uint256])


# @dev A channel packed in one slot: what it has paid in total, ever
# (low 96 bits, `spent`), and its evidence mark: its `spent` before its
# last settlement (next 96 bits), when it last settled (bits 192..254,
# `settled_at`) and whether that settlement was by proposal (bit 255).
# A mark set by proposal is held `dispute_window + MAX_FUTURE`: a
# facilitator's settlement meanwhile moves only `spent`.
_channel: HashMap[address, HashMap[address, uint256]]


# @dev Charges of a channel that a fraud proof voided (never paid, never refundable).
voided: public(HashMap[address, HashMap[address, uint256]])


# @dev When a node was last paid by any channel (NodeStaking keeps its stake a dispute window longer).
node_settled_at: public(HashMap[address, uint256])


# @dev A payer's pending withdrawal.
withdrawal_of: public(HashMap[address, Withdrawal])


# @dev A payer's session key packed in one slot: remaining allowance
# (low 192 bits) and the time (exclusive) until which it signs (high 64 bits).
_signer: HashMap[address, HashMap[address, uint256]]


# @dev How long credits thaw before withdrawal, a ready request stays
# ready, and revoked session keys linger.
thaw_period: public(uint256)


# @dev Accounts that may call `settle_batch` without a proposal (the relayers).
is_facilitator: public(HashMap[address, bool])


# @dev How long a proposed batch waits before anyone may settle it (and
# how long after that it stays executable).
claim_delay: public(uint256)


# @dev Proposed batches by id (keccak256 of `abi_encode(claims, receipts_root)`):
# due time (low 64 bits) and expiry (exclusive, high bits); 0 if none.
_proposal: HashMap[bytes32, uint256]


event Deposited:
    payer: indexed(address)
    funder: indexed(address)
    amount: uint256
    balance: uint256


event WithdrawalRequested:
    payer: indexed(address)
    amount: uint256
    ready_at: uint256
    expires_at: uint256


event WithdrawalCanceled:
    payer: indexed(address)


event Withdrawn:
    payer: indexed(address)
    amount: uint256


event SignerAuthorized:
    payer: indexed(address)
    signer: indexed(address)
    expiry: uint256
    allowance: uint256


event ClaimSkipped:
    payer: indexed(address)
    node: indexed(address)
    total: uint256
    reason: uint8


event BatchSettled:
    receipts_root: indexed(bytes32)
    submitter: indexed(address)
    amount: uint256
    settled: DynArray[uint256, MAX_CLAIMS]
    runs: DynArray[uint256, MAX_CLAIMS]


event ChargesVoided:
    payer: indexed(address)
    node: indexed(address)
    amount: uint256
    spent: uint256


event ThawPeriodUpdated:
    thaw_period: uint256


event BatchProposed:
    id: indexed(bytes32)
    proposer: indexed(address)
    due_at: uint256
    expires_at: uint256
    receipts_root: bytes32
    claims: DynArray[Claim, MAX_CLAIMS]


event FacilitatorUpdated:
    account: indexed(address)
    enabled: bool


event ClaimDelayUpdated:
    claim_delay: uint256


@deploy
def __init__(
    token_: IOPG,
    staking_: INodeStaking,
    distributor_: IRewardDistributor,
    thaw_period_: uint256,
    delay_: uint256,
    facilitators_: DynArray[address, MAX_FACILITATORS],
):
    """
    @dev Sets the token, the staking and distributor contracts, the
         thaw period, the governance delay and the facilitators; the
         claim delay starts at an eighth of the thaw period; the
         deployer becomes the owner.
    @param token_ The OPG token.
    @param staking_ The NodeStaking.
    @param distributor_ The RewardDistributor.
    @param thaw_period_ The thaw period (60 s..30 days).
    @param delay_ The governance delay (>= thaw period + 1 day).
    @param facilitators_ The relayer accounts that settle without a
           proposal (at least one).
    """
    assert token_.address != empty(address), "CreditEscrow: token is the zero address"
    assert staking_.address != empty(address), "CreditEscrow: staking is the zero address"
    assert distributor_.address != empty(address), "CreditEscrow: distributor is the zero address"
    ownable.__init__()
    ownable_2step.__init__()
    eip712.__init__("OPG Credit Escrow", "1")
    timelock.__init__()
    token = token_
    staking = staking_
    distributor = distributor_
    self._set_thaw_period(thaw_period_)
    timelock._set_delay(delay_, thaw_period_ + DELAY_MARGIN)
    assert len(facilitators_) > 0, "CreditEscrow: no facilitator"
    for account: address in facilitators_:
        self._set_facilitator(account, True)
    self._set_claim_delay(max(thaw_period_ // _DEFAULT_CLAIM_DELAY_DIVISOR, MIN_CLAIM_DELAY))


@external
def deposit(amount: uint256):
    """
    @dev Adds `amount` OPG from the caller to the caller's credits.
    @notice The caller must have approved this contract.
    @param amount The OPG amount.
    """
    self._deposit(msg.sender, amount)
    assert extcall token.transferFrom(msg.sender, self, amount, default_return_value=True)


@external
def deposit_for(payer: address, amount: uint256):
    """
    @dev Adds `amount` OPG from the caller to `payer`'s credits.
    @notice The caller must have approved this contract.
    @param payer The payer credited.
    @param amount The OPG amount.
    """
    self._deposit(payer, amount)
    assert extcall token.transferFrom(msg.sender, self, amount, default_return_value=True)


@external
def deposit_with_authorization(
    payer: address,
    amount: uint256,
    valid_after: uint256,
    valid_before: uint256,
    nonce: bytes32,
    v: uint8,
    r: bytes32,
    s: bytes32,
):
    """
    @dev Gasless deposit: pulls `amount` OPG from `payer` with its
         EIP-3009 `ReceiveWithAuthorization` (to = this contract)
         and credits `payer`. Anyone (a relayer) may submit it.
    @param payer The payer, signer of the authorisation.
    @param amount The OPG amount.
    @param valid_after EIP-3009 `validAfter`.
    @param valid_before EIP-3009 `validBefore`.
    @param nonce EIP-3009 nonce.
    @param v The secp256k1 recovery id.
    @param r The signature's `r`.
    @param s The signature's `s`.
    """
    self._deposit(payer, amount)
    extcall token.receiveWithAuthorization(payer, self, amount, valid_after, valid_before, nonce, v, r, s)


@external
def request_withdrawal(amount: uint256):
    """
    @dev Starts thawing `amount` of the caller's credits; replaces
         any pending request and restarts the thaw. The request is
         ready after the thaw period and expires one thaw period
         after that. Settlement may still draw on thawing credits,
         and nodes stop serving against them (`available_of`).
    @param amount The amount, at most the caller's credits.
    """
    assert amount > 0, "CreditEscrow: zero amount"
    assert amount <= self.balance_of[msg.sender], "CreditEscrow: amount exceeds balance"
    thaw: uint256 = self.thaw_period
    ready_at: uint256 = block.timestamp + thaw
    self.withdrawal_of[msg.sender] = Withdrawal(amount=amount, ready_at=ready_at)
    log WithdrawalRequested(payer=msg.sender, amount=amount, ready_at=ready_at, expires_at=ready_at + thaw)


@external
def cancel_withdrawal():
    """
    @dev Cancels the caller's pending withdrawal.
    """
    assert self.withdrawal_of[msg.sender].amount > 0, "CreditEscrow: no pending withdrawal"
    self.withdrawal_of[msg.sender] = empty(Withdrawal)
    log WithdrawalCanceled(payer=msg.sender)


@external
def withdraw() -> uint256:
    """
    @dev Pays the caller `min(requested, credits)` once thawed and
         before the request expires.
    @return uint256 The amount paid.
    """
    request: Withdrawal = self.withdrawal_of[msg.sender]
    assert request.amount > 0, "CreditEscrow: no pending withdrawal"
    assert block.timestamp >= request.ready_at, "CreditEscrow: still thawing"
    assert block.timestamp < request.ready_at + self.thaw_period, "CreditEscrow: withdrawal request expired"
    amount: uint256 = min(request.amount, self.balance_of[msg.sender])
    self.withdrawal_of[msg.sender] = empty(Withdrawal)
    self.balance_of[msg.sender] -= amount
    log Withdrawn(payer=msg.sender, amount=amount)
    if amount > 0:
        assert extcall token.transfer(msg.sender, amount, default_return_value=True)
    return amount


@external
def authorize_signer(signer: address, expiry: uint256, allowance: uint256):
    """
    @dev Lets the session key `signer` sign vouchers for the caller
         until `expiry`, for at most `allowance` more in total.
    @notice For a key still in force this may only extend the expiry
            and raise the remaining allowance (a decrease would let a
            payer repudiate vouchers a node already served): reduce a
            key with `revoke_signer`. The expiry must be at least one
            thaw period away, so its vouchers can be settled.
    @param signer The session key (an ECDSA key, not the payer).
    @param expiry The time (exclusive) until which it may sign.
    @param allowance Its remaining allowance after this call.
    """
    assert signer != empty(address), "CreditEscrow: signer is the zero address"
    assert signer != msg.sender, "CreditEscrow: signer is the payer"
    assert expiry >= block.timestamp + self.thaw_period, "CreditEscrow: expiry sooner than the thaw period"
    assert expiry < 2**64 and allowance <= _LOW_MASK, "CreditEscrow: expiry or allowance too large"
    current: uint256 = self._signer[msg.sender][signer]
    if current >> 192 > block.timestamp:
        assert expiry >= current >> 192, "CreditEscrow: expiry decrease needs revocation"
        assert allowance >= current & _LOW_MASK, "CreditEscrow: allowance decrease needs revocation"
    self._signer[msg.sender][signer] = expiry << 192 | allowance
    log SignerAuthorized(payer=msg.sender, signer=signer, expiry=expiry, allowance=allowance)


@external
def revoke_signer(signer: address):
    """
    @dev Revokes `signer`, effective one thaw period from now (or at
         its expiry if sooner); its allowance stays until then.
    @param signer The session key.
    """
    current: uint256 = self._signer[msg.sender][signer]
    expiry: uint256 = current >> 192
    assert expiry > block.timestamp, "CreditEscrow: signer not authorized"
    effective: uint256 = min(expiry, block.timestamp + self.thaw_period)
    allowance: uint256 = current & _LOW_MASK
    self._signer[msg.sender][signer] = effective << 192 | allowance
    log SignerAuthorized(payer=msg.sender, signer=signer, expiry=effective, allowance=allowance)


@external
def settle_batch(claims: DynArray[Claim, MAX_CLAIMS], receipts_root: bytes32) -> DynArray[uint8, MAX_CLAIMS]:
    """
    @dev Settles voucher claims. For each claim with a valid voucher
         signature and a payable node (registered for inference, not
         jailed, the claim within its `pay_capacity`: stake that can
         answer for the pay), the channel pays `total - spent` if the payer's
         credits (and, for a session key, its allowance) cover it;
         stale claims, bad signatures, unpayable nodes and broke
         payers are skipped with a `ClaimSkipped` reason, never
         partially paid. Claims ordered by node forward fees once
         per node. One `BatchSettled` log, only if something settled,
         packs each settled claim as `payer << 96 | amount` and each
         node run as `node << 96 | settled claims in the run`.
    @notice A facilitator settles any batch at once; anyone else
            (a node settling its own vouchers) only a batch proposed
            with `propose_batch`, from its due time until it expires,
            once. Funds only ever go from the voucher's payer to the
            voucher's node. A claim settled through a proposal holds
            its channel's evidence mark (`held_until`): until then a
            facilitator's claim on the channel leaves the mark alone,
            and another proposal's claim is skipped (reason 6) unless
            it settles in the same second.
    @param claims The claims, `total <= max_cumulative` each.
    @param receipts_root Merkle root of the receipts the batch covers.
    @return DynArray The outcome of each claim (0 = settled).
    """
    assert len(claims) > 0, "CreditEscrow: empty batch"
    proposed: bool = not self.is_facilitator[msg.sender]
    if proposed:
        self._consume_proposal(claims, receipts_root)
    outcomes: DynArray[uint8, MAX_CLAIMS] = []
    nodes: DynArray[address, MAX_CLAIMS] = []
    amounts: DynArray[uint256, MAX_CLAIMS] = []
    settled: DynArray[uint256, MAX_CLAIMS] = []
    runs: DynArray[uint256, MAX_CLAIMS] = []
    current_node: address = empty(address)
    node_capacity: uint256 = 0
    node_amount: uint256 = 0
    run_count: uint256 = 0
    batch_amount: uint256 = 0
    count: uint256 = len(claims)
    for i: uint256 in range(count, bound=MAX_CLAIMS):
        claim: Claim = claims[i]
        assert claim.total <= claim.max_cumulative, "CreditEscrow: total exceeds voucher"
        if claim.node != current_node:
            current_node = claim.node
            node_capacity = staticcall staking.pay_capacity(current_node)
        outcome: uint8 = SETTLED
        delta: uint256 = 0
        outcome, delta = self._settle(claim, node_capacity, proposed)
        outcomes.append(outcome)
        if outcome == SETTLED:
            node_capacity -= delta
            node_amount += delta
            run_count += 1
            settled.append(convert(claim.payer, uint256) << _AMOUNT_BITS | delta)
        if run_count > 0 and (i + 1 == count or claims[i + 1].node != current_node):
            nodes.append(current_node)
            amounts.append(node_amount)
            runs.append(convert(current_node, uint256) << _AMOUNT_BITS | run_count)
            self.node_settled_at[current_node] = block.timestamp
            extcall staking.record_pay(current_node, node_amount)
            batch_amount += node_amount
            node_amount = 0
            run_count = 0
    if len(settled) > 0:
        log BatchSettled(
            receipts_root=receipts_root, submitter=msg.sender, amount=batch_amount, settled=settled, runs=runs
        )
        assert extcall token.transfer(distributor.address, batch_amount, default_return_value=True)
        extcall distributor.credit_fees(nodes, amounts)
    return outcomes


@external
def propose_batch(claims: DynArray[Claim, MAX_CLAIMS], receipts_root: bytes32) -> bytes32:
    """
    @dev Announces a batch that anyone may settle from `claim_delay`
         from now until one more `claim_delay` later (`BatchProposed`
         carries the claims, so the facilitator can settle what it
         promised those payers first). Proposing an unexpired batch
         again reverts; a lapsed one may be proposed again.
    @notice Anyone. Nothing is checked or reserved here: the claims
            are judged when the batch is settled.
    @param claims The claims `settle_batch` will be called with.
    @param receipts_root The Merkle root it will be called with.
    @return bytes32 The proposal's id.
    """
    assert len(claims) > 0, "CreditEscrow: empty batch"
    id: bytes32 = keccak256(abi_encode(claims, receipts_root))
    assert self._proposal[id] >> _TIME_BITS <= block.timestamp, "CreditEscrow: batch already proposed"
    delay: uint256 = self.claim_delay
    due_at: uint256 = block.timestamp + delay
    expires_at: uint256 = due_at + delay
    self._proposal[id] = expires_at << _TIME_BITS | due_at
    log BatchProposed(
        id=id, proposer=msg.sender, due_at=due_at, expires_at=expires_at, receipts_root=receipts_root, claims=claims
    )
    return id


@external
@view
def proposal_of(id: bytes32) -> (uint256, uint256):
    """
    @dev A proposed batch's due time and expiry (exclusive).
    @param id The proposal's id (`proposal_id` of its claims and root).
    @return (uint256, uint256) The due time and the expiry; zeros if
            none is recorded.
    """
    packed: uint256 = self._proposal[id]
    return packed & _TIME_MASK, packed >> _TIME_BITS


@external
@pure
def proposal_id(claims: DynArray[Claim, MAX_CLAIMS], receipts_root: bytes32) -> bytes32:
    """
    @dev The id of a batch proposal.
    @param claims The claims.
    @param receipts_root The receipts root.
    @return bytes32 keccak256 of `abi_encode(claims, receipts_root)`.
    """
    return keccak256(abi_encode(claims, receipts_root))


@external
def void_charges(payer: address, node: address, cumulative: uint256) -> (uint256, uint256):
    """
    @dev Voids a channel's charges up to `cumulative` after a fraud
         proof: `spent` becomes `max(spent, cumulative)` so no voucher
         can pay that work any more, and the increase is recorded in
         `voided`.
    @notice Only the NodeStaking.
    @param payer The payer.
    @param node The node proven fraudulent.
    @param cumulative The fraudulent receipt's cumulative charge.
    @return (uint256, uint256) `spent` and `voided` before the call.
    """
    assert msg.sender == staking.address, "CreditEscrow: caller is not the staking"
    packed: uint256 = self._channel[payer][node]
    spent_before: uint256 = packed & _SPENT_MASK
    voided_before: uint256 = self.voided[payer][node]
    if cumulative > spent_before:
        new_spent: uint256 = min(cumulative, _SPENT_MASK)
        self._channel[payer][node] = (packed >> 96) << 96 | new_spent
        self.voided[payer][node] = voided_before + new_spent - spent_before
        log ChargesVoided(payer=payer, node=node, amount=new_spent - spent_before, spent=new_spent)
    return spent_before, voided_before


@external
def queue_change(call: Bytes[164]) -> bytes32:
    """
    @dev Queues a parameter change: the calldata of `set_thaw_period`
         or `set_delay`, executable by anyone once due.
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
def set_thaw_period(thaw_period_: uint256):
    """
    @dev Sets the thaw period for requests and revocations made
         afterwards.
    @notice Anyone, once the owner's queued change is due. Bounds:
            60 s..30 days, and at most the delay minus one day. A
            claim delay above a quarter of the new thaw period is
            lowered to it.
    @param thaw_period_ The thaw period.
    """
    timelock._execute(keccak256(slice(msg.data, 0, 36)))
    assert thaw_period_ + DELAY_MARGIN <= timelock.delay, "CreditEscrow: thaw period above the delay"
    self._set_thaw_period(thaw_period_)
    if self.claim_delay * _CLAIM_DELAY_DIVISOR > thaw_period_:
        self._set_claim_delay(thaw_period_ // _CLAIM_DELAY_DIVISOR)


@external
def set_facilitator(account: address, enabled: bool):
    """
    @dev Adds or removes a facilitator.
    @notice Anyone, once the owner's queued change is due.
    @param account The relayer account.
    @param enabled Whether it settles without a proposal.
    """
    timelock._execute(keccak256(slice(msg.data, 0, 68)))
    self._set_facilitator(account, enabled)


@external
def set_claim_delay(claim_delay_: uint256):
    """
    @dev Sets the claim delay for proposals made afterwards.
    @notice Anyone, once the owner's queued change is due. Bounds:
            `MIN_CLAIM_DELAY`..a quarter of the thaw period.
    @param claim_delay_ The claim delay.
    """
    timelock._execute(keccak256(slice(msg.data, 0, 36)))
    self._set_claim_delay(claim_delay_)


@external
def set_delay(delay_: uint256):
    """
    @dev Sets the governance delay.
    @notice Anyone, once the owner's queued change is due. Bounds:
            at least the thaw period + 1 day, at most 90 days.
    @param delay_ The delay.
    """
    timelock._execute(keccak256(slice(msg.data, 0, 36)))
    timelock._set_delay(delay_, self.thaw_period + DELAY_MARGIN)


@external
@view
def spent(payer: address, node: address) -> uint256:
    """
    @dev What a channel has paid in total, ever (voided charges included).
    @param payer The payer.
    @param node The node.
    @return uint256 The channel's total.
    """
    return self._channel[payer][node] & _SPENT_MASK


@external
@view
def settled_at(payer: address, node: address) -> uint256:
    """
    @dev When a channel last settled (0 if never).
    @param payer The payer.
    @param node The node.
    @return uint256 The timestamp.
    """
    return (self._channel[payer][node] >> _SETTLED_SHIFT) & _SETTLED_MASK


@external
@view
def last_settlement(payer: address, node: address) -> (uint256, uint256):
    """
    @dev A channel's evidence mark: when it last settled and its
         `spent` before that settlement, or, while a settlement by
         proposal is held (`held_until`), that settlement's time and
         spent before it. Charges at or below it were paid earlier
         (NodeStaking dates their evidence from the receipt, not from
         this settlement).
    @param payer The payer.
    @param node The node.
    @return (uint256, uint256) The timestamp (0 if never) and the spent before.
    """
    packed: uint256 = self._channel[payer][node]
    return (packed >> _SETTLED_SHIFT) & _SETTLED_MASK, (packed >> _AMOUNT_BITS) & _SPENT_MASK


@external
@view
def held_until(payer: address, node: address) -> uint256:
    """
    @dev Until when (inclusive) a channel's settlement by proposal
         holds its evidence mark: a proposal's claim on the channel
         settling before then, and not in the same second, is skipped
         (reason 6). 0 if its mark was not set by a proposal.
    @param payer The payer.
    @param node The node.
    @return uint256 The last second of the hold, or 0.
    """
    packed: uint256 = self._channel[payer][node]
    if packed >> _BY_PROPOSAL_SHIFT == 0:
        return 0
    return self._held_until(packed)


@external
@view
def signer_of(payer: address, signer: address) -> (uint256, uint256):
    """
    @dev A session key's expiry and remaining allowance.
    @param payer The payer.
    @param signer The session key.
    @return (uint256, uint256) The expiry (exclusive) and the allowance.
    """
    packed: uint256 = self._signer[payer][signer]
    return packed >> 192, packed & _LOW_MASK


@external
@view
def available_of(payer: address) -> uint256:
    """
    @dev Credits a node may serve new requests against: the balance
         less a pending or ready, unexpired withdrawal request.
    @param payer The payer.
    @return uint256 The available credits.
    """
    balance: uint256 = self.balance_of[payer]
    request: Withdrawal = self.withdrawal_of[payer]
    if request.amount > 0 and block.timestamp < request.ready_at + self.thaw_period:
        return balance - min(balance, request.amount)
    return balance


@external
@view
def voucher_digest(payer: address, node: address, max_cumulative: uint256) -> bytes32:
    """
    @dev The EIP-712 digest a payer (or its session key) signs.
    @param payer The payer.
    @param node The node.
    @param max_cumulative The channel's cap.
    @return bytes32 The digest.
    """
    return self._voucher_digest(payer, node, max_cumulative)


@external
@view
def voucher_signer(payer: address, node: address, max_cumulative: uint256, r: bytes32, vs: bytes32) -> address:
    """
    @dev Who would be charged for a voucher now: the payer for its
         own signature, the session key for an unexpired key's
         signature, the zero address if neither.
    @param payer The payer.
    @param node The node.
    @param max_cumulative The channel's cap.
    @param r The compact signature's `r`.
    @param vs The compact signature's `vs`.
    @return address The payer, the session key, or the zero address.
    """
    signer: address = self._recover(self._voucher_digest(payer, node, max_cumulative), r, vs)
    if signer == payer or (signer != empty(address) and self._signer[payer][signer] >> 192 > block.timestamp):
        return signer
    return empty(address)


@internal
@view
def _held_until(packed: uint256) -> uint256:
    """
    @dev The last second a channel's mark is held: its time plus
         NodeStaking's `dispute_window + MAX_FUTURE` (a receipt it
         dates stays provable that long).
    @param packed The channel slot.
    @return uint256 The last second of the hold.
    """
    return (
        ((packed >> _SETTLED_SHIFT) & _SETTLED_MASK)
        + (staticcall staking.dispute_window())
        + (staticcall staking.MAX_FUTURE())
    )


@internal
def _settle(claim: Claim, node_capacity: uint256, proposed: bool) -> (uint8, uint256):
    """
    @dev Settles one claim or says why it is skipped. A settlement
         moves the channel's evidence mark to `(spent before it, now,
         proposed)` unless a settlement by proposal holds the mark
         (`held_until`): then the mark stays, and a proposal's claim
         is skipped unless it settles in the same second as the mark.
    @param claim The claim.
    @param node_capacity What the node may still be paid.
    @param proposed Whether the batch is settled through a proposal.
    @return (uint8, uint256) The outcome and the amount paid.
    """
    packed: uint256 = self._channel[claim.payer][claim.node]
    previous: uint256 = packed & _SPENT_MASK
    mark: uint256 = (
        block.timestamp << _SETTLED_SHIFT | convert(proposed, uint256) << _BY_PROPOSAL_SHIFT | previous << _AMOUNT_BITS
    )
    held: bool = packed >> _BY_PROPOSAL_SHIFT != 0 and block.timestamp <= self._held_until(packed)
    if held:
        mark = (packed >> _AMOUNT_BITS) << _AMOUNT_BITS
    reason: uint8 = SETTLED
    if claim.total <= previous or claim.total > _SPENT_MASK:
        reason = SKIP_STALE
    elif held and proposed and (packed >> _SETTLED_SHIFT) & _SETTLED_MASK != block.timestamp:
        reason = SKIP_CHANNEL_HELD
    elif claim.total - previous > node_capacity:
        reason = SKIP_NODE_NOT_PAYABLE
    else:
        signer: address = self._recover(
            self._voucher_digest(claim.payer, claim.node, claim.max_cumulative), claim.r, claim.vs
        )
        delta: uint256 = claim.total - previous
        balance: uint256 = self.balance_of[claim.payer]
        key: uint256 = 0
        if signer == empty(address):
            reason = SKIP_BAD_SIGNATURE
        elif signer != claim.payer:
            key = self._signer[claim.payer][signer]
            if key >> 192 <= block.timestamp:
                reason = SKIP_BAD_SIGNATURE
        if reason == SETTLED:
            if balance < delta:
                reason = SKIP_INSUFFICIENT_BALANCE
            elif key != 0:
                if key & _LOW_MASK < delta:
                    reason = SKIP_ALLOWANCE_EXCEEDED
                else:
                    self._signer[claim.payer][signer] = key - delta
        if reason == SETTLED:
            self.balance_of[claim.payer] = balance - delta
            self._channel[claim.payer][claim.node] = mark | claim.total
            return SETTLED, delta
    log ClaimSkipped(payer=claim.payer, node=claim.node, total=claim.total, reason=reason)
    return reason, 0


@internal
def _deposit(payer: address, amount: uint256):
    """
    @dev Credits `payer` (the caller moves the tokens afterwards).
    """
    assert payer != empty(address), "CreditEscrow: payer is the zero address"
    assert amount > 0, "CreditEscrow: zero amount"
    balance: uint256 = self.balance_of[payer] + amount
    self.balance_of[payer] = balance
    log Deposited(payer=payer, funder=msg.sender, amount=amount, balance=balance)


@internal
@view
def _voucher_digest(payer: address, node: address, max_cumulative: uint256) -> bytes32:
    """
    @dev The EIP-712 digest of a Voucher.
    """
    return eip712._hash_typed_data_v4(keccak256(abi_encode(VOUCHER_TYPEHASH, payer, node, max_cumulative)))


@internal
@pure
def _recover(digest: bytes32, r: bytes32, vs: bytes32) -> address:
    """
    @dev The ECDSA signer of an EIP-2098 compact signature (low-s
         only), or the zero address.
    """
    word: uint256 = convert(vs, uint256)
    return signatures._try_recover_vrs(digest, 27 + (word >> 255), convert(r, uint256), word & _S_MASK)


@internal
def _set_thaw_period(thaw_period_: uint256):
    """
    @dev Validates and stores the thaw period.
    """
    assert (
        thaw_period_ >= MIN_THAW_PERIOD and thaw_period_ <= MAX_THAW_PERIOD
    ), "CreditEscrow: thaw period out of bounds"
    self.thaw_period = thaw_period_
    log ThawPeriodUpdated(thaw_period=thaw_period_)


@internal
def _set_facilitator(account: address, enabled: bool):
    """
    @dev Records whether `account` settles without a proposal.
    @param account The account.
    @param enabled Whether it is a facilitator.
    """
    assert account != empty(address), "CreditEscrow: facilitator is the zero address"
    self.is_facilitator[account] = enabled
    log FacilitatorUpdated(account=account, enabled=enabled)


@internal
def _set_claim_delay(claim_delay_: uint256):
    """
    @dev Validates and stores the claim delay.
    @param claim_delay_ The claim delay.
    """
    assert (
        claim_delay_ >= MIN_CLAIM_DELAY and claim_delay_ * _CLAIM_DELAY_DIVISOR <= self.thaw_period
    ), "CreditEscrow: claim delay out of bounds"
    self.claim_delay = claim_delay_
    log ClaimDelayUpdated(claim_delay=claim_delay_)


@internal
def _consume_proposal(claims: DynArray[Claim, MAX_CLAIMS], receipts_root: bytes32):
    """
    @dev Uses up the proposal of exactly this batch; reverts unless it
         is due and not expired.
    @param claims The batch's claims.
    @param receipts_root The batch's receipts root.
    """
    id: bytes32 = keccak256(abi_encode(claims, receipts_root))
    packed: uint256 = self._proposal[id]
    assert packed != 0, "CreditEscrow: batch not proposed"
    assert block.timestamp >= packed & _TIME_MASK, "CreditEscrow: proposal not due"
    assert block.timestamp < packed >> _TIME_BITS, "CreditEscrow: proposal expired"
    self._proposal[id] = 0
