"""The Node: chain connection, key, models, store, channel state, payments, outbox and payload desk, wired once.

Construction connects to the chain, loads the key (refusing a dev key off chain 31337), loads the backends, opens the
store (refusing one made for another chain, deployment or key) and rebuilds every channel's state from it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from web3 import Web3

from ..backends import load_backend
from ..daemon.plugins import install_plugins
from ..daemon.worker import Backoff, Supervisor
from ..messages import SignedVoucher
from ..sdk.connect import connect
from ..sdk.relayer_client import RelayerClient, RelayerUnavailable
from .catalog import Catalog, ServedModel
from .chainview import ChainView
from .channels import Channels
from .config import ConfigError, NodeSettings, load_pricing_file, parse_backends
from .events import NodeEvents
from .metrics import NodeMetrics
from .outbox import Outbox
from .payloads import PayloadDesk
from .payments import Payments
from .store import NodeStore
from .x402 import Offer

log = logging.getLogger("opg.node")


def build_catalog(settings: NodeSettings) -> Catalog:
    default = settings.pricing_default()
    per_model: dict = {}
    if settings.pricing is not None:
        default, per_model = load_pricing_file(settings.pricing, default)
    models = []
    for spec in parse_backends(settings.backend):
        try:
            backend = load_backend(spec.spec, **spec.options)
        except ValueError as exc:
            raise ConfigError(f"invalid setting backend: {exc}") from None
        except Exception as exc:
            raise ConfigError(f"cannot load backend {spec.spec!r}: {exc}") from None
        models.append(ServedModel(name=backend.name, backend=backend, pricing=per_model.get(backend.name, default)))
    unknown = sorted(set(per_model) - {m.name for m in models})
    if unknown:
        raise ConfigError(f"pricing file {settings.pricing} prices {unknown[0]!r}, which this node does not serve "
                          f"(it serves {', '.join(m.name for m in models)})")
    try:
        return Catalog(models, settings.max_tokens, settings.max_tokens_limit)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


class Node:
    def __init__(self, settings: NodeSettings):
        self.settings = settings
        self.started = time.time()
        self.catalog = build_catalog(settings)  # first: a bad backend or pricing file fails before any network call
        conn = connect(settings, require=("OPG", "CreditEscrow", "NodeStaking"))  # refuses a dev key off 31337 first
        assert conn.account is not None
        self.account, self.address, self.chain_id = conn.account, conn.account.address, conn.chain_id
        self.deployment, self.network = conn.deployment, conn.network
        contracts = conn.contracts
        self.escrow_address, self.staking_address = contracts.escrow.address, contracts.staking.address
        self.opg_address = contracts.opg.address
        domain = contracts.opg.functions.eip712Domain().call()
        self.escrow_domain, self.staking_domain = conn.escrow_domain, conn.staking_domain
        self.metrics, self.events = NodeMetrics(), NodeEvents()
        self.store = NodeStore(settings.store)
        self.store.on_commit = self.metrics.store_commit.observe
        self.store.open(self.chain_id, self.escrow_address, self.staking_address, self.address)
        self.channels = Channels()
        for payer, cumulative, voucher in self.store.channels():
            best = SignedVoucher.model_validate({"payer": voucher["payer"], "node": voucher["node"],
                                                 "max_cumulative": voucher["maxCumulative"],
                                                 "signature": voucher["signature"]}) if voucher else None
            self.channels.restore(payer, cumulative, best)
        self.chain = ChainView(settings.rpc_url, self.deployment, self.address, settings.settled_ttl)
        self.relayer = RelayerClient(settings.relayer_url, settings.relayer_timeout,
                                     settle_timeout=settings.exact_timeout + 5, user_agent="opg-node")
        self.supervisor = Supervisor()
        wake_outbox = self.supervisor.add(Outbox(self.store, self.relayer, settings.outbox_batch, self.metrics,
                                                 handed_over=self.events.handed_over.publish),
                                          backoff=Backoff(0.25, settings.outbox_max_backoff),
                                          quiet=(RelayerUnavailable,))
        self.offer = Offer(network=self.network, node=self.address, asset=self.opg_address,
                           escrow=self.escrow_address, staking=self.staking_address, token_name=domain[1],
                           token_version=domain[2])
        self.payments = Payments(
            account=self.account, network=self.network, offer=self.offer, chain=self.chain, relayer=self.relayer,
            store=self.store, channels=self.channels, escrow_domain=self.escrow_domain,
            staking_domain=self.staking_domain, max_unsettled=settings.max_unsettled_wei,
            require_relayer=settings.require_relayer_verify, metrics=self.metrics, on_receipt=self._on_receipt,
            on_exact_settled=self.events.exact_settled.publish)
        self._wake_outbox = wake_outbox
        self.payloads = PayloadDesk(self.address, self.store, self.chain, self.staking_domain, self.metrics)
        self.metrics.gauge("opg_node_outbox_backlog", "Receipts not yet handed to the relayer.",
                           lambda: {(): self.store.outbox_counts().get("pending", 0)})
        self.metrics.gauge("opg_node_outbox_refused", "Receipts the relayer refused (not retried).",
                           lambda: {(): self.store.outbox_counts().get("refused", 0)})
        self.metrics.gauge("opg_node_requests_in_flight", "Paid opg-credit requests running now.",
                           lambda: {(): self.channels.in_flight_requests()})
        install_plugins(self.events, "node")
        log.info("node %s on chain %d: %d channel(s) restored, %d receipt(s) to hand over", self.address,
                 self.chain_id, len(self.channels.all()), self.store.outbox_counts().get("pending", 0))

    def _on_receipt(self, receipt_id: str) -> None:
        """A receipt was committed: announce it, wake the outbox."""
        self.events.receipt_stored.publish(receipt_id)
        self._wake_outbox.set()

    def start(self) -> None:
        self.resolve_exact()
        self.supervisor.start()

    def resolve_exact(self) -> None:
        """Before serving: each exact authorization a previous run claimed and never recorded settled or failed is
        settled if the token says it was used (the relayer made the transfer), else released (nothing moved; the
        payer's retry of it pays its request). Unreadable chain: left for the next start."""
        for key in self.store.exact_unresolved():
            payer, nonce = key.split(":")
            try:
                used = self.chain.chain().opg.functions.authorizationState(
                    Web3.to_checksum_address(payer), bytes.fromhex(nonce[2:])).call(block_identifier="pending")
            except Exception as exc:
                log.warning("exact payment %s: cannot read its authorization state (%s); left as it is", key, exc)
                continue
            if used:
                self.store.exact_update(key, "settled", None, "found used on-chain after a restart")
            else:
                self.store.exact_release(key)
            log.warning("exact payment %s left unresolved by the last run: %s", key,
                        "used on-chain, recorded settled" if used else "not used on-chain, released")

    def stop(self, grace: float = 5.0) -> None:
        """After the HTTP server stopped: let requests still generating finish (``grace`` s), hand over what the
        relayer takes now, close the backends and the store."""
        deadline = time.monotonic() + grace
        while self.channels.in_flight_requests() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.supervisor.stop(timeout=5.0 + 2 * self.relayer.timeout)  # the outbox's last flush included
        for model in self.catalog.list():
            close = getattr(model.backend, "close", None) or getattr(getattr(model.backend, "inner", None),
                                                                       "close", None)
            if callable(close):
                try:
                    close()
                except Exception:
                    pass
        left = self.store.outbox_counts().get("pending", 0)
        self.store.close()
        log.info("node stopped: %d receipt(s) left to hand over", left)

    def health(self) -> dict[str, Any]:
        """Blocking. ``ok`` = chain reachable, store usable, outbox running (a relayer that is down does not make the
        node unhealthy: it still serves and its outbox keeps the receipts)."""
        chain_ok, status, last_error = True, {}, None
        try:
            status = self.chain.status()
        except Exception as exc:
            chain_ok, last_error = False, f"chain: {exc.__class__.__name__}: {str(exc)[:200]}"
        try:
            store_ok = self.store.ping()
            counts = self.store.outbox_counts()
            oldest = self.store.outbox_oldest()
        except Exception as exc:
            store_ok, counts, oldest = False, {}, None
            last_error = f"store: {exc.__class__.__name__}: {str(exc)[:200]}"
        outbox = self.supervisor.worker_health("outbox")
        alive = outbox.alive
        return {
            "ok": chain_ok and store_ok and alive, "node": self.address, "chainId": self.chain_id,
            "network": self.network, "chainOk": chain_ok, "storeOk": store_ok,
            "registered": status.get("registered"), "active": status.get("active"),
            "payable": status.get("payable"), "jailed": status.get("jailed"), "stake": status.get("stake"),
            "endpoint": status.get("endpoint"),
            "relayer": self.settings.relayer_url, "relayerReachable": self.relayer.reachable(),
            "outboxAlive": alive, "outboxBacklog": counts.get("pending", 0),
            "outboxDelivered": counts.get("delivered", 0), "outboxRefused": counts.get("refused", 0),
            "outboxOldestAge": round(time.time() - oldest, 3) if oldest else None,
            "outboxError": outbox.last_error, "inFlight": self.channels.in_flight_requests(),
            "models": [m.name for m in self.catalog.list()], "lastError": last_error,
            "workers": [h.as_json() for h in self.supervisor.health()],
        }
