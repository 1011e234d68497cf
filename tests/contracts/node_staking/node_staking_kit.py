"""Plain helpers of the NodeStaking v3 attack tests (fixtures live in tests/conftest.py)."""

from __future__ import annotations

from eth_utils import keccak

from offchain.messages import Claim, Receipt, Verdict, Voucher

OPG = 10**18
BPS = 10_000
INFERENCE = 1
VERIFIER = 2
SETTLED = 0
SKIP_NODE_NOT_PAYABLE = 2
ZERO_ROOT = b"\x00" * 32


def b32(label: str) -> str:
    return "0x" + keccak(text=label).hex()


def make_receipt(node, payer, chain, *, request="req-1", output="out-1", amount=10 * OPG, cumulative=None,
                 timestamp=None) -> Receipt:
    """A receipt signed (later) by ``node`` for ``payer``: ``amount`` on top of ``cumulative - amount``."""
    return Receipt(
        request_id=b32(request),
        payer=payer.address,
        node=node.address,
        model_id=b32("model"),
        input_hash=b32("input"),
        output_hash=b32(output),
        amount=amount,
        cumulative=amount if cumulative is None else cumulative,
        timestamp=chain.pending_timestamp if timestamp is None else timestamp,
    )


def sig(message, key, domain) -> bytes:
    return bytes.fromhex(message.sign_with(key, domain)[2:])


def verdicts(receipt: Receipt, signers, domain, valid: bool = False) -> list[tuple]:
    """``SignedVerdict`` tuples, verifiers in ascending address order."""
    digest = "0x" + receipt.struct_hash().hex()
    ordered = sorted(signers, key=lambda a: int(a.address, 16))
    return [(v.address, sig(Verdict(receipt_hash=digest, valid=valid), v.key, domain)) for v in ordered]


def prove_fraud(staking, receipt, node, voters, sender, domain):
    return staking.slash_fraud(
        receipt.as_tuple(), sig(receipt, node.key, domain), verdicts(receipt, voters, domain), sender=sender
    )


def prove_valid(staking, receipt, node, voters, sender, domain):
    return staking.prove_valid(
        receipt.as_tuple(), sig(receipt, node.key, domain), verdicts(receipt, voters, domain, True), sender=sender
    )


def claim_for(payer, node_address, total, escrow_domain) -> tuple:
    voucher = Voucher(payer=payer.address, node=node_address, max_cumulative=total)
    return Claim(payer=payer.address, node=node_address, max_cumulative=total,
                 signature=voucher.sign_with(payer.key, escrow_domain), total=total).as_tuple()


def deposit(opg, escrow, payer, amount) -> None:
    opg.approve(escrow, amount, sender=payer.account)
    escrow.deposit(amount, sender=payer.account)


def settle(escrow, escrow_domain, facilitator, payer, node_address, total):
    """Settle ``payer``'s voucher for ``total`` to the node through the escrow's facilitator (the relayer)."""
    return escrow.settle_batch([claim_for(payer, node_address, total, escrow_domain)], ZERO_ROOT, sender=facilitator)


def skip_reasons(escrow, tx) -> list[int]:
    return [e.reason for e in tx.decode_logs(escrow.ClaimSkipped)]


def total_stake(staking, account) -> int:
    record = staking.nodes(account)
    return record.stake + record.unbonding


def bps_of(total: int, bps: int) -> int:
    return (total * bps + BPS - 1) // BPS


def wait(chain, seconds: int) -> None:
    chain.pending_timestamp += seconds
    chain.mine()


def relive(chain, staking, distributor, actors) -> None:
    """Heartbeat ``actors`` and move into the next epoch, where their recorded weights count."""
    for actor in actors:
        staking.heartbeat(sender=actor.account)
    epoch = distributor.epoch_now()
    while distributor.epoch_now() == epoch:
        wait(chain, 600)
