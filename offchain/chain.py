"""``Chain``: the contracts of one deployment on one web3 connection, as every role holds them.

It is the SDK's :class:`~offchain.sdk.contracts.Contracts` (typed wrappers whose reads return dataclasses; each
keeps ``.functions``/``.events``/``.address`` of its web3 contract) plus the few reads the daemons call on the
chain as a whole. Protocol constants live in :mod:`offchain.sdk.constants`; the bootstrap in
:func:`offchain.sdk.connect.connect`.
"""

from __future__ import annotations

from pathlib import Path

from .abi import abi
from .sdk.connect import open_deployment
from .sdk.constants import ROLE_VERIFIER
from .sdk.contracts import Contracts

__all__ = ["Chain"]


class Chain(Contracts):
    """A web3 connection plus the contracts of one deployment."""

    @classmethod
    def connect(cls, rpc_url: str, deployment_file: str | Path | None = None, timeout: float = 30) -> Chain:
        """The deployment at ``rpc_url`` (its file, or ``deployments/<chainId>.json``); ConfigError if unusable."""
        conn = open_deployment(rpc_url, deployment_file, timeout=timeout, require=())
        return cls(w3=conn.w3, deployment=conn.deployment)

    def contract(self, name: str):
        """The web3 contract ``name`` of the deployment."""
        return self.w3.eth.contract(address=self.deployment.address(name), abi=abi(name))

    # Reads used by every component -------------------------------------------------------------------------
    def balance_of(self, payer: str) -> int:
        return self.escrow.balance_of(payer)

    def spent(self, payer: str, node: str) -> int:
        return self.escrow.spent(payer, node)

    def is_payable(self, node: str) -> bool:
        return self.staking.is_payable(node)

    def pay_capacity(self, node: str) -> int:
        """What settlement may still pay ``node`` now (NodeStaking v3: active stake / fraud_multiplier, less its pay
        of the current and previous dispute window); a claim above it is skipped with reason 2."""
        return self.staking.pay_capacity(node)

    def available_of(self, payer: str) -> int:
        return self.escrow.available_of(payer)

    def is_active_verifier(self, verifier: str) -> bool:
        return self.staking.is_active_as(verifier, ROLE_VERIFIER)
