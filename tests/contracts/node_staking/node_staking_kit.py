"""Plain helpers of the NodeStaking tests: receipts, verdicts, proofs, settlement, governance calldata
(fixtures live in conftest.py here and in tests/conftest.py)."""

from __future__ import annotations

import ape
from eth_abi import encode
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


KIND_FRAUD = 2


def rhash(receipt: Receipt) -> bytes:
    return receipt.struct_hash()


def verdict_sig(receipt: Receipt, valid: bool, verifier, domain) -> bytes:
    return sig(Verdict(receipt_hash="0x" + rhash(receipt).hex(), valid=valid), verifier.key, domain)


def prove_fraud_by(staking, receipt, node, voters, challenger, domain):
    """Submit `slash_fraud` for `receipt` (signed by `node`) with `Verdict(valid=false)` from `voters`."""
    return staking.slash_fraud(
        receipt.as_tuple(), sig(receipt, node.key, domain), verdicts(receipt, voters, domain), sender=challenger.account
    )


def prove_valid_by(staking, receipt, node, voters, sender, domain):
    return staking.prove_valid(
        receipt.as_tuple(), sig(receipt, node.key, domain), verdicts(receipt, voters, domain, True), sender=sender.account
    )


def deposit_and_settle(opg, escrow, escrow_domain, payer, node_address, total, deposit_amount=0, sender=None):
    """Deposit for ``payer`` (if asked), sign a voucher for ``total`` and settle it through ``settle_batch``."""
    if deposit_amount:
        deposit(opg, escrow, payer, deposit_amount)
    claim = claim_for(payer, node_address, total, escrow_domain)
    # The escrow's facilitator submits it whoever ``sender`` names (a node's own settlement would propose first and
    # wait the claim delay: tests/contracts/credit_escrow/test_settlement_priority.py).
    return escrow.settle_batch([claim], ZERO_ROOT, sender=ape.accounts.test_accounts[2])


def by_weight(staking, verifiers):
    """The ``verifiers`` fixture ordered by stake: (500, 1,000, 1,500 OPG); quorum 6,667 bps needs the two largest."""
    return sorted(verifiers, key=lambda v: staking.nodes(v.address).stake)


def dispute(opg, staking, receipt, node, payer, domain):
    opg.approve(staking, receipt.amount, sender=payer.account)
    return staking.flag(receipt.as_tuple(), sig(receipt, node.key, domain), sender=payer.account)


ZERO_ADDRESS = "0x" + "00" * 20


NOT_OWNER = "ownable: caller is not the owner"


MAX_MIN_STAKE = 10_000_000 * OPG


def stake_of(staking, account) -> int:
    return staking.nodes(account).stake


def is_active(staking, account) -> bool:
    return staking.is_active_as(account, staking.nodes(account).role)


def call_data(signature: str, types: list[str], args: list) -> bytes:
    """A setter's calldata: what ``queue_change`` takes and the setter call must repeat."""
    return keccak(text=signature)[:4] + encode(types, args)


SETTERS = {
    "set_min_stake": ("set_min_stake(uint8,uint256)", ["uint8", "uint256"]),
    "set_periods": ("set_periods(uint256,uint256,uint256)", ["uint256"] * 3),
    "set_slashing": ("set_slashing(uint256,uint256,uint256,uint256,uint256)", ["uint256"] * 5),
    "set_delay": ("set_delay(uint256)", ["uint256"]),
}
