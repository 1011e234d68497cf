"""The deployed system is wired as the deployment record says, and the SDK's digests match the contracts'."""

from offchain.messages import Voucher


def test_deployment_wires_contracts(system, escrow, staking, distributor, opg):
    assert escrow.staking() == staking.address
    assert escrow.distributor() == distributor.address
    assert distributor.escrow() == escrow.address
    assert distributor.staking() == staking.address
    assert staking.escrow() == escrow.address
    assert system.deployment.address("OPG") == opg.address


def test_genesis_mints_the_whole_supply_to_the_treasury(project, deployer, accounts):
    treasury = accounts[5]
    token = project.OPG.deploy(treasury, sender=deployer)
    assert token.totalSupply() == 10**27
    assert token.balanceOf(treasury) == 10**27
    assert token.balanceOf(deployer) == 0


def test_voucher_digest_matches_contract(escrow, escrow_domain, payer, node):
    v = Voucher(payer=payer.address, node=node.address, max_cumulative=123)
    assert bytes(escrow.voucher_digest(payer.address, node.address, 123)) == v.digest(escrow_domain)
