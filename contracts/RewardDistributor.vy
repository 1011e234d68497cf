# pragma version ~=0.4.3
# pragma nonreentrancy on
# SPDX-License-Identifier: AGPL-3.0-only
"""
@title OPG reward distributor
@custom:contract-name RewardDistributor
@license GNU Affero General Public License v3.0 only
@notice Receives the fees the CreditEscrow settles and splits each
        node's gross: the protocol fee (rounded up) to the treasury,
        the verifier fee to the verifier pool (reward-per-stake
        accumulator over active verifier stake, reported by
        NodeStaking), the rest to the node, claimable at once.
        Emissions funded by anyone (the treasury) are allocated per
        epoch to inference nodes pro rata to the gross fees they
        settled in it, capped at `gross * max_emission_per_fee_bps`
        with `max_emission_per_fee_bps <= protocol_fee_bps`, so
        paying oneself through one's own node never earns more
        than it costs. What an epoch does not allocate stays in the
        reserve for later epochs. Every division rounds in the
        protocol's favour; rounding dust stays in this contract.
"""

from ethereum.ercs import IERC20

from snekmate.auth import ownable

initializes: ownable

from snekmate.auth import ownable_2step

initializes: ownable_2step[ownable := ownable]

exports: (
    ownable.owner,
    ownable_2step.pending_owner,
    ownable_2step.transfer_ownership,
    ownable_2step.accept_ownership,
    ownable_2step.renounce_ownership,
)


# @dev The basis-point denominator.
BPS: public(constant(uint256)) = 10_000


# @dev Hard upper bound of `protocol_fee_bps`.
MAX_PROTOCOL_FEE_BPS: public(constant(uint256)) = 2_000


# @dev Hard upper bound of `verifier_fee_bps`.
MAX_VERIFIER_FEE_BPS: public(constant(uint256)) = 2_000


# @dev Hard bounds of `epoch_length`.
MIN_EPOCH_LENGTH: public(constant(uint256)) = 60
MAX_EPOCH_LENGTH: public(constant(uint256)) = 90 * 86_400


# @dev Fixed-point scale of `reward_per_stake`.
PRECISION: constant(uint256) = 10**18


# @dev The most nodes one `credit_fees` call carries (= the escrow's batch size).
MAX_NODES: constant(uint256) = 256


# @dev The OPG token.
token: public(immutable(IERC20))


# @dev The CreditEscrow, the only caller of `credit_fees`.
escrow: public(address)


# @dev The NodeStaking, the only caller of `on_verifier_stake_change`.
staking: public(address)


# @dev Receives the protocol fee, rounding dust of the verifier pool,
# and the verifier fee while no verifier is staked.
treasury: public(address)


# @dev Share of each settled gross paid to the treasury.
protocol_fee_bps: public(uint256)


# @dev Share of each settled gross paid to the verifier pool.
verifier_fee_bps: public(uint256)


# @dev Emission cap per unit of gross fees (<= protocol_fee_bps).
max_emission_per_fee_bps: public(uint256)


# @dev Emission allocated to each epoch at most.
emission_per_epoch: public(uint256)


# @dev Length in seconds of the next epochs.
epoch_length: public(uint256)


# @dev The current epoch number (starts at 0).
current_epoch: public(uint256)


# @dev When the current epoch ends.
current_epoch_end: public(uint256)


# @dev Funded emission not yet allocated to an epoch.
emission_reserve: public(uint256)


# @dev Gross fees settled in an epoch.
epoch_fees: public(HashMap[uint256, uint256])


# @dev Gross fees a node settled in an epoch.
node_epoch_fees: public(HashMap[uint256, HashMap[address, uint256]])


# @dev Emission allocated to a finalised epoch.
epoch_emission: public(HashMap[uint256, uint256])


# @dev Whether an ended epoch's emission has been allocated.
epoch_finalized: public(HashMap[uint256, bool])


# @dev Whether a node's emission share of an epoch was collected.
emission_collected: public(HashMap[uint256, HashMap[address, bool]])


# @dev Node shares, treasury fees, emissions and checkpointed verifier rewards.
claimable: public(HashMap[address, uint256])


# @dev A verifier's active stake as last reported by NodeStaking.
verifier_stake: public(HashMap[address, uint256])


# @dev The sum of `verifier_stake`.
total_verifier_stake: public(uint256)


# @dev Verifier fees per unit of stake ever paid, scaled by 1e18.
reward_per_stake: public(uint256)


# @dev `reward_per_stake` when a verifier was last checkpointed.
reward_per_stake_paid: public(HashMap[address, uint256])


event Connected:
    escrow: indexed(address)
    staking: indexed(address)


event FeesCredited:
    node: indexed(address)
    epoch: indexed(uint256)
    gross: uint256
    node_share: uint256
    protocol_fee: uint256
    verifier_fee: uint256


event VerifierStakeUpdated:
    verifier: indexed(address)
    stake: uint256
    total_stake: uint256


event EmissionFunded:
    funder: indexed(address)
    amount: uint256
    reserve: uint256


event EpochFinalized:
    epoch: indexed(uint256)
    fees: uint256
    emission: uint256


event EmissionCollected:
    node: indexed(address)
    epoch: indexed(uint256)
    amount: uint256


event Claimed:
    account: indexed(address)
    amount: uint256


event FeesUpdated:
    protocol_fee_bps: uint256
    verifier_fee_bps: uint256
    max_emission_per_fee_bps: uint256


event TreasuryUpdated:
    treasury: indexed(address)


event EpochLengthUpdated:
    epoch_length: uint256


event EmissionPerEpochUpdated:
    emission_per_epoch: uint256


@deploy
def __init__(
    token_: IERC20,
    treasury_: address,
    protocol_fee_bps_: uint256,
    verifier_fee_bps_: uint256,
    max_emission_per_fee_bps_: uint256,
    epoch_length_: uint256,
    emission_per_epoch_: uint256,
):
    """
    @dev Sets the token, the treasury and the fee parameters; the
         deployer becomes the owner.
    @param token_ The OPG token.
    @param treasury_ The treasury address.
    @param protocol_fee_bps_ Protocol fee, <= 2,000 bps.
    @param verifier_fee_bps_ Verifier fee, <= 2,000 bps.
    @param max_emission_per_fee_bps_ Emission cap, <= protocol fee.
    @param epoch_length_ Epoch length in seconds.
    @param emission_per_epoch_ Emission allocated per epoch at most.
    """
    assert token_.address != empty(address), "RewardDistributor: token is the zero address"
    ownable.__init__()
    ownable_2step.__init__()
    token = token_
    self._set_treasury(treasury_)
    self._set_fees(protocol_fee_bps_, verifier_fee_bps_, max_emission_per_fee_bps_)
    self._set_epoch_length(epoch_length_)
    self._set_emission_per_epoch(emission_per_epoch_)
    self.current_epoch_end = block.timestamp + epoch_length_


@external
def connect(escrow_: address, staking_: address):
    """
    @dev Wires the CreditEscrow and NodeStaking, once.
    @notice Only the owner, only once.
    @param escrow_ The CreditEscrow.
    @param staking_ The NodeStaking.
    """
    ownable._check_owner()
    assert self.escrow == empty(address), "RewardDistributor: already connected"
    assert escrow_ != empty(address) and staking_ != empty(address), "RewardDistributor: zero address"
    self.escrow = escrow_
    self.staking = staking_
    log Connected(escrow=escrow_, staking=staking_)


@external
def credit_fees(nodes: DynArray[address, MAX_NODES], amounts: DynArray[uint256, MAX_NODES]):
    """
    @dev Splits the gross fees the escrow has just transferred here.
    @notice Only the CreditEscrow, which transfers `sum(amounts)` first.
    @param nodes The nodes paid, one entry per run of claims.
    @param amounts The gross fee of each entry.
    """
    assert msg.sender == self.escrow, "RewardDistributor: caller is not the escrow"
    assert len(nodes) == len(amounts), "RewardDistributor: length mismatch"
    epoch: uint256 = self._roll_epoch()
    protocol_bps: uint256 = self.protocol_fee_bps
    verifier_bps: uint256 = self.verifier_fee_bps
    protocol_total: uint256 = 0
    verifier_total: uint256 = 0
    gross_total: uint256 = 0
    for i: uint256 in range(len(nodes), bound=MAX_NODES):
        node: address = nodes[i]
        gross: uint256 = amounts[i]
        # Protocol fee rounds up, verifier fee down, node share is the rest.
        protocol_fee: uint256 = (gross * protocol_bps + BPS - 1) // BPS
        verifier_fee: uint256 = min(gross * verifier_bps // BPS, gross - protocol_fee)
        node_share: uint256 = gross - protocol_fee - verifier_fee
        self.claimable[node] += node_share
        self.node_epoch_fees[epoch][node] += gross
        protocol_total += protocol_fee
        verifier_total += verifier_fee
        gross_total += gross
        log FeesCredited(
            node=node,
            epoch=epoch,
            gross=gross,
            node_share=node_share,
            protocol_fee=protocol_fee,
            verifier_fee=verifier_fee,
        )
    self.epoch_fees[epoch] += gross_total
    total_stake: uint256 = self.total_verifier_stake
    if verifier_total > 0 and total_stake > 0:
        increment: uint256 = verifier_total * PRECISION // total_stake
        self.reward_per_stake += increment
        # The pool keeps `increment * total_stake / 1e18` rounded up: verifiers
        # earn `stake * sum(increments) / 1e18` rounded down once, which can
        # exceed the sum of per-credit floors. What is left is dust: the treasury's.
        protocol_total += verifier_total - (increment * total_stake + PRECISION - 1) // PRECISION
    else:
        protocol_total += verifier_total
    self.claimable[self.treasury] += protocol_total


@external
def on_verifier_stake_change(verifier: address, stake: uint256):
    """
    @dev Records a verifier's new active stake after checkpointing
         what it earned at the old one.
    @notice Only the NodeStaking.
    @param verifier The verifier.
    @param stake Its active, unjailed stake (0 when not active).
    """
    assert msg.sender == self.staking, "RewardDistributor: caller is not the staking"
    self._checkpoint(verifier)
    total: uint256 = self.total_verifier_stake - self.verifier_stake[verifier] + stake
    self.verifier_stake[verifier] = stake
    self.total_verifier_stake = total
    log VerifierStakeUpdated(verifier=verifier, stake=stake, total_stake=total)


@external
def fund_emissions(amount: uint256):
    """
    @dev Adds `amount` OPG from the caller to the emission reserve.
    @notice The caller must have approved this contract.
    @param amount The OPG amount.
    """
    assert amount > 0, "RewardDistributor: zero amount"
    self.emission_reserve += amount
    log EmissionFunded(funder=msg.sender, amount=amount, reserve=self.emission_reserve)
    assert extcall token.transferFrom(msg.sender, self, amount, default_return_value=True)


@external
def finalize_epoch(epoch: uint256):
    """
    @dev Allocates an ended epoch's emission from the reserve:
         `min(emission_per_epoch, reserve, fees * cap)`.
    @notice Anyone may call it; `collect_emission` calls it too.
    @param epoch An ended epoch.
    """
    self._finalize_epoch(epoch)


@external
def collect_emission(node: address, epoch: uint256):
    """
    @dev Moves `node`'s share of an ended epoch's emission to its
         claimable balance.
    @notice Anyone may call it for any node; it pays the node.
    @param node The inference node.
    @param epoch An ended epoch.
    """
    assert not self.emission_collected[epoch][node], "RewardDistributor: emission already collected"
    self._finalize_epoch(epoch)
    fees: uint256 = self.node_epoch_fees[epoch][node]
    assert fees > 0, "RewardDistributor: no fees in epoch"
    share: uint256 = self.epoch_emission[epoch] * fees // self.epoch_fees[epoch]
    self.emission_collected[epoch][node] = True
    self.claimable[node] += share
    log EmissionCollected(node=node, epoch=epoch, amount=share)


@external
def claim() -> uint256:
    """
    @dev Pays the caller everything it can claim: node shares,
         verifier rewards, emissions, treasury fees.
    @return uint256 The amount paid.
    """
    self._checkpoint(msg.sender)
    amount: uint256 = self.claimable[msg.sender]
    assert amount > 0, "RewardDistributor: nothing to claim"
    self.claimable[msg.sender] = 0
    log Claimed(account=msg.sender, amount=amount)
    assert extcall token.transfer(msg.sender, amount, default_return_value=True)
    return amount


@external
@view
def claimable_of(account: address) -> uint256:
    """
    @dev What `claim` would pay `account` now.
    @param account The account.
    @return uint256 The claimable amount including pending verifier rewards.
    """
    return self.claimable[account] + self._pending(account)


@external
@view
def epoch_now() -> uint256:
    """
    @dev The epoch a settlement made now is counted in.
    @return uint256 The epoch number.
    """
    epoch: uint256 = self.current_epoch
    end: uint256 = self.current_epoch_end
    if block.timestamp >= end:
        epoch += (block.timestamp - end) // self.epoch_length + 1
    return epoch


@external
def set_fees(protocol_fee_bps_: uint256, verifier_fee_bps_: uint256, max_emission_per_fee_bps_: uint256):
    """
    @dev Sets the fee split and the emission cap.
    @notice Only the owner. Bounds: protocol <= 2,000, verifier <= 2,000,
            emission cap <= protocol fee.
    @param protocol_fee_bps_ The protocol fee.
    @param verifier_fee_bps_ The verifier fee.
    @param max_emission_per_fee_bps_ The emission cap per fee.
    """
    ownable._check_owner()
    self._set_fees(protocol_fee_bps_, verifier_fee_bps_, max_emission_per_fee_bps_)


@external
def set_treasury(treasury_: address):
    """
    @dev Sets the treasury; what the old one earned stays its own.
    @notice Only the owner.
    @param treasury_ The new treasury.
    """
    ownable._check_owner()
    self._set_treasury(treasury_)


@external
def set_epoch_length(epoch_length_: uint256):
    """
    @dev Sets the length of epochs starting after the current one.
    @notice Only the owner. Bounds: 60 s to 90 days.
    @param epoch_length_ The new length in seconds.
    """
    ownable._check_owner()
    self._roll_epoch()
    self._set_epoch_length(epoch_length_)


@external
def set_emission_per_epoch(emission_per_epoch_: uint256):
    """
    @dev Sets the emission allocated per epoch at most.
    @notice Only the owner. Applies to epochs finalised afterwards.
    @param emission_per_epoch_ The amount per epoch.
    """
    ownable._check_owner()
    self._set_emission_per_epoch(emission_per_epoch_)


@internal
def _set_fees(protocol_fee_bps_: uint256, verifier_fee_bps_: uint256, max_emission_per_fee_bps_: uint256):
    """
    @dev Validates and stores the fee parameters.
    """
    assert protocol_fee_bps_ <= MAX_PROTOCOL_FEE_BPS, "RewardDistributor: protocol fee out of bounds"
    assert verifier_fee_bps_ <= MAX_VERIFIER_FEE_BPS, "RewardDistributor: verifier fee out of bounds"
    assert max_emission_per_fee_bps_ <= protocol_fee_bps_, "RewardDistributor: emission cap above protocol fee"
    self.protocol_fee_bps = protocol_fee_bps_
    self.verifier_fee_bps = verifier_fee_bps_
    self.max_emission_per_fee_bps = max_emission_per_fee_bps_
    log FeesUpdated(
        protocol_fee_bps=protocol_fee_bps_,
        verifier_fee_bps=verifier_fee_bps_,
        max_emission_per_fee_bps=max_emission_per_fee_bps_,
    )


@internal
def _set_treasury(treasury_: address):
    """
    @dev Validates and stores the treasury.
    """
    assert treasury_ != empty(address), "RewardDistributor: treasury is the zero address"
    self.treasury = treasury_
    log TreasuryUpdated(treasury=treasury_)


@internal
def _set_epoch_length(epoch_length_: uint256):
    """
    @dev Validates and stores the epoch length.
    """
    assert (
        epoch_length_ >= MIN_EPOCH_LENGTH and epoch_length_ <= MAX_EPOCH_LENGTH
    ), "RewardDistributor: epoch length out of bounds"
    self.epoch_length = epoch_length_
    log EpochLengthUpdated(epoch_length=epoch_length_)


@internal
def _set_emission_per_epoch(emission_per_epoch_: uint256):
    """
    @dev Stores the emission per epoch (any value: 0 turns emissions off).
    """
    self.emission_per_epoch = emission_per_epoch_
    log EmissionPerEpochUpdated(emission_per_epoch=emission_per_epoch_)


@internal
def _roll_epoch() -> uint256:
    """
    @dev Advances the epoch counter past every ended epoch.
    @return uint256 The current epoch.
    """
    epoch: uint256 = self.current_epoch
    end: uint256 = self.current_epoch_end
    if block.timestamp >= end:
        length: uint256 = self.epoch_length
        skipped: uint256 = (block.timestamp - end) // length + 1
        epoch += skipped
        self.current_epoch = epoch
        self.current_epoch_end = end + skipped * length
    return epoch


@internal
def _finalize_epoch(epoch: uint256):
    """
    @dev Allocates an ended epoch's emission once.
    """
    if self.epoch_finalized[epoch]:
        return
    assert epoch < self._roll_epoch(), "RewardDistributor: epoch not ended"
    fees: uint256 = self.epoch_fees[epoch]
    emission: uint256 = min(
        min(self.emission_per_epoch, self.emission_reserve), fees * self.max_emission_per_fee_bps // BPS
    )
    self.epoch_finalized[epoch] = True
    self.epoch_emission[epoch] = emission
    self.emission_reserve -= emission
    log EpochFinalized(epoch=epoch, fees=fees, emission=emission)


@internal
@view
def _pending(verifier: address) -> uint256:
    """
    @dev Verifier rewards earned since the last checkpoint (rounded down).
    """
    return self.verifier_stake[verifier] * (self.reward_per_stake - self.reward_per_stake_paid[verifier]) // PRECISION


@internal
def _checkpoint(verifier: address):
    """
    @dev Moves pending verifier rewards into `claimable`.
    """
    pending: uint256 = self._pending(verifier)
    if pending > 0:
        self.claimable[verifier] += pending
    self.reward_per_stake_paid[verifier] = self.reward_per_stake
