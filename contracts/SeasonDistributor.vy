# pragma version ~=0.4.3
# pragma nonreentrancy on
# SPDX-License-Identifier: AGPL-3.0-only
"""
@title OPG season distributor
@custom:contract-name SeasonDistributor
@license GNU Affero General Public License v3.0 only
@notice Pays season rewards from one cumulative Merkle root. A leaf is
        `keccak256(keccak256(abi_encode(account, cumulative)))` (the
        OpenZeppelin `StandardMerkleTree` leaf, sorted pairs): what
        `account` has earned over every season so far, so each new
        season's root adds up and an account claims the difference to
        what it already took.
        - The owner proposes a root with the total of its leaves and
          the hash of the public usage table it was built from; it
          becomes claimable only after `root_delay`, during which the
          owner may revoke it and anyone may recompute the table. Once
          the delay is over anyone accepts it.
        - A root is refused, at proposal and at acceptance, unless this
          contract holds enough for every leaf: the root's total less
          what was already paid or expired.
        - Anyone may claim for any account; the OPG goes to the account.
        - Seasons are at least `min_season_length` apart: a root is
          accepted no sooner than that after the previous one.
        - Earnings of season `s` still unclaimed once the root of season
          `s + expiry_seasons` is accepted, and at least `expiry_period`
          (`expiry_seasons * min_season_length`) after season `s`'s root
          was accepted, can be expired by anyone with the account's leaf
          in the root of season `s`; they join the surplus. Expiry is
          measured in time, so publishing seasons back to back cannot
          shorten it. The treasury may take the surplus, which never
          includes an unexpired entitlement.
        - The treasury changes only through the timelock (`queue_change`,
          then `set_treasury` once due), so who may take the surplus is
          public at least `delay` before it applies.
        On every chain but the devnet (31337) a season lasts at least
        seven days and expiry takes at least 30 days.
        The table's cumulative amounts never decrease for an account
        (the off-chain builder refuses otherwise); that is what makes
        `root_total - total_consumed` every account's outstanding sum.
"""

from ethereum.ercs import IERC20

from snekmate.auth import ownable

initializes: ownable

from snekmate.auth import ownable_2step

initializes: ownable_2step[ownable := ownable]

from .modules import timelock

initializes: timelock

from snekmate.utils import merkle_proof_verification as merkle

exports: (
    timelock.delay,
    timelock.queued_eta,
    timelock.GRACE_PERIOD,
    timelock.MIN_DELAY,
    ownable.owner,
    ownable_2step.pending_owner,
    ownable_2step.transfer_ownership,
    ownable_2step.accept_ownership,
    ownable_2step.renounce_ownership,
)


# ------------------------------------------------------------------ constants


# @dev The longest Merkle proof accepted (2**32 accounts).
_MAX_PROOF_LENGTH: constant(uint256) = 32


# @dev The low 128 bits of an `_taken` slot (the claimed half).
_LOW_MASK: constant(uint256) = 2**128 - 1


# @dev The largest cumulative amount a leaf may carry (packs in 128 bits).
_MAX_AMOUNT: constant(uint256) = 2**128 - 1


# @dev Hard bounds of `root_delay`.
MIN_ROOT_DELAY: public(constant(uint256)) = 60
MAX_ROOT_DELAY: public(constant(uint256)) = 30 * 86_400


# @dev Hard bounds of `expiry_seasons`.
MIN_EXPIRY_SEASONS: public(constant(uint256)) = 1
MAX_EXPIRY_SEASONS: public(constant(uint256)) = 100


# @dev Least `min_season_length` on every chain but the devnet (and never
# below `root_delay` on any chain).
MIN_SEASON_LENGTH: public(constant(uint256)) = 7 * 86_400
MAX_SEASON_LENGTH: public(constant(uint256)) = 365 * 86_400


# @dev Least `expiry_period` on every chain but the devnet.
MIN_EXPIRY_PERIOD: public(constant(uint256)) = 30 * 86_400


# @dev How much longer than `root_delay` the governance delay must be at least.
DELAY_MARGIN: public(constant(uint256)) = 86_400


# @dev The local development chain (anvil), where short seasons are allowed.
_DEVNET_CHAIN_ID: constant(uint256) = 31_337


# ------------------------------------------------------------------ storage


# @dev The OPG token the rewards are paid in.
token: public(immutable(IERC20))


# @dev How long a proposed root waits (revocable) before anyone may accept it.
root_delay: public(immutable(uint256))


# @dev After how many later seasons unclaimed earnings may be expired.
expiry_seasons: public(immutable(uint256))


# @dev The least time between two accepted roots.
min_season_length: public(immutable(uint256))


# @dev The least time between a season's acceptance and the expiry of its
# earnings: `expiry_seasons * min_season_length`.
expiry_period: public(immutable(uint256))


# @dev Receives the surplus (expired earnings and excess funding).
treasury: public(address)


# @dev The claimable cumulative root (empty before the first season).
root: public(bytes32)


# @dev The sum of the claimable root's cumulative amounts.
root_total: public(uint256)


# @dev The season of the claimable root.
season: public(uint256)


# @dev Every accepted root by season (for expiry proofs).
season_root: public(HashMap[uint256, bytes32])


# @dev When each season's root was accepted (0 if never).
season_accepted_at: public(HashMap[uint256, uint256])


# @dev The proposed root waiting for its delay (empty when none).
pending_root: public(bytes32)


# @dev The sum of the proposed root's cumulative amounts.
pending_total: public(uint256)


# @dev The season of the proposed root.
pending_season: public(uint256)


# @dev When the proposed root may be accepted.
pending_eta: public(uint256)


# @dev An account's cumulative amounts packed in one slot (one storage write
# per claim): what it took so far, claimed plus expired (high 128 bits), and
# what it was paid (low 128 bits). OPG's whole supply fits in 90 bits.
_taken: HashMap[address, uint256]


# @dev Sum of `consumed` over all accounts.
total_consumed: public(uint256)


# @dev Sum of expired earnings over all accounts.
total_expired: public(uint256)


# ------------------------------------------------------------------ events


event RootProposed:
    root: indexed(bytes32)
    season: indexed(uint256)
    total: uint256
    table_hash: bytes32
    eta: uint256


event RootRevoked:
    root: indexed(bytes32)
    season: indexed(uint256)


event RootAccepted:
    root: indexed(bytes32)
    season: indexed(uint256)
    total: uint256


event Claimed:
    account: indexed(address)
    caller: indexed(address)
    amount: uint256
    cumulative: uint256


event Expired:
    account: indexed(address)
    season: indexed(uint256)
    amount: uint256


event SurplusWithdrawn:
    treasury: indexed(address)
    amount: uint256


event TreasuryUpdated:
    treasury: indexed(address)


# ------------------------------------------------------------------ constructor


@deploy
def __init__(
    token_: IERC20,
    treasury_: address,
    root_delay_: uint256,
    expiry_seasons_: uint256,
    min_season_length_: uint256,
    delay_: uint256,
):
    """
    @dev Sets the token, the treasury, the root delay, the season
         length and the expiry; the deployer becomes the owner (the
         root proposer).
    @param token_ The OPG token.
    @param treasury_ The treasury, which may take the surplus.
    @param root_delay_ Seconds a proposed root waits, 60 s to 30 days.
    @param expiry_seasons_ Seasons after which unclaimed earnings may expire, 1 to 100.
    @param min_season_length_ The least seconds between two accepted roots:
           at least `root_delay_`, at most 365 days, and on every chain but
           the devnet at least 7 days with `expiry_seasons_ *
           min_season_length_` at least 30 days.
    @param delay_ The governance delay of a treasury change (>= root delay
           + 1 day; >= 7 days but on the devnet; <= 90 days).
    """
    assert token_.address != empty(address), "SeasonDistributor: token is the zero address"
    assert (
        root_delay_ >= MIN_ROOT_DELAY and root_delay_ <= MAX_ROOT_DELAY
    ), "SeasonDistributor: root delay out of bounds"
    assert (
        expiry_seasons_ >= MIN_EXPIRY_SEASONS and expiry_seasons_ <= MAX_EXPIRY_SEASONS
    ), "SeasonDistributor: expiry out of bounds"
    assert (
        min_season_length_ >= root_delay_ and min_season_length_ <= MAX_SEASON_LENGTH
    ), "SeasonDistributor: season length out of bounds"
    period: uint256 = expiry_seasons_ * min_season_length_
    assert chain.id == _DEVNET_CHAIN_ID or (
        min_season_length_ >= MIN_SEASON_LENGTH and period >= MIN_EXPIRY_PERIOD
    ), "SeasonDistributor: season length below the floor"
    ownable.__init__()
    ownable_2step.__init__()
    timelock.__init__()
    token = token_
    root_delay = root_delay_
    expiry_seasons = expiry_seasons_
    min_season_length = min_season_length_
    expiry_period = period
    self._set_treasury(treasury_)
    timelock._set_delay(delay_, root_delay_ + DELAY_MARGIN)


# ------------------------------------------------------------------ roots


@external
def propose_root(root_: bytes32, total: uint256, season_: uint256, table_hash: bytes32):
    """
    @dev Proposes the cumulative root of `season_`, replacing any
         proposal still waiting; claimable after `root_delay`.
    @notice Only the owner. Refused unless this contract holds
            `total - total_consumed`.
    @param root_ The cumulative Merkle root.
    @param total The sum of the root's cumulative amounts.
    @param season_ The season it closes: the claimable root's plus one
           (so no season number can be skipped to expire earnings early).
    @param table_hash The keccak256 of the usage table it was built from.
    """
    ownable._check_owner()
    assert root_ != empty(bytes32), "SeasonDistributor: empty root"
    assert season_ == self.season + 1, "SeasonDistributor: not the next season"
    self._check_funded(total)
    if self.pending_root != empty(bytes32):
        log RootRevoked(root=self.pending_root, season=self.pending_season)
    eta: uint256 = block.timestamp + root_delay
    self.pending_root = root_
    self.pending_total = total
    self.pending_season = season_
    self.pending_eta = eta
    log RootProposed(root=root_, season=season_, total=total, table_hash=table_hash, eta=eta)


@external
def revoke_root():
    """
    @dev Revokes the proposed root while its delay runs.
    @notice Only the owner, only before the delay is over.
    """
    ownable._check_owner()
    root_: bytes32 = self.pending_root
    assert root_ != empty(bytes32), "SeasonDistributor: no pending root"
    assert block.timestamp < self.pending_eta, "SeasonDistributor: delay over"
    log RootRevoked(root=root_, season=self.pending_season)
    self._clear_pending()


@external
def accept_root():
    """
    @dev Makes the proposed root claimable once its delay is over.
    @notice Anyone may call it. Refused if the contract no longer
            holds enough for every leaf, or sooner than
            `min_season_length` after the previous root's acceptance.
    """
    root_: bytes32 = self.pending_root
    assert root_ != empty(bytes32), "SeasonDistributor: no pending root"
    assert block.timestamp >= self.pending_eta, "SeasonDistributor: delay not over"
    assert block.timestamp >= self._next_season_at(), "SeasonDistributor: season too short"
    total: uint256 = self.pending_total
    self._check_funded(total)
    season_: uint256 = self.pending_season
    self.root = root_
    self.root_total = total
    self.season = season_
    self.season_root[season_] = root_
    self.season_accepted_at[season_] = block.timestamp
    self._clear_pending()
    log RootAccepted(root=root_, season=season_, total=total)


# ------------------------------------------------------------------ claims and expiry


@external
def claim(account: address, cumulative: uint256, proof: DynArray[bytes32, _MAX_PROOF_LENGTH]) -> uint256:
    """
    @dev Pays `account` its leaf's cumulative amount less what it
         already took (claimed or expired); 0 when nothing is left.
    @notice Anyone may call it for any account; the OPG goes to `account`.
    @param account The account of the leaf.
    @param cumulative The leaf's cumulative amount.
    @param proof The leaf's Merkle proof in the claimable root.
    @return uint256 The amount paid.
    """
    root_: bytes32 = self.root
    assert root_ != empty(bytes32), "SeasonDistributor: no claimable root"
    assert merkle._verify(proof, root_, self._leaf(account, cumulative)), "SeasonDistributor: invalid proof"
    assert cumulative <= _MAX_AMOUNT, "SeasonDistributor: amount too large"
    packed: uint256 = self._taken[account]
    taken: uint256 = packed >> 128
    if cumulative <= taken:
        return 0
    amount: uint256 = cumulative - taken
    self._taken[account] = cumulative << 128 | ((packed & _LOW_MASK) + amount)
    self.total_consumed += amount
    log Claimed(account=account, caller=msg.sender, amount=amount, cumulative=cumulative)
    assert extcall token.transfer(account, amount, default_return_value=True)
    return amount


@external
def expire(
    account: address, season_: uint256, cumulative: uint256, proof: DynArray[bytes32, _MAX_PROOF_LENGTH]
) -> uint256:
    """
    @dev Expires what `account` had earned by `season_` and still not
         taken, once `expiry_seasons` later seasons have a claimable
         root and `expiry_period` has passed since `season_`'s root
         was accepted; it joins the surplus. Later earnings are untouched.
    @notice Anyone may call it.
    @param account The account.
    @param season_ An accepted season at least `expiry_seasons` and
           `expiry_period` old.
    @param cumulative The account's cumulative amount in that season's root.
    @param proof The leaf's Merkle proof in that season's root.
    @return uint256 The amount expired.
    """
    old_root: bytes32 = self.season_root[season_]
    assert old_root != empty(bytes32), "SeasonDistributor: unknown season"
    assert season_ + expiry_seasons <= self.season, "SeasonDistributor: season not expired"
    assert block.timestamp >= self.season_accepted_at[season_] + expiry_period, "SeasonDistributor: season not expired"
    assert merkle._verify(proof, old_root, self._leaf(account, cumulative)), "SeasonDistributor: invalid proof"
    assert cumulative <= _MAX_AMOUNT, "SeasonDistributor: amount too large"
    packed: uint256 = self._taken[account]
    taken: uint256 = packed >> 128
    if cumulative <= taken:
        return 0
    amount: uint256 = cumulative - taken
    self._taken[account] = cumulative << 128 | (packed & _LOW_MASK)
    self.total_consumed += amount
    self.total_expired += amount
    log Expired(account=account, season=season_, amount=amount)
    return amount


@external
def withdraw_surplus(amount: uint256):
    """
    @dev Pays the treasury up to the surplus: what this contract holds
         beyond every unexpired entitlement of the claimable and of the
         proposed root.
    @notice Only the treasury.
    @param amount The amount.
    """
    assert msg.sender == self.treasury, "SeasonDistributor: caller is not the treasury"
    assert amount > 0, "SeasonDistributor: zero amount"
    assert amount <= self._surplus(), "SeasonDistributor: amount exceeds surplus"
    log SurplusWithdrawn(treasury=msg.sender, amount=amount)
    assert extcall token.transfer(msg.sender, amount, default_return_value=True)


@external
def fund(amount: uint256):
    """
    @dev Moves `amount` OPG from the caller into the season budget (a
         plain transfer to this contract funds it too).
    @notice The caller must have approved this contract.
    @param amount The amount.
    """
    assert amount > 0, "SeasonDistributor: zero amount"
    assert extcall token.transferFrom(msg.sender, self, amount, default_return_value=True)


# ------------------------------------------------------------------ governance


@external
def queue_change(call: Bytes[timelock.MAX_CALL_LENGTH]) -> bytes32:
    """
    @dev Queues a change: the calldata of `set_treasury` or
         `set_delay`, executable by anyone once due.
    @notice Only the owner.
    @param call The setter's calldata.
    @return bytes32 The change's id.
    """
    ownable._check_owner()
    return timelock._queue(call)


@external
def cancel_change(id: bytes32):
    """
    @dev Cancels a queued change.
    @notice Only the owner.
    @param id The change's id (keccak256 of its calldata).
    """
    ownable._check_owner()
    timelock._cancel(id)


@external
def set_delay(delay_: uint256):
    """
    @dev Sets the governance delay.
    @notice Anyone, once the owner's queued change is due. Bounds: at
            least the root delay + 1 day (7 days but on the devnet),
            at most 90 days.
    @param delay_ The delay.
    """
    timelock._execute(keccak256(slice(msg.data, 0, 36)))
    timelock._set_delay(delay_, root_delay + DELAY_MARGIN)


@external
def set_treasury(treasury_: address):
    """
    @dev Sets the treasury, which may take the surplus.
    @notice Anyone, once the owner's queued change is due.
    @param treasury_ The new treasury.
    """
    timelock._execute(keccak256(slice(msg.data, 0, 36)))
    self._set_treasury(treasury_)


# ------------------------------------------------------------------ views


@external
@view
def claimable(account: address, cumulative: uint256, proof: DynArray[bytes32, _MAX_PROOF_LENGTH]) -> uint256:
    """
    @dev What `claim` would pay now for this leaf (0 if the proof fails).
    @param account The account of the leaf.
    @param cumulative The leaf's cumulative amount.
    @param proof The leaf's Merkle proof in the claimable root.
    @return uint256 The amount `claim` would pay.
    """
    if self.root == empty(bytes32) or not merkle._verify(proof, self.root, self._leaf(account, cumulative)):
        return 0
    taken: uint256 = self._taken[account] >> 128
    if cumulative <= taken:
        return 0
    return cumulative - taken


@external
@view
def consumed(account: address) -> uint256:
    """
    @dev What `account` took so far: claimed plus expired.
    @param account The account.
    @return uint256 The cumulative amount taken.
    """
    return self._taken[account] >> 128


@external
@view
def claimed(account: address) -> uint256:
    """
    @dev What `account` was paid so far.
    @param account The account.
    @return uint256 The cumulative amount paid.
    """
    return self._taken[account] & _LOW_MASK


@external
@view
def outstanding() -> uint256:
    """
    @dev Every unexpired entitlement of the claimable root not yet paid.
    @return uint256 `root_total - total_consumed`.
    """
    return self.root_total - self.total_consumed


@external
@view
def surplus() -> uint256:
    """
    @dev What the treasury may take now.
    @return uint256 The surplus.
    """
    return self._surplus()


@external
@view
def next_season_at() -> uint256:
    """
    @dev The earliest time the next root may be accepted (its own
         `pending_eta` applies too).
    @return uint256 The previous acceptance plus `min_season_length`;
            0 before the first season.
    """
    return self._next_season_at()


@external
@view
def expires_at(season_: uint256) -> uint256:
    """
    @dev The earliest time earnings of an accepted season may expire
         by time (`expiry_seasons` later roots are needed too).
    @param season_ The season.
    @return uint256 Its acceptance plus `expiry_period`; 0 if not accepted.
    """
    accepted: uint256 = self.season_accepted_at[season_]
    if accepted == 0:
        return 0
    return accepted + expiry_period


@external
@pure
def leaf(account: address, cumulative: uint256) -> bytes32:
    """
    @dev The leaf hash of an account's cumulative amount.
    @param account The account.
    @param cumulative The cumulative amount.
    @return bytes32 `keccak256(keccak256(abi_encode(account, cumulative)))`.
    """
    return self._leaf(account, cumulative)


# ------------------------------------------------------------------ internal


@internal
@pure
def _leaf(account: address, cumulative: uint256) -> bytes32:
    """
    @dev The double-hashed leaf (no 64-byte pre-image, so no leaf can
         pass for an inner node).
    @param account The account.
    @param cumulative The cumulative amount.
    @return bytes32 The leaf hash.
    """
    return keccak256(keccak256(abi_encode(account, cumulative)))


@internal
@view
def _check_funded(total: uint256):
    """
    @dev Reverts unless this contract holds every entitlement of a
         root of cumulative total `total`.
    @param total The root's total.
    """
    consumed_: uint256 = self.total_consumed
    assert total >= consumed_, "SeasonDistributor: total below what was paid"
    assert (staticcall token.balanceOf(self) >= total - consumed_), "SeasonDistributor: root not funded"


@internal
@view
def _surplus() -> uint256:
    """
    @dev The balance beyond the outstanding entitlements of the
         claimable root and of the proposed one.
    @return uint256 The surplus.
    """
    consumed_: uint256 = self.total_consumed
    owed: uint256 = self.root_total - consumed_
    if self.pending_root != empty(bytes32) and self.pending_total > consumed_:
        owed = max(owed, self.pending_total - consumed_)
    held: uint256 = staticcall token.balanceOf(self)
    if held <= owed:
        return 0
    return held - owed


@internal
@view
def _next_season_at() -> uint256:
    """
    @dev The earliest time the next root may be accepted.
    @return uint256 The claimable season's acceptance plus
            `min_season_length`; 0 before the first season.
    """
    last: uint256 = self.season
    if last == 0:
        return 0
    return self.season_accepted_at[last] + min_season_length


@internal
def _clear_pending():
    """
    @dev Forgets the proposed root.
    """
    self.pending_root = empty(bytes32)
    self.pending_total = 0
    self.pending_season = 0
    self.pending_eta = 0


@internal
def _set_treasury(treasury_: address):
    """
    @dev Validates and stores the treasury.
    @param treasury_ The treasury.
    """
    assert treasury_ != empty(address), "SeasonDistributor: treasury is the zero address"
    self.treasury = treasury_
    log TreasuryUpdated(treasury=treasury_)
