# pragma version ~=0.4.3
# SPDX-License-Identifier: AGPL-3.0-only
"""
@title Timelocked parameter changes
@custom:contract-name timelock
@license GNU Affero General Public License v3.0 only
@notice Every parameter change of an owned contract goes through a
        queue: the owner queues the exact calldata of a setter
        (announced by `ChangeQueued` with the calldata and the time it
        becomes due), and anyone may then call that setter with the
        same arguments between `eta` and `eta + GRACE_PERIOD`. A change
        not executed within the grace period lapses, so a due change
        is never a standing option. The delay is fixed at queue time;
        the delay itself changes only through the same queue. The
        owner may cancel a queued change at any time before it runs.
        The contract using this module checks the owner before
        `_queue` and `_cancel`, and passes its own lower bound of
        `delay` (at least the longest period its participants rely on
        plus one day). On every chain but the local devnet (chain id
        31337) the delay is moreover never below `MIN_DELAY`, seven
        days, the same floor in every contract: a change to fees,
        stakes or periods is public for a week before it applies,
        whatever the periods of one contract are.
"""


# @dev How long a due change stays executable before it lapses.
GRACE_PERIOD: public(constant(uint256)) = 86_400


# @dev The least delay of every contract on every chain but the devnet.
MIN_DELAY: public(constant(uint256)) = 7 * 86_400


# @dev The local development chain (anvil), where short periods and delays are allowed.
_DEVNET_CHAIN_ID: constant(uint256) = 31_337


# @dev The longest setter calldata (selector + 5 words).
MAX_CALL_LENGTH: constant(uint256) = 164


# @dev The delay between queueing a change and it becoming due.
delay: public(uint256)


# @dev When each queued change (by keccak256 of its calldata) becomes due; 0 if none.
queued_eta: public(HashMap[bytes32, uint256])


event ChangeQueued:
    id: indexed(bytes32)
    call: Bytes[MAX_CALL_LENGTH]
    eta: uint256


event ChangeCanceled:
    id: indexed(bytes32)


event ChangeExecuted:
    id: indexed(bytes32)


event DelayUpdated:
    delay: uint256


@deploy
@payable
def __init__():
    """
    @dev The using contract sets the first delay with `_set_delay`.
    """
    pass


@internal
def _queue(call: Bytes[MAX_CALL_LENGTH]) -> bytes32:
    """
    @dev Queues `call` (a setter's calldata) to become due after the delay.
    @param call The calldata of the setter call.
    @return bytes32 The change's id, keccak256 of `call`.
    """
    assert len(call) >= 4, "timelock: call too short"
    id: bytes32 = keccak256(call)
    assert self.queued_eta[id] == 0, "timelock: change already queued"
    eta: uint256 = block.timestamp + self.delay
    self.queued_eta[id] = eta
    log ChangeQueued(id=id, call=call, eta=eta)
    return id


@internal
def _cancel(id: bytes32):
    """
    @dev Cancels a queued change.
    @param id The change's id.
    """
    assert self.queued_eta[id] != 0, "timelock: change not queued"
    self.queued_eta[id] = 0
    log ChangeCanceled(id=id)


@internal
def _execute(id: bytes32):
    """
    @dev Consumes the queued change `id` (keccak256 of the setter's
         calldata, which the setter hashes from `msg.data`); reverts
         unless it is queued, due and not lapsed.
    @param id The change's id.
    """
    eta: uint256 = self.queued_eta[id]
    assert eta != 0, "timelock: change not queued"
    assert block.timestamp >= eta, "timelock: change not due"
    assert block.timestamp < eta + GRACE_PERIOD, "timelock: change lapsed"
    self.queued_eta[id] = 0
    log ChangeExecuted(id=id)


@internal
def _set_delay(delay_: uint256, minimum: uint256):
    """
    @dev Stores the delay after checking the floor: the using
         contract's, and `MIN_DELAY` on every chain but the devnet.
    @param delay_ The new delay.
    @param minimum The least delay the using contract allows now.
    """
    assert delay_ >= minimum and (
        delay_ >= MIN_DELAY or chain.id == _DEVNET_CHAIN_ID
    ), "timelock: delay below the floor"
    assert delay_ <= 90 * 86_400, "timelock: delay above 90 days"
    self.delay = delay_
    log DelayUpdated(delay=delay_)
