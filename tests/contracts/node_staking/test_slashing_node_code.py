"""NodeStaking slashing: attack 2: code at the node's address."""

from __future__ import annotations

from node_staking_kit import KIND_FRAUD, prove_fraud_by


def test_attack_node_with_code_at_its_address_is_still_slashable_for_equivocation(
    chain, staking, node, challenger, equivocation
):
    chain.provider.make_request("anvil_setCode", [node.address, "0x6000"])
    assert len(chain.provider.get_code(node.address)) > 0
    tx = staking.slash_equivocation(*equivocation, sender=challenger.account)
    assert tx.return_value > 0
    assert staking.nodes(node.address).jailed


def test_attack_node_with_code_at_its_address_is_still_slashable_for_fraud(
    chain, staking, node, verifiers, challenger, settled_receipt, staking_domain
):
    receipt, _ = settled_receipt
    chain.provider.make_request("anvil_setCode", [node.address, "0x6000"])
    tx = prove_fraud_by(staking, receipt, node, verifiers, challenger, staking_domain)
    assert tx.decode_logs(staking.Slashed)[0].kind == KIND_FRAUD
