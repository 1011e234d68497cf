"""The deployed system is wired as the deployment record says, its governance delays cover every period the
participants rely on, and the SDK's digests match the contracts'."""

from eth_utils import keccak

from offchain.messages import Receipt, Voucher

DAY = 86_400


def test_deployment_wires_contracts(system, escrow, staking, distributor, opg):
    assert escrow.staking() == staking.address
    assert escrow.distributor() == distributor.address
    assert distributor.escrow() == escrow.address
    assert distributor.staking() == staking.address
    assert staking.escrow() == escrow.address
    assert staking.distributor() == distributor.address
    assert system.deployment.address("OPG") == opg.address
    assert system.deployment.address("CreditEscrow") == escrow.address
    assert system.deployment.address("NodeStaking") == staking.address
    assert system.deployment.address("RewardDistributor") == distributor.address


def test_deployment_governance_delays_exceed_every_period_by_a_day(escrow, staking, distributor, params):
    # A queued change must not take effect before anyone relying on the old value can leave: a payer's
    # withdrawal (thaw), a staker's exit (unbonding), a fresh verifier's warm-up, and an epoch's pool.
    periods = (
        escrow.thaw_period(),
        staking.unbonding_period(),
        staking.warmup(),
        distributor.epoch_length(),
    )
    assert periods == (params.thaw_period, params.unbonding_period, params.warmup, params.epoch_length)
    floor = max(periods) + DAY
    assert params.delay == floor
    for contract in (escrow, staking, distributor):
        assert contract.delay() >= floor
        assert contract.delay() == params.delay
        assert contract.GRACE_PERIOD() == DAY


def test_genesis_mints_the_whole_supply_to_the_treasury(project, deployer, accounts):
    treasury = accounts[5]
    token = project.OPG.deploy(treasury, sender=deployer)
    assert token.totalSupply() == 10**27
    assert token.balanceOf(treasury) == 10**27
    assert token.balanceOf(deployer) == 0


def test_voucher_digest_matches_contract(escrow, escrow_domain, payer, node):
    v = Voucher(payer=payer.address, node=node.address, max_cumulative=123)
    assert bytes(escrow.voucher_digest(payer.address, node.address, 123)) == v.digest(escrow_domain)


def test_receipt_hash_matches_contract(staking, payer, node):
    receipt = Receipt(
        request_id="0x" + keccak(text="smoke").hex(),
        payer=payer.address,
        node=node.address,
        model_id="0x" + keccak(text="model").hex(),
        input_hash="0x" + keccak(text="in").hex(),
        output_hash="0x" + keccak(text="out").hex(),
        amount=5,
        cumulative=9,
        timestamp=1_700_000_000,
    )
    assert bytes(staking.receipt_hash(receipt.as_tuple())) == receipt.struct_hash()
