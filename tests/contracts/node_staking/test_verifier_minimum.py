"""R6 (issue 13): no parameter change removes live verifier weight or makes one party the quorum.

v2 let the owner raise ``min_stake[VERIFIER]`` (after the delay) to its own verifier's stake: every smaller honest
verifier's heartbeat then reverted, and the owner's verifier alone was the whole live weight, so it could prove
fraud against an honest node alone. v3 binds each verifier to the lower of the current minimum and the one it
registered under (``verifier_floor``): a raise applies to verifiers that register after it.
"""

from __future__ import annotations

import ape
from eth_abi import encode
from eth_utils import keccak
from node_staking_kit import OPG, VERIFIER, make_receipt, prove_fraud, relive

from offchain.messages import Registration


def set_verifier_minimum(staking, owner, chain, amount: int) -> None:
    call = keccak(text="set_min_stake(uint8,uint256)")[:4] + encode(["uint8", "uint256"], [VERIFIER, amount])
    eta = staking.queue_change(call, sender=owner).decode_logs(staking.ChangeQueued)[0].eta
    chain.pending_timestamp = eta
    staking.set_min_stake(VERIFIER, amount, sender=owner)


def test_attack_raising_the_verifier_minimum_keeps_honest_weight_live(
    staking, node, payer, verifiers, deployer, register, make_actor, chain, staking_domain, distributor, params
):
    # The owner's verifier stakes 5,000 OPG against the honest 500 + 1,000 + 1,500; then the owner raises the
    # minimum to 5,000 OPG.
    owners = make_actor(10_000 * OPG)
    register(owners, VERIFIER, 5_000 * OPG, "http://owner.invalid")
    set_verifier_minimum(staking, deployer, chain, 5_000 * OPG)
    # Every honest verifier still heartbeats with its whole stake ...
    relive(chain, staking, distributor, [*verifiers, owners])
    epoch = distributor.epoch_now()
    assert [staking.weight_in(epoch, v.address) for v in verifiers] == [
        staking.nodes(v.address).stake for v in verifiers
    ]
    assert staking.total_weight_in(epoch) == 8_000 * OPG
    # ... so the owner's verifier alone (62.5 %) is not the quorum against an honest node.
    with ape.reverts("NodeStaking: quorum not reached"):
        prove_fraud(staking, make_receipt(node, payer, chain), node, [owners], make_actor(0).account, staking_domain)


def test_a_raised_minimum_binds_verifiers_registered_after_it(
    opg, staking, deployer, register, make_actor, chain, staking_domain
):
    set_verifier_minimum(staking, deployer, chain, 2_000 * OPG)
    late = make_actor()
    opg.approve(staking, 1_000 * OPG, sender=late.account)
    signature = bytes.fromhex(Registration(account=late.address).sign_with(late.key, staking_domain)[2:])
    with ape.reverts("NodeStaking: stake below minimum"):
        staking.register(VERIFIER, 1_000 * OPG, "http://late.invalid", signature, sender=late.account)
    register(late, VERIFIER, 2_000 * OPG, "http://late.invalid")
    assert staking.verifier_floor(late.address) == 2_000 * OPG
    staking.request_unbond(1, sender=late.account)
    assert not staking.is_active_as(late.address, VERIFIER)
    with ape.reverts("NodeStaking: not an active verifier"):
        staking.heartbeat(sender=late.account)


def test_registered_verifier_keeps_its_registration_minimum(staking, verifiers, deployer, chain, params):
    smallest = min(verifiers, key=lambda v: staking.nodes(v.address).stake)
    set_verifier_minimum(staking, deployer, chain, 100 * params.min_verifier_stake)
    assert staking.verifier_floor(smallest.address) == params.min_verifier_stake
    assert staking.is_active_as(smallest.address, VERIFIER)
    assert staking.heartbeat(sender=smallest.account).return_value == staking.nodes(smallest.address).stake
