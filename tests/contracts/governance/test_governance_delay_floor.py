"""R7: one governance delay floor for every contract, on-chain (titanoboa, so the chain id can be a production one).

On every chain but the local devnet (chain id 31337) the timelock module refuses any delay below ``MIN_DELAY``
(seven days), in the constructor and in ``set_delay``, in CreditEscrow, NodeStaking and RewardDistributor alike,
whatever the contract's own periods allow. On the devnet the contracts' own floors (the longest period + 1 day) stay,
so the devnet and the tests keep short periods.
"""

from __future__ import annotations

import functools
import importlib.util
from contextlib import contextmanager
from pathlib import Path

import pytest

boa = pytest.importorskip("boa")

from boa.contracts.vyper.vyper_contract import VyperContract  # noqa: E402
from eth_account import Account  # noqa: E402
from eth_utils import keccak, to_checksum_address  # noqa: E402

from offchain.deployments import Params, constructor_args  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
CONTRACTS = ROOT / "contracts"
DAY = 86_400
WEEK = 7 * DAY
PRODUCTION_CHAIN_ID = 1
DEVNET_CHAIN_ID = 31_337


def _address(name: str) -> str:
    return to_checksum_address(Account.from_key(keccak(text=f"opg-governance-test:{name}")).address)


OWNER, TREASURY, STRANGER = _address("owner"), _address("treasury"), _address("stranger")
FACILITATOR = _address("facilitator")


@pytest.fixture(autouse=True)
def _repr_without_address(monkeypatch):
    """titanoboa's error report of a reverted constructor calls repr() of a contract that has no address yet."""
    monkeypatch.setattr(
        VyperContract, "__repr__", lambda self: f"<{self.compiler_data.contract_path} at {self._address}>"
    )


@contextmanager
def chain_id(cid: int):
    """Runs the block on a chain with id `cid`, in a snapshot thrown away afterwards."""
    before = boa.env.evm.patch.chain_id
    with boa.env.anchor():
        boa.env.evm.patch.chain_id = cid
        try:
            yield
        finally:
            boa.env.evm.patch.chain_id = before


@functools.cache
def _factory(name: str):
    return boa.load_partial(str(CONTRACTS / f"{name}.vy"))


def deploy(params: Params) -> dict:
    """The four contracts, wired, owned by OWNER (as the deployment script does)."""
    with boa.env.prank(OWNER):
        opg = _factory("OPG").deploy(*constructor_args("OPG", params, treasury=TREASURY))
        distributor = _factory("RewardDistributor").deploy(
            *constructor_args("RewardDistributor", params, opg=opg.address, treasury=TREASURY)
        )
        split = {}
        if (CONTRACTS / "Evidence.vy").exists():  # NodeStaking's evidence checks, split out of it (issue 13)
            split["evidence"] = _factory("Evidence").deploy().address
        staking = _factory("NodeStaking").deploy(
            *constructor_args("NodeStaking", params, opg=opg.address, distributor=distributor.address, **split)
        )
        escrow = _factory("CreditEscrow").deploy(
            *constructor_args(
                "CreditEscrow", params, opg=opg.address, staking=staking.address, distributor=distributor.address,
                **({"facilitators": [FACILITATOR]} if _escrow_takes_facilitators() else {}),
            )
        )
        distributor.connect(escrow.address, staking.address)
        staking.connect(escrow.address)
    return {"CreditEscrow": escrow, "NodeStaking": staking, "RewardDistributor": distributor, "opg": opg}


def _escrow_takes_facilitators() -> bool:
    """Whether CreditEscrow's constructor names its facilitators (R1's defence, landing in parallel)."""
    return "facilitators_" in (CONTRACTS / "CreditEscrow.vy").read_text()


def queue_and_wait(contract, call: bytes, wait: int) -> None:
    contract.queue_change(call, sender=OWNER)
    boa.env.time_travel(seconds=wait)


def test_attack_fee_rise_on_two_days_notice_fails_on_a_production_chain():
    """The review's attack: the distributor's own floor is epoch + 1 day = 2 days in production, so the owner
    lowers its delay to 2 days and then raises the fees 10 % -> 40 % on 2 days' notice. Both steps fail."""
    params = Params()  # production: 1-day epochs, 5 % + 5 % fees
    with chain_id(PRODUCTION_CHAIN_ID):
        c = deploy(params)
        dist = c["RewardDistributor"]
        assert dist.delay() == WEEK == dist.MIN_DELAY()
        # A distributor deployed with its own floor (epoch + 1 day) as the delay.
        two_days = params.epoch_length + DAY
        with boa.reverts("timelock: delay below the floor"):
            _factory("RewardDistributor").deploy(
                *constructor_args("RewardDistributor", params.model_copy(update={"governance_delay": two_days}),
                                  opg=c["opg"].address, treasury=TREASURY),
            )
        # Lowering the delay of a running one through the queue.
        queue_and_wait(dist, dist.set_delay.prepare_calldata(two_days), WEEK)
        with boa.reverts("timelock: delay below the floor"):
            dist.set_delay(two_days, sender=STRANGER)
        assert dist.delay() == WEEK
        # The fee rise itself takes the full week of notice.
        raise_fees = dist.set_fees.prepare_calldata(2_000, 2_000, 500)
        queue_and_wait(dist, raise_fees, 2 * DAY)
        with boa.reverts("timelock: change not due"):
            dist.set_fees(2_000, 2_000, 500, sender=STRANGER)
        boa.env.time_travel(seconds=WEEK - 2 * DAY - 1)
        with boa.reverts("timelock: change not due"):
            dist.set_fees(2_000, 2_000, 500, sender=STRANGER)
        boa.env.time_travel(seconds=1)
        dist.set_fees(2_000, 2_000, 500, sender=STRANGER)
        assert (dist.protocol_fee_bps(), dist.verifier_fee_bps()) == (2_000, 2_000)


@pytest.mark.parametrize("name", ["CreditEscrow", "NodeStaking", "RewardDistributor"])
def test_attack_delay_below_seven_days_is_refused_by_every_contract_on_a_production_chain(name):
    """Short periods (an hour's thaw, a 2-day unbonding, 1-hour epochs) would allow a 3-day delay by each
    contract's own floor; off the devnet every contract still refuses anything below seven days, at deployment
    and through `set_delay`."""
    short = Params(thaw_period=3_600, dispute_window=DAY, unbonding_period=2 * DAY, warmup=DAY, epoch_length=3_600)
    assert short.delay == 3 * DAY
    with chain_id(PRODUCTION_CHAIN_ID):
        with boa.reverts("timelock: delay below the floor"):
            deploy(short)
        c = deploy(short.model_copy(update={"governance_delay": WEEK}))
        contract = c[name]
        assert contract.delay() == WEEK
        queue_and_wait(contract, contract.set_delay.prepare_calldata(WEEK - 1), WEEK)
        with boa.reverts("timelock: delay below the floor"):
            contract.set_delay(WEEK - 1, sender=STRANGER)
        assert contract.delay() == WEEK


@pytest.mark.parametrize("name", ["CreditEscrow", "NodeStaking", "RewardDistributor"])
def test_production_chain_accepts_a_delay_of_seven_days_and_changes_it_through_the_queue(name):
    with chain_id(PRODUCTION_CHAIN_ID):
        c = deploy(Params())
        contract = c[name]
        assert contract.delay() == WEEK
        queue_and_wait(contract, contract.set_delay.prepare_calldata(8 * DAY), WEEK)
        contract.set_delay(8 * DAY, sender=STRANGER)
        assert contract.delay() == 8 * DAY
        queue_and_wait(contract, contract.set_delay.prepare_calldata(WEEK), 8 * DAY)
        contract.set_delay(WEEK, sender=STRANGER)
        assert contract.delay() == WEEK


@pytest.mark.parametrize("name", ["CreditEscrow", "NodeStaking", "RewardDistributor"])
def test_devnet_chain_keeps_its_short_governance_delay(name):
    """On chain 31337 only the contract's own floor applies: the devnet's delay is 1 day + 600 s."""
    devnet = Params.devnet()
    with chain_id(DEVNET_CHAIN_ID):
        c = deploy(devnet)
        contract = c[name]
        assert contract.delay() == devnet.delay == DAY + devnet.unbonding_period
        own_floor = {
            "CreditEscrow": devnet.thaw_period,
            "NodeStaking": max(devnet.unbonding_period, devnet.warmup),
            "RewardDistributor": devnet.epoch_length,
        }[name] + DAY
        queue_and_wait(contract, contract.set_delay.prepare_calldata(own_floor), devnet.delay)
        contract.set_delay(own_floor, sender=STRANGER)
        assert contract.delay() == own_floor


def _deploy_script():
    spec = importlib.util.spec_from_file_location("opg_deploy_script", ROOT / "scripts" / "deploy.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_deploy_script_floor_is_seven_days_off_the_devnet():
    """`ape run deploy` refuses, before deploying, what the contracts would refuse on that chain."""
    script = _deploy_script()
    short = Params(thaw_period=3_600, dispute_window=DAY, unbonding_period=2 * DAY, warmup=DAY, epoch_length=3_600)
    assert script.delay_floor(short, is_devnet=True) == 3 * DAY
    assert script.delay_floor(short, is_devnet=False) == WEEK
    assert script.delay_floor(Params(), is_devnet=False) == Params().delay == WEEK
