"""What the node reads from the chain, with short caches: the payer's settled amount (``escrow.spent``), session keys
(``escrow.signer_of``), credits (``escrow.available_of``), its own registration, active verifiers, and the chain's
clock (receipts are stamped ``max(wall clock, chain clock estimate)``, a devnet's clock may run ahead of the wall,
but never far enough ahead of the chain's clock to be slashable as future-dated)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from ..deployments import Deployment
from ..sdk.clock import ProtocolClock
from ..sdk.connect import Connection, web3_of
from ..sdk.constants import ROLE_INFERENCE, ROLE_VERIFIER
from ..sdk.contracts import Contracts
from ..sdk.reads import RawReader

T = TypeVar("T")
SESSION_TTL = 5.0
STATUS_TTL = 10.0
VERIFIER_TTL = 10.0
CLOCK_REFRESH = 1.0


class ChainView:
    def __init__(self, rpc_url: str, deployment: Deployment, node: str, settled_ttl: float):
        self.rpc_url, self.deployment, self.node = rpc_url, deployment, node
        self.settled_ttl = settled_ttl
        self._conn = Connection(rpc_url=rpc_url, w3=web3_of(rpc_url), chain_id=deployment.chainId,
                                deployment=deployment, account=None)
        self._spent: dict[str, tuple[int, float]] = {}
        self._sessions: dict[tuple[str, str], tuple[int, float]] = {}
        self._verifiers: dict[str, tuple[bool, float]] = {}
        self._status: tuple[dict, float] | None = None
        # raw JSON-RPC for the reads on the request path (a fraction of web3.py's cost); typed web3 reads elsewhere
        self._reads = RawReader(rpc_url, deployment.address("CreditEscrow"), deployment.address("NodeStaking"))
        self.clock = ProtocolClock(lambda: self._reads.one(RawReader.latest_timestamp()), refresh=CLOCK_REFRESH)

    def chain(self) -> Contracts:
        """The deployment's contracts on an HTTP session of the calling thread's own."""
        return self._conn.thread_contracts()

    @staticmethod
    def _cached(cache: dict, key, ttl: float, read: Callable[[], T], fresh: bool = False) -> T:
        now = time.monotonic()
        hit = cache.get(key)
        if not fresh and hit is not None and hit[1] > now:
            return hit[0]
        value = read()
        cache[key] = (value, now + ttl)
        return value

    # Clock -------------------------------------------------------------------------------------------------------
    def chain_time(self) -> int:
        """The chain's clock (``offchain.sdk.clock.ProtocolClock``: the latest block's timestamp + the seconds since
        it was read, re-read every second); the wall clock if the chain cannot be read."""
        chain = self.clock.chain_time()
        return int(time.time()) if chain is None else int(chain)

    def now(self) -> int:
        """A receipt's timestamp: ``max(wall clock, chain clock)``, but never more than ``FUTURE_MARGIN`` s after the
        chain's clock (NodeStaking slashes a receipt dated more than 300 s after the block, ``MAX_FUTURE``)."""
        return self.clock.receipt_time()

    # Payers ------------------------------------------------------------------------------------------------------
    def spent(self, payer: str, fresh: bool = False) -> int:
        """``escrow.spent(payer, this node)``: what the channel has been paid on-chain (cached ``settled_ttl``)."""
        return self._cached(self._spent, payer, self.settled_ttl,
                            lambda: self._reads.one(self._reads.spent(payer, self.node)), fresh)

    def session_expiry(self, payer: str, key: str) -> int:
        """``escrow.signer_of(payer, key)`` expiry (0: not a session key of the payer)."""
        return self._cached(self._sessions, (payer, key), SESSION_TTL,
                            lambda: self.chain().escrow.session_key(payer, key).expiry)

    def session_allowance(self, payer: str, key: str) -> int:
        """``escrow.signer_of(payer, key)`` remaining allowance, read now."""
        return self.chain().escrow.session_key(payer, key).allowance

    def available(self, payer: str) -> int:
        """``escrow.available_of(payer)`` (balance less a pending withdrawal), read now."""
        return self.chain().escrow.available_of(payer)

    # Accounts ----------------------------------------------------------------------------------------------------
    def is_active_verifier(self, account: str) -> bool:
        """Whether ``account`` may read payloads now. A refusal is cached (``VERIFIER_TTL``), an approval never: a
        verifier that was jailed or unbonded below the minimum is refused at its next request."""
        hit = self._verifiers.get(account)
        if hit is not None and hit[1] > time.monotonic():
            return False
        active = self.chain().staking.is_active_as(account, ROLE_VERIFIER)
        if active:
            self._verifiers.pop(account, None)
        else:
            self._verifiers[account] = (False, time.monotonic() + VERIFIER_TTL)
        return active

    def status(self, fresh: bool = False) -> dict:
        """This node's registration: ``{registered, active, payable, jailed, stake, endpoint}`` (cached 10 s)."""
        now = time.monotonic()
        if not fresh and self._status is not None and self._status[1] > now:
            return self._status[0]
        staking = self.chain().staking
        record = staking.node(self.node)
        value = {
            "registered": record.is_inference,
            "active": staking.is_active_as(self.node, ROLE_INFERENCE),
            "payable": staking.is_payable(self.node),
            "jailed": record.jailed,
            "stake": str(record.stake),
            "endpoint": staking.endpoint(self.node),
        }
        self._status = (value, now + STATUS_TTL)
        return value
