"""Plain helpers of the RewardDistributor tests: paying a node through the escrow, epochs, the fee split, governance calls, wash trades."""

from __future__ import annotations

import ape
from eth_abi import encode
from eth_utils import keccak

from offchain.messages import Claim, Voucher

OPG = 10**18


BPS = 10_000


INFERENCE = 1


VERIFIER = 2


ZERO_ROOT = b"\x00" * 32


SETTER_TYPES = {
    "set_fees": ["uint256", "uint256", "uint256"],
    "set_treasury": ["address"],
    "set_epoch_length": ["uint256"],
    "set_emission_per_epoch": ["uint256"],
    "set_delay": ["uint256"],
}


def claim_for(payer, node_address, total, escrow_domain) -> tuple:
    voucher = Voucher(payer=payer.address, node=node_address, max_cumulative=total)
    return Claim(
        payer=payer.address,
        node=node_address,
        max_cumulative=total,
        signature=voucher.sign_with(payer.key, escrow_domain),
        total=total,
    ).as_tuple()


def pay(opg, escrow, escrow_domain, payer, node_address, amount, deposit=True):
    """``payer`` deposits ``amount`` (if asked) and pays ``node_address`` that much more through ``settle_batch``."""
    if deposit:
        opg.approve(escrow, amount, sender=payer.account)
        escrow.deposit(amount, sender=payer.account)
    total = escrow.spent(payer.address, node_address) + amount
    return escrow.settle_batch(
        [claim_for(payer, node_address, total, escrow_domain)], ZERO_ROOT, sender=ape.accounts.test_accounts[2]
    )  # the facilitator


def credited(tx, distributor) -> list:
    return tx.decode_logs(distributor.FeesCredited)


def epoch_of(tx, distributor) -> int:
    events = credited(tx, distributor)
    assert events, "no fees credited"
    return events[0].epoch


def epoch_end(distributor, epoch: int) -> int:
    return distributor.current_epoch_end() + (epoch - distributor.current_epoch()) * distributor.epoch_length()


def end_epoch(chain, distributor, epoch: int):
    """Mine a block at the first second after ``epoch``."""
    end = epoch_end(distributor, epoch)
    if chain.pending_timestamp < end:
        chain.mine(timestamp=end)
    else:
        chain.mine()


def split(gross: int, protocol_bps: int = 500, verifier_bps: int = 1_000) -> tuple[int, int, int]:
    protocol = (gross * protocol_bps + BPS - 1) // BPS
    verifier = min(gross * verifier_bps // BPS, gross - protocol)
    return protocol, verifier, gross - protocol - verifier


def calldata(name: str, *args) -> bytes:
    """A setter's calldata: what ``queue_change`` takes and the setter call must repeat."""
    types = SETTER_TYPES[name]
    return keccak(text=f"{name}({','.join(types)})")[:4] + encode(types, list(args))


def queue(distributor, owner, name: str, *args) -> int:
    """Queue ``name(*args)``; returns the time it becomes due."""
    distributor.queue_change(calldata(name, *args), sender=owner)
    eta = distributor.queued_eta(keccak(calldata(name, *args)))
    assert eta > 0
    return eta


def catch_up(distributor, sender):
    """Finalise every ended epoch (at most 64 per call), as a keeper would after a long pause."""
    last = distributor.epoch_now() - 1
    while distributor.next_epoch_to_finalize() <= last:
        distributor.finalize_epoch(min(last, distributor.next_epoch_to_finalize() + 63), sender=sender)


def govern(distributor, owner, chain, name: str, *args, executor=None):
    """Queue ``name(*args)``, wait out the delay, execute it (by ``executor``, default the owner), and finalise
    the (empty) epochs the wait skipped."""
    eta = queue(distributor, owner, name, *args)
    chain.pending_timestamp = eta
    tx = getattr(distributor, name)(*args, sender=executor or owner)
    catch_up(distributor, owner)
    return tx


def collect(distributor, verifier, epoch: int) -> int:
    """Collect ``verifier``'s share of ``epoch``'s pool; returns the amount."""
    tx = distributor.collect_verifier_reward(verifier.address, epoch, sender=verifier.account)
    [event] = tx.decode_logs(distributor.VerifierRewardCollected)
    assert (event.verifier, event.epoch) == (verifier.address, epoch)
    return event.amount


def heartbeat_into_next_epoch(chain, staking, distributor, actors) -> int:
    """Heartbeat ``actors`` now and move into the next epoch; returns that epoch (where they weigh)."""
    for actor in actors:
        staking.heartbeat(sender=actor.account)
    epoch = distributor.epoch_now()
    end_epoch(chain, distributor, epoch)
    return epoch + 1
