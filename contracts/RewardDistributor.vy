# pragma version ~=0.4.3
# pragma nonreentrancy on
# SPDX-License-Identifier: AGPL-3.0-only
"""
@title OPG reward distributor
@custom:contract-name RewardDistributor
@license GNU Affero General Public License v3.0 only
@notice Receives the fees the CreditEscrow settles and splits each
        node's gross: the protocol fee (rounded up) to the treasury,
        the verifier fee to the epoch's verifier pool, the rest to the
        node, claimable at once. An epoch's pool is shared by the
        verifiers live in it, pro rata to their NodeStaking snapshot
        weight (warm stake recorded by a heartbeat in the epoch
        before), so stake that joins just before a large batch earns
        nothing of it. A verifier jailed at any moment from an epoch's
        start until its share is collected forfeits that share to the
        treasury (a double vote, a lazy or a false verdict costs the
        pool share too, not only the stake).
        Emissions funded by anyone (the treasury) are allocated per
        epoch to inference nodes pro rata to the gross fees they
        settled in it, capped at `gross * max_emission_per_fee_bps`
        with `max_emission_per_fee_bps <= protocol_fee_bps`, so
        paying oneself through one's own node never earns more
        than it costs. What an epoch does not allocate stays in the
        reserve for later epochs. Epochs are finalised in order and an
        epoch can only use funding that arrived by its end, so the
        allocation never depends on who calls first. Parameters change
        only through a timelock. Every division rounds in the
        protocol's favour; rounding dust stays in this contract.
"""

from ethereum.ercs import IERC20

from snekmate.auth import ownable

initializes: ownable

from snekmate.auth import ownable_2step

initializes: ownable_2step[ownable := ownable]

from .modules import timelock

initializes: timelock

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


# @dev The basis-point denominator.
BPS: public(constant(uint256)) = 10_000


# @dev Hard upper bound of `protocol_fee_bps`.
MAX_PROTOCOL_FEE_BPS: public(constant(uint256)) = 2_000


# @dev Hard upper bound of `verifier_fee_bps`.
MAX_VERIFIER_FEE_BPS: public(constant(uint256)) = 2_000


# @dev Hard bounds of `epoch_length`.
MIN_EPOCH_LENGTH: public(constant(uint256)) = 60
MAX_EPOCH_LENGTH: public(constant(uint256)) = 90 * 86_400


# @dev How much longer than an epoch the governance delay must be at least.
DELAY_MARGIN: public(constant(uint256)) = 86_400


# @dev The most nodes one `credit_fees` call carries (= the escrow's batch size).
MAX_NODES: constant(uint256) = 256


# @dev Bound of the binary search over epoch spans (2**64 spans: never reached).
_SPAN_SEARCH_STEPS: constant(uint256) = 64


# @dev A run of epochs of one length.
struct EpochSpan:
    first_epoch: uint256
    start: uint256
    length: uint256


# @dev NodeStaking's record of an account (its `nodes` getter); the
# distributor reads the jail fields.
struct StakingNode:
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


# @dev The OPG token.
token: public(immutable(IERC20))


# @dev The CreditEscrow, the only caller of `credit_fees`.
escrow: public(address)


# @dev The NodeStaking, whose heartbeat snapshots weigh the verifier pools.
staking: public(INodeStaking)


# @dev Receives the protocol fee, and the verifier fee of an epoch
# without live verifier weight.
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


# @dev Emission funded during an epoch (usable from that epoch's finalisation on).
epoch_funding: public(HashMap[uint256, uint256])


# @dev The next epoch to finalise (epochs finalise in order).
next_epoch_to_finalize: public(uint256)


# @dev Funded emission that finalised epochs could use (funding of epochs <= the last finalised one, less allocations).
_finalized_reserve: uint256


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


# @dev Node shares, treasury fees, emissions and collected verifier rewards.
claimable: public(HashMap[address, uint256])


# @dev Verifier fees credited in an epoch (its verifier pool).
epoch_verifier_fees: public(HashMap[uint256, uint256])


# @dev Whether a verifier's share of an epoch's pool was collected (or forfeited).
verifier_collected: public(HashMap[uint256, HashMap[address, bool]])


# @dev The runs of epochs of one length, in order: one more per epoch-length change.
epoch_spans: public(HashMap[uint256, EpochSpan])


# @dev How many runs `epoch_spans` holds.
epoch_span_count: public(uint256)


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


event VerifierRewardCollected:
    verifier: indexed(address)
    epoch: indexed(uint256)
    amount: uint256


event VerifierRewardForfeited:
    verifier: indexed(address)
    epoch: indexed(uint256)
    amount: uint256


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


interface INodeStaking:
    def weight_in(epoch: uint256, verifier: address) -> uint256: view
    def total_weight_in(epoch: uint256) -> uint256: view
    def nodes(account: address) -> StakingNode: view


@deploy
def __init__(
    token_: IERC20,
    treasury_: address,
    protocol_fee_bps_: uint256,
    verifier_fee_bps_: uint256,
    max_emission_per_fee_bps_: uint256,
    epoch_length_: uint256,
    emission_per_epoch_: uint256,
    delay_: uint256,
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
    @param delay_ The governance delay (>= epoch length + 1 day).
    """
    assert token_.address != empty(address), "RewardDistributor: token is the zero address"
    ownable.__init__()
    ownable_2step.__init__()
    timelock.__init__()
    token = token_
    self._set_treasury(treasury_)
    self._set_fees(protocol_fee_bps_, verifier_fee_bps_, max_emission_per_fee_bps_)
    self._set_epoch_length(epoch_length_)
    self._set_emission_per_epoch(emission_per_epoch_)
    self.current_epoch_end = block.timestamp + epoch_length_
    self.epoch_spans[0] = EpochSpan(first_epoch=0, start=block.timestamp, length=epoch_length_)
    self.epoch_span_count = 1
    timelock._set_delay(delay_, epoch_length_ + DELAY_MARGIN)


@external
def connect(escrow_: address, staking_: INodeStaking):
    """
    @dev Wires the CreditEscrow and NodeStaking, once.
    @notice Only the owner, only once.
    @param escrow_ The CreditEscrow.
    @param staking_ The NodeStaking.
    """
    ownable._check_owner()
    assert self.escrow == empty(address), "RewardDistributor: already connected"
    assert escrow_ != empty(address) and staking_.address != empty(address), "RewardDistributor: zero address"
    self.escrow = escrow_
    self.staking = staking_
    log Connected(escrow=escrow_, staking=staking_.address)


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
    # The pool of this epoch is shared by its live verifiers; with none, the treasury takes it.
    if verifier_total > 0:
        if staticcall self.staking.total_weight_in(epoch) > 0:
            self.epoch_verifier_fees[epoch] += verifier_total
        else:
            protocol_total += verifier_total
    self.claimable[self.treasury] += protocol_total


@external
def fund_emissions(amount: uint256):
    """
    @dev Adds `amount` OPG from the caller to the emission reserve.
    @notice The caller must have approved this contract.
    @param amount The OPG amount.
    """
    assert amount > 0, "RewardDistributor: zero amount"
    self.emission_reserve += amount
    self.epoch_funding[self._roll_epoch()] += amount
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
def collect_verifier_reward(verifier: address, epoch: uint256):
    """
    @dev Moves `verifier`'s share of an ended epoch's verifier pool to
         its claimable balance: `pool * weight / total weight` of the
         epoch's NodeStaking snapshot (rounded down). A verifier
         jailed at any moment since the epoch started forfeits the
         share to the treasury.
    @notice Anyone may call it for any verifier; it pays the verifier
            (or the treasury).
    @param verifier The verifier.
    @param epoch An ended epoch.
    """
    assert epoch < self._roll_epoch(), "RewardDistributor: epoch not ended"
    assert not self.verifier_collected[epoch][verifier], "RewardDistributor: reward already collected"
    weight: uint256 = staticcall self.staking.weight_in(epoch, verifier)
    assert weight > 0, "RewardDistributor: no weight in epoch"
    share: uint256 = self.epoch_verifier_fees[epoch] * weight // staticcall self.staking.total_weight_in(epoch)
    self.verifier_collected[epoch][verifier] = True
    if self._jailed_since(verifier, self._epoch_start(epoch)):
        self.claimable[self.treasury] += share
        log VerifierRewardForfeited(verifier=verifier, epoch=epoch, amount=share)
        return
    self.claimable[verifier] += share
    log VerifierRewardCollected(verifier=verifier, epoch=epoch, amount=share)


@external
def claim() -> uint256:
    """
    @dev Pays the caller everything it can claim: node shares,
         verifier rewards, emissions, treasury fees.
    @return uint256 The amount paid.
    """
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
    @return uint256 The claimable amount (collected verifier rewards and emissions included).
    """
    return self.claimable[account]


@external
@view
def epoch_start(epoch: uint256) -> uint256:
    """
    @dev When an epoch starts (for a future epoch: at the length in
         force now).
    @param epoch The epoch number.
    @return uint256 Its start time.
    """
    return self._epoch_start(epoch)


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
def set_delay(delay_: uint256):
    """
    @dev Sets the governance delay.
    @notice Anyone, once the owner's queued change is due. Bounds: at
            least the epoch length + 1 day, at most 90 days.
    @param delay_ The delay.
    """
    timelock._execute(keccak256(slice(msg.data, 0, 36)))
    timelock._set_delay(delay_, self.epoch_length + DELAY_MARGIN)


@external
def set_fees(protocol_fee_bps_: uint256, verifier_fee_bps_: uint256, max_emission_per_fee_bps_: uint256):
    """
    @dev Sets the fee split and the emission cap.
    @notice Anyone, once the owner's queued change is due. Bounds:
            protocol <= 2,000, verifier <= 2,000, emission cap <= protocol fee.
    @param protocol_fee_bps_ The protocol fee.
    @param verifier_fee_bps_ The verifier fee.
    @param max_emission_per_fee_bps_ The emission cap per fee.
    """
    timelock._execute(keccak256(slice(msg.data, 0, 100)))
    self._set_fees(protocol_fee_bps_, verifier_fee_bps_, max_emission_per_fee_bps_)


@external
def set_treasury(treasury_: address):
    """
    @dev Sets the treasury; what the old one earned stays its own.
    @notice Anyone, once the owner's queued change is due.
    @param treasury_ The new treasury.
    """
    timelock._execute(keccak256(slice(msg.data, 0, 36)))
    self._set_treasury(treasury_)


@external
def set_epoch_length(epoch_length_: uint256):
    """
    @dev Sets the length of epochs starting after the current one.
    @notice Anyone, once the owner's queued change is due. Bounds:
            60 s to 90 days, at most the delay minus one day.
    @param epoch_length_ The new length in seconds.
    """
    timelock._execute(keccak256(slice(msg.data, 0, 36)))
    assert epoch_length_ + DELAY_MARGIN <= timelock.delay, "RewardDistributor: epoch length above the delay"
    first: uint256 = self._roll_epoch() + 1
    self._set_epoch_length(epoch_length_)
    # The new length starts with the next epoch, at the current one's end.
    count: uint256 = self.epoch_span_count
    if self.epoch_spans[count - 1].first_epoch == first:
        count -= 1
    self.epoch_spans[count] = EpochSpan(first_epoch=first, start=self.current_epoch_end, length=epoch_length_)
    self.epoch_span_count = count + 1


@external
def set_emission_per_epoch(emission_per_epoch_: uint256):
    """
    @dev Sets the emission allocated per epoch at most.
    @notice Anyone, once the owner's queued change is due. Applies to
            epochs finalised afterwards.
    @param emission_per_epoch_ The amount per epoch.
    """
    timelock._execute(keccak256(slice(msg.data, 0, 36)))
    self._set_emission_per_epoch(emission_per_epoch_)


@internal
def _set_fees(protocol_fee_bps_: uint256, verifier_fee_bps_: uint256, max_emission_per_fee_bps_: uint256):
    """
    @dev Validates and stores the fee parameters.
    @param protocol_fee_bps_ The protocol fee.
    @param verifier_fee_bps_ The verifier fee.
    @param max_emission_per_fee_bps_ The emission cap per fee.
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
    @param treasury_ The treasury.
    """
    assert treasury_ != empty(address), "RewardDistributor: treasury is the zero address"
    self.treasury = treasury_
    log TreasuryUpdated(treasury=treasury_)


@internal
def _set_epoch_length(epoch_length_: uint256):
    """
    @dev Validates and stores the epoch length.
    @param epoch_length_ The length in seconds.
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
    @param emission_per_epoch_ The amount per epoch.
    """
    self.emission_per_epoch = emission_per_epoch_
    log EmissionPerEpochUpdated(emission_per_epoch=emission_per_epoch_)


@internal
@view
def _epoch_start(epoch: uint256) -> uint256:
    """
    @dev When `epoch` starts: the start of the last span beginning at
         or before it, plus its length per epoch in between (binary
         search over the spans).
    @param epoch The epoch number.
    @return uint256 Its start time.
    """
    lo: uint256 = 0
    hi: uint256 = self.epoch_span_count
    for _: uint256 in range(_SPAN_SEARCH_STEPS):
        if hi - lo <= 1:
            break
        mid: uint256 = (lo + hi) // 2
        if self.epoch_spans[mid].first_epoch <= epoch:
            lo = mid
        else:
            hi = mid
    span: EpochSpan = self.epoch_spans[lo]
    return span.start + (epoch - span.first_epoch) * span.length


@internal
@view
def _jailed_since(verifier: address, start: uint256) -> bool:
    """
    @dev Whether NodeStaking had `verifier` jailed at any moment from
         `start` until now: jailed now, jailed at or after `start`, or
         released after it.
    @param verifier The verifier.
    @param start A time.
    @return bool Whether it was jailed since `start`.
    """
    node: StakingNode = staticcall self.staking.nodes(verifier)
    return node.jailed or node.jailed_at >= start or node.released_at > start


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
    @dev Allocates the emission of every unfinalised epoch up to
         `epoch`, in order; each may use the funding that arrived by
         its end and was not allocated to an earlier epoch.
    @param epoch The last epoch to finalise.
    """
    if self.epoch_finalized[epoch]:
        return
    assert epoch < self._roll_epoch(), "RewardDistributor: epoch not ended"
    start: uint256 = self.next_epoch_to_finalize
    assert epoch < start + 64, "RewardDistributor: finalize earlier epochs first"
    available: uint256 = self._finalized_reserve
    allocated: uint256 = 0
    for e: uint256 in range(start, start + 64, bound=64):
        if e > epoch:
            break
        available += self.epoch_funding[e]
        fees: uint256 = self.epoch_fees[e]
        emission: uint256 = min(min(self.emission_per_epoch, available), fees * self.max_emission_per_fee_bps // BPS)
        available -= emission
        allocated += emission
        self.epoch_finalized[e] = True
        self.epoch_emission[e] = emission
        log EpochFinalized(epoch=e, fees=fees, emission=emission)
    self._finalized_reserve = available
    self.emission_reserve -= allocated
    self.next_epoch_to_finalize = epoch + 1
