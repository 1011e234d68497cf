from offchain.messages import Voucher


def test_deployment_wires_contracts(system, opg, escrow, staking, distributor, treasury):
    assert opg.totalSupply() == 10**27
    assert opg.balanceOf(treasury) == 10**27
    assert escrow.staking() == staking.address
    assert distributor.escrow() == escrow.address
    assert staking.escrow() == escrow.address


def test_voucher_digest_matches_contract(escrow, escrow_domain, payer, node):
    v = Voucher(payer=payer.address, node=node.address, max_cumulative=123)
    assert bytes(escrow.voucher_digest(payer.address, node.address, 123)) == v.digest(escrow_domain)
