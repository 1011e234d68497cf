"""What ``opg operator`` does on the chain: reads of an account's staking and reward state, and its transactions.

Every refusal is an :class:`OperatorError` whose message is one readable line: checks the contracts would fail
are made first (with the numbers and times that explain them), and a revert that still happens is reported with
the contract's own reason (``NodeStaking: ...``, ``RewardDistributor: ...``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from functools import cached_property
from typing import Any

from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.exceptions import ContractLogicError, Web3Exception

from ..amounts import WEI_PER_OPG, format_opg
from ..chain import Chain
from ..daemon.settings import ConfigError
from ..messages import Registration
from ..sdk.clock import ProtocolClock
from ..sdk.connect import connect
from ..sdk.constants import MAX_ENDPOINT_LENGTH, ROLE_INFERENCE, ROLE_NAMES, ROLE_VERIFIER, SLASH_KINDS
from ..sdk.contracts import NodeRecord
from ..sdk.tx import BroadcastError, TxFailed, TxManager, revert_message
from .settings import OperatorSettings

ROLES = {"inference": ROLE_INFERENCE, "verifier": ROLE_VERIFIER}
LOG_CHUNK = 10_000  # blocks per eth_getLogs (many public RPCs refuse larger ranges)


class OperatorError(Exception):
    """A refusal or failure; ``code`` is the exit code (1 refused/failed, 2 usage or configuration)."""

    def __init__(self, message: str, code: int = 1, **data: Any):
        super().__init__(message)
        self.code = code
        self.data = data


# Amounts and times -------------------------------------------------------------------------------------------
def parse_opg(text: str, what: str = "amount") -> int:
    """``"12.5"`` OPG -> wei; refuses zero, negatives, and more than 18 decimals."""
    try:
        value = Decimal(str(text).strip().replace("_", ""))
    except InvalidOperation:
        raise OperatorError(f"{what} {text!r} is not a number of OPG (e.g. 100 or 0.5)", 2) from None
    if not value.is_finite() or value <= 0:
        raise OperatorError(f"{what} must be a positive number of OPG, not {text!r}", 2)
    wei = value * WEI_PER_OPG
    if wei != wei.to_integral_value():
        raise OperatorError(f"{what} {text!r} has more than 18 decimals", 2)
    return int(wei)


def fmt_opg(wei: int) -> str:
    """``"1,234.5 OPG"``."""
    return f"{format_opg(wei, grouping=True)} OPG"


def fmt_time(ts: int) -> str:
    return datetime.fromtimestamp(int(ts), UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def fmt_duration(seconds: int) -> str:
    seconds = int(seconds)
    if seconds <= 0:
        return "now"
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{days} d" if days else "", f"{hours} h" if hours else "", f"{minutes} min" if minutes else "",
             f"{secs} s" if secs and not days else ""]
    return " ".join(p for p in parts if p) or "now"


def when(ts: int, now: int) -> str:
    """``"2025-06-01 12:10:00 UTC (in 9 min 58 s)"`` by chain time."""
    rel = f"in {fmt_duration(ts - now)}" if ts > now else "reached"
    return f"{fmt_time(ts)} ({rel})"


def _err_text(exc: Exception) -> str:
    text = str(getattr(exc, "message", None) or exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__


# The account -------------------------------------------------------------------------------------------------
@dataclass
class Operator:
    """One account on one deployment: reads, and transactions when it holds the key."""

    chain: Chain
    address: str
    account: LocalAccount | None = None
    settings: OperatorSettings = field(default_factory=OperatorSettings)
    _block_times: dict[int, int] = field(default_factory=dict)

    # Connection ------------------------------------------------------------------------------------------
    @classmethod
    def connect(cls, settings: OperatorSettings, need_key: bool = True, address: str | None = None) -> Operator:
        try:
            conn = connect(settings, need_key=need_key or address is None, timeout=30,
                           require=("NodeStaking", "RewardDistributor"))
        except ConfigError as exc:
            raise OperatorError(str(exc), 2) from None
        if address is None:
            if conn.account is None:
                raise OperatorError("no account: give --address, or a key (--keystore or --dev-account)", 2)
            address = conn.account.address
        return cls(chain=Chain(w3=conn.w3, deployment=conn.deployment), address=Web3.to_checksum_address(address),
                   account=conn.account, settings=settings)

    @property
    def w3(self) -> Web3:
        return self.chain.w3

    @cached_property
    def staking(self):
        return self.chain.staking

    @cached_property
    def distributor(self):
        return self.chain.distributor

    @cached_property
    def opg(self):
        return self.chain.opg

    @cached_property
    def escrow(self):
        return self.chain.escrow

    # Reads -----------------------------------------------------------------------------------------------
    def node(self) -> NodeRecord:
        return self.staking.node(self.address)

    @cached_property
    def clock(self) -> ProtocolClock:
        return ProtocolClock.of_web3(self.w3)

    def now(self) -> int:
        """The chain's clock (the latest block's timestamp): what every contract check compares against."""
        return self.clock.block_time()

    def block_time(self, number: int) -> int:
        if number not in self._block_times:
            self._block_times[number] = int(self.w3.eth.get_block(number)["timestamp"])
        return self._block_times[number]

    def min_stake(self, role: int) -> int:
        return self.staking.functions.min_stake(role).call()

    def opg_balance(self) -> int:
        return self.opg.functions.balanceOf(self.address).call()

    def epoch_now(self) -> int:
        return self.distributor.functions.epoch_now().call()

    def epoch_end(self, epoch: int) -> int:
        """When ``epoch`` ends (the distributor rolls lazily; later epochs follow at the current length)."""
        return self.distributor.epoch_end(epoch)

    def logs(self, contract, event: str, **filters: Any) -> list:
        """Every ``event`` log of ``contract`` matching the indexed ``filters``, from the deployment on."""
        start = self.settings.from_block if self.settings.from_block is not None else \
            self.chain.deployment.start_block
        end = self.w3.eth.block_number
        chunk, found = LOG_CHUNK, []
        while start <= end:
            stop = min(end, start + chunk - 1)
            try:
                found += getattr(contract.events, event)().get_logs(from_block=start, to_block=stop,
                                                                     argument_filters=filters or None)
            except (Web3Exception, ValueError) as exc:
                if chunk > 100:
                    chunk //= 4
                    continue
                raise OperatorError(f"cannot read {event} events from the chain: {_err_text(exc)}") from None
            start = stop + 1
        return found

    # Transactions ----------------------------------------------------------------------------------------
    def _require_key(self) -> LocalAccount:
        if self.account is None:
            raise OperatorError("this command signs transactions: give --keystore or --dev-account", 2)
        return self.account

    @cached_property
    def transactions(self) -> TxManager:
        return TxManager(self.w3, self._require_key(), self.chain.chain_id)

    def send(self, fn, what: str) -> dict:
        """Send ``fn`` from the account; refuses with the revert reason if it would revert."""
        account = self._require_key()
        try:
            return self.transactions.transact(fn, what, timeout=self.settings.tx_timeout)
        except ContractLogicError as exc:
            raise OperatorError(f"{what} refused: {revert_message(exc)}") from None
        except TxFailed as exc:
            if exc.receipt is not None:
                raise OperatorError(f"{what}: transaction {exc.tx_hash} reverted") from None
            raise OperatorError(f"{what}: transaction {exc.tx_hash} not mined within {self.settings.tx_timeout:g} s "
                                "(it may still be; check `opg operator status`)") from None
        except (BroadcastError, Web3Exception, ValueError) as exc:
            text = _err_text(exc)
            if "insufficient funds" in text.lower():
                raise OperatorError(f"{what}: {account.address} has not enough ETH to pay for gas") from None
            raise OperatorError(f"{what} failed: {text}") from None

    def _approve(self, amount: int, spender: str) -> dict | None:
        allowance = self.opg.functions.allowance(self.address, spender).call()
        if allowance >= amount:
            return None
        return self.send(self.opg.functions.approve(spender, amount), "approve")

    def _need_opg(self, amount: int, what: str) -> None:
        balance = self.opg_balance()
        if balance < amount:
            raise OperatorError(f"{what}: {self.address} holds {fmt_opg(balance)}, needs {fmt_opg(amount)}")

    @staticmethod
    def tx(receipt: dict | None) -> str | None:
        return None if receipt is None else "0x" + bytes(receipt["transactionHash"]).hex()

    # Commands --------------------------------------------------------------------------------------------
    def register(self, role_name: str, stake: int, endpoint: str) -> dict:
        role = ROLES[role_name]
        check_endpoint(endpoint)
        current = self.node()
        if current.role:
            raise OperatorError(f"{self.address} is already registered as {ROLE_NAMES[current.role]} "
                                "(an account has one role for life; use `stake` to add stake)")
        floor = self.min_stake(role)
        if stake < floor:
            raise OperatorError(f"stake {fmt_opg(stake)} is below the {role_name} minimum {fmt_opg(floor)}")
        self._need_opg(stake, "register")
        txs = [self._approve(stake, self.staking.address)]
        key = self._require_key().key
        signature = Registration(account=self.address).sign_with(key, self.chain.staking_domain)
        txs.append(self.send(self.staking.functions.register(role, stake, endpoint, bytes.fromhex(signature[2:])),
                             "register"))
        node = self.node()
        return {"address": self.address, "role": role_name, "stake": str(node.stake), "endpoint": endpoint,
                "warmupEndsAt": node.fresh_since + self.staking.functions.warmup().call(),
                "txs": [self.tx(t) for t in txs if t]}

    def add_stake(self, amount: int) -> dict:
        node = self._registered()
        self._need_opg(amount, "stake")
        txs = [self._approve(amount, self.staking.address)]
        txs.append(self.send(self.staking.functions.add_stake(amount), "stake"))
        after = self.node()
        return {"address": self.address, "role": ROLE_NAMES[after.role], "added": str(amount),
                "stake": str(after.stake),
                "wasJailed": node.jailed, "jailed": after.jailed,
                "warmupEndsAt": after.fresh_since + self.staking.functions.warmup().call(),
                "txs": [self.tx(t) for t in txs if t]}

    def unbond(self, amount: int | None) -> dict:
        node = self._registered()
        amount = node.stake if amount is None else amount
        if node.stake == 0:
            raise OperatorError("no active stake to unbond")
        if amount > node.stake:
            raise OperatorError(f"cannot unbond {fmt_opg(amount)}: active stake is {fmt_opg(node.stake)}")
        receipt = self.send(self.staking.functions.request_unbond(amount), "unbond")
        after = self.node()
        return {"address": self.address, "amount": str(amount), "stake": str(after.stake),
                "unbonding": str(after.unbonding), "withdrawableAt": self.withdrawable_at(after),
                "txs": [self.tx(receipt)]}

    def withdrawable_at(self, node: NodeRecord) -> int:
        """When ``withdraw_unbonded`` stops refusing: ``unbonding_period`` after the latest unbond request (NodeStaking
        v3: settlements after the request do not delay it, unbonding stake backs no new pay)."""
        return node.unbond_ready_at

    def withdraw(self) -> dict:
        node = self._registered()
        if node.unbonding == 0:
            raise OperatorError("nothing unbonding: request it first with `opg operator unbond AMOUNT`")
        now, ready = self.now(), self.withdrawable_at(node)
        if now < ready:
            why = "still unbonding" if now < node.unbond_ready_at else \
                "still disputable (a dispute window after the node's last settlement)"
            raise OperatorError(f"{why}: {fmt_opg(node.unbonding)} withdrawable from {when(ready, now)}",
                                withdrawableAt=ready, unbonding=str(node.unbonding))
        receipt = self.send(self.staking.functions.withdraw_unbonded(), "withdraw")
        return {"address": self.address, "amount": str(node.unbonding), "txs": [self.tx(receipt)],
                "balance": str(self.opg_balance())}

    def set_endpoint(self, endpoint: str) -> dict:
        check_endpoint(endpoint)
        self._registered()
        old = self.staking.functions.endpoint(self.address).call()
        receipt = self.send(self.staking.functions.set_endpoint(endpoint), "set-endpoint")
        return {"address": self.address, "endpoint": endpoint, "previous": old, "txs": [self.tx(receipt)]}

    def jail_terms(self, node: NodeRecord) -> dict:
        window = self.staking.functions.dispute_window().call()
        needed = max(node.restore_stake, self.min_stake(node.role)) if node.role else 0
        return {"since": node.jailed_at, "until": node.jailed_at + window, "restoreStake": str(needed),
                "missingStake": str(max(0, needed - node.stake))}

    def unjail(self) -> dict:
        node = self._registered()
        if not node.jailed:
            raise OperatorError(f"{self.address} is not jailed")
        terms, now = self.jail_terms(node), self.now()
        if now < terms["until"]:
            raise OperatorError(f"jail not over: it ends {when(terms['until'], now)}"
                                + self._restore_hint(terms), **terms)
        if int(terms["missingStake"]):
            raise OperatorError("jail not over: active stake must be back at "
                                f"{fmt_opg(int(terms['restoreStake']))} (now {fmt_opg(node.stake)}); add "
                                f"{fmt_opg(int(terms['missingStake']))} with `opg operator stake "
                                f"{format_opg(int(terms['missingStake']))}`", **terms)
        receipt = self.send(self.staking.functions.unjail(), "unjail")
        return {"address": self.address, "txs": [self.tx(receipt)]}

    @staticmethod
    def _restore_hint(terms: dict) -> str:
        missing = int(terms["missingStake"])
        return f", and active stake must be back at {fmt_opg(int(terms['restoreStake']))} (add " \
               f"{fmt_opg(missing)})" if missing else ""

    def heartbeat(self) -> dict:
        node = self._registered()
        if node.role != ROLE_VERIFIER:
            raise OperatorError("heartbeat is for verifiers; this account is an inference node")
        receipt = self.send(self.staking.functions.heartbeat(), "heartbeat")
        epoch = self.epoch_now() + 1
        weight = self.staking.functions.weight_in(epoch, self.address).call()
        return {"address": self.address, "epoch": epoch, "weight": str(weight), "txs": [self.tx(receipt)]}

    def _registered(self) -> NodeRecord:
        node = self.node()
        if not node.role:
            raise OperatorError(f"{self.address} is not registered: run `opg operator register` first")
        return node

    # Rewards ---------------------------------------------------------------------------------------------
    def reward_epochs(self) -> dict:
        """Uncollected shares of ended epochs: verifier pools (epochs this account has snapshot weight in, found
        from its Heartbeat events) and emissions (epochs it settled fees in, from FeesCredited events)."""
        d = self.distributor.functions
        current = self.epoch_now()
        verifier, emission, emission_pending = [], [], []
        weighted = {int(e["args"]["epoch"]) for e in self.logs(self.staking, "Heartbeat", verifier=self.address)}
        for epoch in sorted(e for e in weighted if e < current):
            if d.verifier_collected(epoch, self.address).call():
                continue
            weight = self.staking.functions.weight_in(epoch, self.address).call()
            pool = d.epoch_verifier_fees(epoch).call()
            if weight == 0 or pool == 0:
                continue
            total = self.staking.functions.total_weight_in(epoch).call()
            verifier.append({"epoch": epoch, "amount": str(pool * weight // total)})
        paid = {int(e["args"]["epoch"]) for e in self.logs(self.distributor, "FeesCredited", node=self.address)}
        for epoch in sorted(e for e in paid if e < current):
            if d.emission_collected(epoch, self.address).call():
                continue
            fees = d.node_epoch_fees(epoch, self.address).call()
            if fees == 0:
                continue
            if d.epoch_finalized(epoch).call():
                share = d.epoch_emission(epoch).call() * fees // d.epoch_fees(epoch).call()
                if share:
                    emission.append({"epoch": epoch, "amount": str(share)})
            elif self._emission_possible():
                emission_pending.append(epoch)
        return {"verifier": verifier, "emission": emission, "emissionPending": emission_pending}

    def _emission_possible(self) -> bool:
        d = self.distributor.functions
        return (d.emission_reserve().call() > 0 and d.emission_per_epoch().call() > 0
                and d.max_emission_per_fee_bps().call() > 0)

    def claim(self) -> dict:
        """Collect every uncollected verifier-pool and emission share of ended epochs, then claim everything."""
        self._require_key()
        found = self.reward_epochs()
        d = self.distributor.functions
        txs, collected_verifier, collected_emission = [], [], []
        for item in found["verifier"]:
            receipt = self.send(d.collect_verifier_reward(self.address, item["epoch"]),
                                f"collect verifier reward of epoch {item['epoch']}")
            txs.append(self.tx(receipt))
            collected_verifier.append({"epoch": item["epoch"], "amount": str(self._collected(
                receipt, "VerifierRewardCollected"))})
        for epoch in sorted({i["epoch"] for i in found["emission"]} | set(found["emissionPending"])):
            # Epochs finalise in order, at most 64 at a time.
            while epoch >= d.next_epoch_to_finalize().call() + 64:
                target = d.next_epoch_to_finalize().call() + 63
                txs.append(self.tx(self.send(d.finalize_epoch(target), f"finalize epoch {target}")))
            receipt = self.send(d.collect_emission(self.address, epoch), f"collect emission of epoch {epoch}")
            txs.append(self.tx(receipt))
            collected_emission.append({"epoch": epoch, "amount": str(self._collected(receipt,
                                                                                     "EmissionCollected"))})
        claimable = d.claimable_of(self.address).call()
        claimed = 0
        if claimable:
            receipt = self.send(d.claim(), "claim")
            txs.append(self.tx(receipt))
            claimed = sum(e["args"]["amount"] for e in self.distributor.events.Claimed().process_receipt(receipt))
        return {"address": self.address, "claimed": str(claimed), "verifierRewards": collected_verifier,
                "emissions": collected_emission, "txs": txs, "balance": str(self.opg_balance())}

    def _collected(self, receipt: dict, event: str) -> int:
        return sum(e["args"]["amount"] for e in getattr(self.distributor.events, event)().process_receipt(receipt))

    # Status ----------------------------------------------------------------------------------------------
    def status(self, probe: bool = True) -> dict:
        node, now = self.node(), self.now()
        role = ROLE_NAMES.get(node.role, str(node.role))
        s = self.staking.functions
        out: dict[str, Any] = {
            "address": self.address, "chainId": self.chain.chain_id, "chainTime": now, "role": role,
            "registered": bool(node.role),
            "balances": {"opg": str(self.opg_balance()), "eth": str(self.w3.eth.get_balance(self.address))},
        }
        if not node.role:
            out["minStake"] = {name: str(self.min_stake(r)) for name, r in ROLES.items()}
            return out
        warmup = s.warmup().call()
        fresh = 0 if node.fresh == 0 or now >= node.fresh_since + warmup else node.fresh
        endpoint = s.endpoint(self.address).call()
        epoch = self.epoch_now()
        out.update({
            "active": s.is_active_as(self.address, node.role).call(),
            "stake": str(node.stake), "warmStake": str(node.stake - fresh), "freshStake": str(fresh),
            "warmAt": node.fresh_since + warmup if fresh else None,
            "minStake": str(self.min_stake(node.role)),
            "unbonding": str(node.unbonding),
            "withdrawableAt": self.withdrawable_at(node) if node.unbonding else None,
            "jailed": node.jailed, "jail": self.jail_terms(node) if node.jailed else None,
            "endpoint": endpoint, "endpointHealth": probe_endpoint(endpoint) if probe else None,
            "epoch": epoch, "epochEndsAt": self.epoch_end(epoch),
            "voteWeight": str(s.vote_weight(self.address).call()),
        })
        if node.role == ROLE_INFERENCE:
            out["payable"] = s.is_payable(self.address).call()
        else:
            weight_now = s.weight_in(epoch, self.address).call()
            weight_next = s.weight_in(epoch + 1, self.address).call()
            beats = self.logs(self.staking, "Heartbeat", verifier=self.address)
            last = beats[-1] if beats else None
            out.update({
                "live": weight_now > 0 and not node.jailed,
                "weightThisEpoch": str(weight_now), "weightNextEpoch": str(weight_next),
                "heartbeatDue": weight_next == 0,
                "lastHeartbeat": None if last is None else {
                    "epoch": int(last["args"]["epoch"]) - 1, "forEpoch": int(last["args"]["epoch"]),
                    "weight": str(last["args"]["weight"]), "block": last["blockNumber"],
                    "time": self.block_time(last["blockNumber"])},
                "verdicts": self.verdicts_given(),
                "flags": [{"receiptHash": "0x" + bytes(e["args"]["receipt_hash"]).hex(), "node": e["args"]["node"],
                           "block": e["blockNumber"], "tx": "0x" + bytes(e["transactionHash"]).hex()}
                          for e in self.logs(self.staking, "Flagged", flagger=self.address)],
            })
        rewards = self.reward_epochs()
        claimable = self.distributor.functions.claimable_of(self.address).call()
        uncollected = sum(int(i["amount"]) for i in rewards["verifier"] + rewards["emission"])
        out["rewards"] = {"claimable": str(claimable), "uncollected": str(uncollected),
                          "total": str(claimable + uncollected), **rewards,
                          "feesSettled": str(sum(e["args"]["gross"] for e in self.logs(
                              self.distributor, "FeesCredited", node=self.address)))}
        out["slashes"] = [{"kind": SLASH_KINDS.get(e["args"]["kind"], str(e["args"]["kind"])),
                           "amount": str(e["args"]["amount"]), "refund": str(e["args"]["refund"]),
                           "evidence": "0x" + bytes(e["args"]["evidence"]).hex(), "block": e["blockNumber"],
                           "time": self.block_time(e["blockNumber"]),
                           "tx": "0x" + bytes(e["transactionHash"]).hex()}
                          for e in self.logs(self.staking, "Slashed", node=self.address)]
        if self.settings.relayer_url:
            out["relayerSlashes"], out["relayerError"] = relayer_slashes(self.settings.relayer_url, self.address)
        return out

    def verdicts_given(self) -> list[dict]:
        """This verifier's verdicts that a proof carried on-chain (``slash_fraud`` / ``prove_valid`` calldata)."""
        found = []
        for event, valid in (("FraudProven", False), ("ValidityProven", True)):
            for log in self.logs(self.staking, event):
                tx = self.w3.eth.get_transaction(log["transactionHash"])
                if (tx.get("to") or "").lower() != self.staking.address.lower():
                    continue  # submitted through another contract: not decodable here
                try:
                    _fn, args = self.staking.decode_function_input(tx["input"])
                except ValueError:
                    continue
                signers = [v[0] if isinstance(v, (tuple, list)) else v["verifier"] for v in args.get("verdicts", [])]
                if any(s.lower() == self.address.lower() for s in signers):
                    found.append({"receiptHash": "0x" + bytes(log["args"]["receipt_hash"]).hex(),
                                  "node": log["args"]["node"], "valid": valid, "block": log["blockNumber"],
                                  "time": self.block_time(log["blockNumber"]),
                                  "tx": "0x" + bytes(log["transactionHash"]).hex()})
        return sorted(found, key=lambda v: v["block"])


def check_endpoint(endpoint: str) -> None:
    if not endpoint.startswith(("http://", "https://")) or len(endpoint) <= len("https://"):
        raise OperatorError(f"endpoint {endpoint!r} must be an http(s):// URL", 2)
    if len(endpoint.encode()) > MAX_ENDPOINT_LENGTH:
        raise OperatorError(f"endpoint is longer than {MAX_ENDPOINT_LENGTH} bytes", 2)


def probe_endpoint(endpoint: str, timeout: float = 2.0) -> dict:
    """``GET <endpoint>/healthz``: whether the daemon behind the registered endpoint answers."""
    import httpx

    started = time.monotonic()
    try:
        res = httpx.get(endpoint.rstrip("/") + "/healthz", timeout=timeout)
    except httpx.HTTPError as exc:
        return {"ok": False, "error": exc.__class__.__name__}
    return {"ok": res.status_code == 200, "status": res.status_code,
            "ms": round((time.monotonic() - started) * 1000)}


def relayer_slashes(url: str, address: str) -> tuple[list[dict], str | None]:
    """The relayer's slashing submissions whose subject is ``address`` (GET /slashes)."""
    import httpx

    try:
        res = httpx.get(f"{url}/slashes", params={"limit": 1000}, timeout=10)
        res.raise_for_status()
        rows = res.json()
    except (httpx.HTTPError, ValueError) as exc:
        return [], f"cannot read {url}/slashes: {exc.__class__.__name__}"
    return [r for r in rows if str(r.get("subject", "")).lower() == address.lower()], None
