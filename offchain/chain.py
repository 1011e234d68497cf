"""Web3 access to a deployed system, found through ``deployments/<chainId>.json``."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from web3 import Web3

from .abi import abi
from .deployments import Deployment, load_deployment
from .messages import Domain

ROLE_INFERENCE = 1
ROLE_VERIFIER = 2
SKIP_REASONS = {
    0: "settled",
    1: "stale: the channel already paid this total",
    2: "node not payable (unregistered or jailed)",
    3: "bad voucher signature (not the payer's, or an expired session key's)",
    4: "payer balance too low",
    5: "session key allowance exceeded",
}


@dataclass
class Chain:
    """A web3 connection plus the four contracts of one deployment."""

    w3: Web3
    deployment: Deployment

    @classmethod
    def connect(cls, rpc_url: str, deployment_file: str | Path | None = None, timeout: float = 30) -> Chain:
        w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": timeout}))
        chain_id = w3.eth.chain_id
        deployment = load_deployment(chain_id=chain_id, path=deployment_file)
        return cls(w3=w3, deployment=deployment)

    @property
    def chain_id(self) -> int:
        return self.deployment.chainId

    def contract(self, name: str):
        return self.w3.eth.contract(address=self.deployment.address(name), abi=abi(name))

    @cached_property
    def opg(self):
        return self.contract("OPG")

    @cached_property
    def escrow(self):
        return self.contract("CreditEscrow")

    @cached_property
    def staking(self):
        return self.contract("NodeStaking")

    @cached_property
    def distributor(self):
        return self.contract("RewardDistributor")

    @cached_property
    def escrow_domain(self) -> Domain:
        return Domain.escrow(self.chain_id, self.deployment.address("CreditEscrow"))

    @cached_property
    def staking_domain(self) -> Domain:
        return Domain.staking(self.chain_id, self.deployment.address("NodeStaking"))

    # Reads used by every component -------------------------------------------------------------------------
    def balance_of(self, payer: str) -> int:
        return self.escrow.functions.balance_of(payer).call()

    def spent(self, payer: str, node: str) -> int:
        return self.escrow.functions.spent(payer, node).call()

    def is_active_inference(self, node: str) -> bool:
        return self.staking.functions.is_active_as(node, ROLE_INFERENCE).call()

    def is_payable(self, node: str) -> bool:
        return self.staking.functions.is_payable(node).call()

    def pay_capacity(self, node: str) -> int:
        """What settlement may still pay ``node`` now (NodeStaking v3: active stake / fraud_multiplier, less its pay
        of the current and previous dispute window); a claim above it is skipped with reason 2."""
        return self.staking.functions.pay_capacity(node).call()

    def available_of(self, payer: str) -> int:
        return self.escrow.functions.available_of(payer).call()

    def is_active_verifier(self, verifier: str) -> bool:
        return self.staking.functions.is_active_as(verifier, ROLE_VERIFIER).call()
