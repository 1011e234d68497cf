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
        batch. Withdrawals thaw first, and settlement may still draw
        on thawing credits, so a payer cannot thaw away from vouchers
        it signed. Payers may delegate signing to session signers;
        revoking one takes effect only after the thaw period.
        ERC-1271 wallets may be payers.
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
    def is_active_as(account: address, role: uint8) -> bool: view


interface IRewardDistributor:
    def credit_fees(nodes: DynArray[address, MAX_CLAIMS], amounts: DynArray[uint256, MAX_CLAIMS]): nonpayable


# @dev One voucher-backed claim of a batch.
struct Claim:
    payer: address
    node: address
    max_cumulative: uint256
    signature: Bytes[65]
    total: uint256


# @dev A pending withdrawal.
struct Withdrawal:
    amount: uint256
    ready_at: uint256


# @dev The most claims in one batch.
MAX_CLAIMS: public(constant(uint256)) = 256


# @dev Hard bounds of `thaw_period`.
MIN_THAW_PERIOD: public(constant(uint256)) = 60
MAX_THAW_PERIOD: public(constant(uint256)) = 30 * 86_400


# @dev NodeStaking's inference role.
ROLE_INFERENCE: constant(uint8) = 1


# @dev Claim outcomes (`settle_batch` return values, `ClaimSkipped.reason`).
SETTLED: public(constant(uint8)) = 0
SKIP_STALE: public(constant(uint8)) = 1
SKIP_NODE_NOT_ACTIVE: public(constant(uint8)) = 2
SKIP_BAD_SIGNATURE: public(constant(uint8)) = 3
SKIP_INSUFFICIENT_BALANCE: public(constant(uint8)) = 4


# @dev EIP-712 type hash of `Voucher`.
VOUCHER_TYPEHASH: public(constant(bytes32)) = keccak256("Voucher(address payer,address node,uint256 maxCumulative)")


# @dev The OPG token.
token: public(immutable(IOPG))


# @dev The NodeStaking, asked whether a claim's node is an active inference node.
staking: public(immutable(INodeStaking))


# @dev The RewardDistributor, receiving every settled fee.
distributor: public(immutable(IRewardDistributor))


# @dev A payer's credits (including credits thawing for withdrawal).
balance_of: public(HashMap[address, uint256])


# @dev What a (payer, node) channel has paid in total, ever.
spent: public(HashMap[address, HashMap[address, uint256]])


# @dev A payer's pending withdrawal.
withdrawal_of: public(HashMap[address, Withdrawal])


# @dev Until when a payer's session signer may sign vouchers.
signer_expiry: public(HashMap[address, HashMap[address, uint256]])


# @dev How long credits thaw before withdrawal, and revoked signers linger.
thaw_period: public(uint256)


event Deposited:
    payer: indexed(address)
    funder: indexed(address)
    amount: uint256
    balance: uint256


event WithdrawalRequested:
    payer: indexed(address)
    amount: uint256
    ready_at: uint256


event WithdrawalCanceled:
    payer: indexed(address)


event Withdrawn:
    payer: indexed(address)
    amount: uint256


event SignerAuthorized:
    payer: indexed(address)
    signer: indexed(address)
    expiry: uint256


event ClaimSettled:
    payer: indexed(address)
    node: indexed(address)
    amount: uint256
    total: uint256


event ClaimSkipped:
    payer: indexed(address)
    node: indexed(address)
    total: uint256
    reason: uint8


event BatchSettled:
    receipts_root: indexed(bytes32)
    submitter: indexed(address)
    claims: uint256
    settled: uint256
    amount: uint256


event ThawPeriodUpdated:
    thaw_period: uint256


@deploy
def __init__(token_: IOPG, staking_: INodeStaking, distributor_: IRewardDistributor, thaw_period_: uint256):
    """
    @dev Sets the token, the staking and distributor contracts and
         the thaw period; the deployer becomes the owner.
    @param token_ The OPG token.
    @param staking_ The NodeStaking.
    @param distributor_ The RewardDistributor.
    @param thaw_period_ The thaw period (60 s..30 days).
    """
    assert token_.address != empty(address), "CreditEscrow: token is the zero address"
    assert staking_.address != empty(address), "CreditEscrow: staking is the zero address"
    assert distributor_.address != empty(address), "CreditEscrow: distributor is the zero address"
    ownable.__init__()
    ownable_2step.__init__()
    eip712.__init__("OPG Credit Escrow", "1")
    token = token_
    staking = staking_
    distributor = distributor_
    self._set_thaw_period(thaw_period_)


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
         any pending request and restarts the thaw. Settlement may
         still draw on thawing credits.
    @param amount The amount, at most the caller's credits.
    """
    assert amount > 0, "CreditEscrow: zero amount"
    assert amount <= self.balance_of[msg.sender], "CreditEscrow: amount exceeds balance"
    ready_at: uint256 = block.timestamp + self.thaw_period
    self.withdrawal_of[msg.sender] = Withdrawal(amount=amount, ready_at=ready_at)
    log WithdrawalRequested(payer=msg.sender, amount=amount, ready_at=ready_at)


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
    @dev Pays the caller `min(requested, credits)` once thawed.
    @return uint256 The amount paid.
    """
    request: Withdrawal = self.withdrawal_of[msg.sender]
    assert request.amount > 0, "CreditEscrow: no pending withdrawal"
    assert block.timestamp >= request.ready_at, "CreditEscrow: still thawing"
    amount: uint256 = min(request.amount, self.balance_of[msg.sender])
    self.withdrawal_of[msg.sender] = empty(Withdrawal)
    self.balance_of[msg.sender] -= amount
    log Withdrawn(payer=msg.sender, amount=amount)
    if amount > 0:
        assert extcall token.transfer(msg.sender, amount, default_return_value=True)
    return amount


@external
def authorize_signer(signer: address, expiry: uint256):
    """
    @dev Lets `signer` sign vouchers for the caller until `expiry`.
    @notice Extending takes effect at once; shortening (revoking)
            only after the thaw period, so vouchers already handed
            to nodes stay good for as long as credits could not
            have been withdrawn anyway.
    @param signer The session key.
    @param expiry The last second (exclusive) it may sign.
    """
    assert signer != empty(address), "CreditEscrow: signer is the zero address"
    assert signer != msg.sender, "CreditEscrow: signer is the payer"
    assert expiry > block.timestamp, "CreditEscrow: expiry in the past"
    current: uint256 = self.signer_expiry[msg.sender][signer]
    effective: uint256 = expiry
    if expiry < current:
        effective = max(expiry, min(current, block.timestamp + self.thaw_period))
    self.signer_expiry[msg.sender][signer] = effective
    log SignerAuthorized(payer=msg.sender, signer=signer, expiry=effective)


@external
def revoke_signer(signer: address):
    """
    @dev Revokes `signer`, effective after the thaw period.
    @param signer The session key.
    """
    current: uint256 = self.signer_expiry[msg.sender][signer]
    assert current > block.timestamp, "CreditEscrow: signer not authorized"
    effective: uint256 = min(current, block.timestamp + self.thaw_period)
    self.signer_expiry[msg.sender][signer] = effective
    log SignerAuthorized(payer=msg.sender, signer=signer, expiry=effective)


@external
def settle_batch(claims: DynArray[Claim, MAX_CLAIMS], receipts_root: bytes32) -> DynArray[uint8, MAX_CLAIMS]:
    """
    @dev Settles voucher claims. For each claim with a valid
         voucher signature and an active inference node, the channel
         pays `total - spent` if the payer's credits cover it; stale
         claims, bad signatures, inactive nodes and broke payers are
         skipped with a `ClaimSkipped` reason, never partially paid.
         Claims ordered by node forward fees once per node.
    @notice Anyone may call it (relayer or node); funds only ever go
            from the voucher's payer to the voucher's node.
    @param claims The claims, `total <= max_cumulative` each.
    @param receipts_root Merkle root of the receipts the batch covers.
    @return DynArray The outcome of each claim (0 = settled).
    """
    assert len(claims) > 0, "CreditEscrow: empty batch"
    outcomes: DynArray[uint8, MAX_CLAIMS] = []
    nodes: DynArray[address, MAX_CLAIMS] = []
    amounts: DynArray[uint256, MAX_CLAIMS] = []
    current_node: address = empty(address)
    node_active: bool = False
    node_amount: uint256 = 0
    batch_amount: uint256 = 0
    settled: uint256 = 0
    for claim: Claim in claims:
        assert claim.total <= claim.max_cumulative, "CreditEscrow: total exceeds voucher"
        if claim.node != current_node:
            if node_amount > 0:
                nodes.append(current_node)
                amounts.append(node_amount)
                node_amount = 0
            current_node = claim.node
            node_active = staticcall staking.is_active_as(current_node, ROLE_INFERENCE)
        outcome: uint8 = SETTLED
        delta: uint256 = 0
        outcome, delta = self._settle(claim, node_active)
        outcomes.append(outcome)
        if outcome == SETTLED:
            node_amount += delta
            batch_amount += delta
            settled += 1
    if node_amount > 0:
        nodes.append(current_node)
        amounts.append(node_amount)
    log BatchSettled(
        receipts_root=receipts_root, submitter=msg.sender, claims=len(claims), settled=settled, amount=batch_amount
    )
    if batch_amount > 0:
        assert extcall token.transfer(distributor.address, batch_amount, default_return_value=True)
        extcall distributor.credit_fees(nodes, amounts)
    return outcomes


@external
@view
def voucher_digest(payer: address, node: address, max_cumulative: uint256) -> bytes32:
    """
    @dev The EIP-712 digest a payer (or its session signer) signs.
    @param payer The payer.
    @param node The node.
    @param max_cumulative The channel's cap.
    @return bytes32 The digest.
    """
    return self._voucher_digest(payer, node, max_cumulative)


@external
@view
def is_valid_voucher(payer: address, node: address, max_cumulative: uint256, signature: Bytes[65]) -> bool:
    """
    @dev Whether a voucher signature would be accepted now.
    @param payer The payer.
    @param node The node.
    @param max_cumulative The channel's cap.
    @param signature The payer's, its session signer's or its wallet's signature.
    @return bool Validity now.
    """
    return self._is_valid_voucher(payer, self._voucher_digest(payer, node, max_cumulative), signature)


@external
def set_thaw_period(thaw_period_: uint256):
    """
    @dev Sets the thaw period for withdrawals requested afterwards.
    @notice Only the owner. Bounds: 60 s..30 days.
    @param thaw_period_ The thaw period.
    """
    ownable._check_owner()
    self._set_thaw_period(thaw_period_)


@internal
def _settle(claim: Claim, node_active: bool) -> (uint8, uint256):
    """
    @dev Settles one claim or says why it is skipped.
    @return (uint8, uint256) The outcome and the amount paid.
    """
    previous: uint256 = self.spent[claim.payer][claim.node]
    reason: uint8 = SETTLED
    if claim.total <= previous:
        reason = SKIP_STALE
    elif not node_active:
        reason = SKIP_NODE_NOT_ACTIVE
    elif not self._is_valid_voucher(
        claim.payer, self._voucher_digest(claim.payer, claim.node, claim.max_cumulative), claim.signature
    ):
        reason = SKIP_BAD_SIGNATURE
    else:
        delta: uint256 = claim.total - previous
        balance: uint256 = self.balance_of[claim.payer]
        if balance < delta:
            reason = SKIP_INSUFFICIENT_BALANCE
        else:
            self.balance_of[claim.payer] = balance - delta
            self.spent[claim.payer][claim.node] = claim.total
            log ClaimSettled(payer=claim.payer, node=claim.node, amount=delta, total=claim.total)
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
@view
def _is_valid_voucher(payer: address, digest: bytes32, signature: Bytes[65]) -> bool:
    """
    @dev The payer's own ECDSA key, an unexpired session signer, or
         (for a contract payer) ERC-1271.
    """
    signer: address = signatures._try_recover(digest, signature)
    if signer != empty(address):
        if signer == payer or self.signer_expiry[payer][signer] > block.timestamp:
            return True
    if payer.is_contract:
        return signatures._is_valid_erc1271(payer, digest, signature)
    return False


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
