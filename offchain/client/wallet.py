"""``OpgClient``: the payer's wallet operations on the chain (deposit, gasless deposit through the relayer, balance,
withdrawal with its thaw, session keys), and the :class:`~offchain.client.payer.Payer` that pays nodes.

    client = OpgClient(account, rpc_url, relayer_url=relayer, state="~/.opg")
    client.deposit(parse_opg("10"))                  # approve + CreditEscrow.deposit (the payer pays gas)
    client.deposit_gasless(parse_opg("10"))          # EIP-3009 ReceiveWithAuthorization, the relayer submits it
    client.balance()                                 # Balance: credits, available, withdrawal and its thaw
    client.request_withdrawal(parse_opg("5")); ...; client.withdraw()
    client.authorize_session(expires_in=86_400, allowance=parse_opg("20"))
    payer = client.payer()                           # signs with the session key when one is in force

Times compare with the time at which the chain will judge them: the pending block's timestamp (what the next
transaction is mined with), the latest block's, or the wall clock, whichever is latest; a devnet that moved its clock
ahead and mines only on demand would otherwise be judged by a stale block.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from ..amounts import format_opg
from ..chain import Chain
from ..daemon.settings import ConfigError
from ..deployments import Deployment
from ..messages import Domain, ReceiveWithAuthorization
from ..sdk.clock import ProtocolClock
from ..sdk.connect import chain_id_of, open_deployment, web3_of
from ..sdk.relayer_client import RelayerClient, RelayerUnavailable
from ..sdk.tx import FileJournal, TxFailed, TxManager, is_revert, revert_message
from .payer import Payer
from .state import ClientState


class WalletError(Exception):
    """A wallet operation the chain (or the relayer) refused; the message is one readable line."""


@dataclass
class Withdrawal:
    amount: int
    ready_at: int
    expires_at: int
    now: int

    @property
    def state(self) -> str:
        """``none``, ``thawing``, ``ready`` or ``expired``."""
        if self.amount == 0:
            return "none"
        if self.now < self.ready_at:
            return "thawing"
        return "ready" if self.now < self.expires_at else "expired"

    @property
    def seconds_left(self) -> int:
        return max(0, self.ready_at - self.now)

    def as_dict(self) -> dict:
        return {"amount": str(self.amount), "readyAt": self.ready_at, "expiresAt": self.expires_at,
                "state": self.state, "secondsLeft": self.seconds_left}


@dataclass
class Balance:
    payer: str
    opg: int  # OPG in the wallet
    eth: int
    credits: int  # CreditEscrow.balance_of (thawing credits included)
    available: int  # CreditEscrow.available_of: what nodes serve new requests against
    withdrawal: Withdrawal
    thaw_period: int
    session: dict | None = None  # {key, expiry, allowance (remaining, on-chain), inForce}
    channels: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"payer": self.payer, "opg": str(self.opg), "eth": str(self.eth), "credits": str(self.credits),
                "available": str(self.available), "withdrawal": self.withdrawal.as_dict(),
                "thawPeriod": self.thaw_period, "session": self.session, "channels": self.channels}


class OpgClient:
    """Wallet operations of one payer. ``account`` may be None for read-only use with ``payer_address``."""

    def __init__(self, account: LocalAccount | None, rpc_url: str, deployment: Deployment | str | Path | None = None,
                 *, relayer_url: str | None = None, state: ClientState | str | Path | None = None,
                 payer_address: str | None = None, timeout: float = 60):
        self.account = account
        self.rpc_url = rpc_url
        try:
            w3 = web3_of(rpc_url, timeout=30)
            chain_id = chain_id_of(w3, rpc_url)
            if isinstance(deployment, Deployment):
                if deployment.chainId != chain_id:
                    raise WalletError(f"deployment is for chain {deployment.chainId}, the RPC serves {chain_id}")
            else:
                deployment = open_deployment(rpc_url, deployment, w3=w3, chain_id=chain_id).deployment
        except ConfigError as exc:
            raise WalletError(str(exc)) from None
        self.chain = Chain(w3=w3, deployment=deployment)
        self.clock = ProtocolClock(self._judged_block_time, refresh=0.0)
        self._tx: TxManager | None = None
        self.deployment = deployment
        self.relayer_url = relayer_url.rstrip("/") if relayer_url else None
        self.state = state if isinstance(state, ClientState) else ClientState(state)
        self.address = account.address if account is not None else Web3.to_checksum_address(payer_address)
        self.timeout = timeout

    @property
    def w3(self) -> Web3:
        return self.chain.w3

    @property
    def escrow(self):
        return self.chain.escrow

    def _judged_block_time(self) -> int:
        """The pending block's timestamp (what the next transaction is mined with), or the latest block's."""
        latest = int(self.w3.eth.get_block("latest")["timestamp"])
        try:
            pending = int(self.w3.eth.get_block("pending")["timestamp"])
        except Exception:  # a node without a pending block
            pending = 0
        return max(latest, pending)

    def chain_now(self) -> int:
        """The time the chain will judge the next transaction by (see the module's docstring)."""
        return self.clock.now()

    # Transactions ---------------------------------------------------------------------------------------------
    def _transactions(self) -> TxManager:
        """The payer's transactions, written ahead to ``<state>/transactions/<chainId>/<payer>.jsonl``: a
        transaction signed by a process that died before it was mined is broadcast again by the next one."""
        if self._tx is None:
            path = self.state.root / "transactions" / str(self.chain.chain_id) / f"{self.address.lower()}.jsonl"
            self._tx = TxManager(self.w3, self.account, self.chain.chain_id, FileJournal(path))
            self._tx.resume()
        return self._tx

    def _send(self, fn: Any) -> str:
        if self.account is None:
            raise WalletError("this operation needs the payer's key (--dev-account or --keystore)")
        tm = self._transactions()
        try:
            gas = tm.estimate(fn)
        except Exception as exc:
            if is_revert(exc):
                raise WalletError(revert_message(exc)) from None
            raise
        max_fee, _tip = tm.fees()
        eth = self.w3.eth.get_balance(self.address)
        if eth < gas * max_fee:
            raise WalletError(f"{self.address} has {Web3.from_wei(eth, 'ether')} ETH, not enough for gas "
                              "(use `opg deposit --gasless` to deposit without ETH)")
        try:
            receipt = tm.transact(fn, "wallet", gas=gas, timeout=self.timeout)
        except TxFailed as exc:
            raise WalletError(f"transaction {exc.tx_hash} reverted" if exc.receipt is not None else str(exc)) from None
        return "0x" + bytes(receipt["transactionHash"]).hex()

    # Reads ----------------------------------------------------------------------------------------------------
    def withdrawal(self) -> Withdrawal:
        pending = self.escrow.withdrawal(self.address)
        thaw = self.escrow.thaw_period()
        return Withdrawal(amount=pending.amount, ready_at=pending.ready_at,
                          expires_at=pending.ready_at + thaw if pending.amount else 0, now=self.chain_now())

    def session(self) -> dict | None:
        """The stored session key (without the private key) and its on-chain expiry and remaining allowance."""
        stored = self.state.load_session(self.chain.chain_id, self.deployment.address("CreditEscrow"), self.address)
        if not stored:
            return None
        onchain = self.escrow.session_key(self.address, stored["address"])
        expiry, allowance = onchain.expiry, onchain.allowance
        now = self.chain_now()
        return {"key": stored["address"], "expiry": expiry, "allowance": str(allowance), "inForce": expiry > now,
                "secondsLeft": max(0, expiry - now), "file": str(self.state.session_path(
                    self.chain.chain_id, self.deployment.address("CreditEscrow"), self.address))}

    def balance(self) -> Balance:
        escrow = self.escrow.functions
        channels = []
        for ch in self.state.channels(self.chain.chain_id, self.deployment.address("CreditEscrow"), self.address):
            channels.append({"node": ch.node, "charged": str(ch.charged), "spent": str(escrow.spent(
                self.address, ch.node).call()), "receipts": ch.receipts, "blocked": ch.blocked})
        return Balance(
            payer=self.address, opg=self.chain.opg.functions.balanceOf(self.address).call(),
            eth=self.w3.eth.get_balance(self.address), credits=escrow.balance_of(self.address).call(),
            available=escrow.available_of(self.address).call(), withdrawal=self.withdrawal(),
            thaw_period=escrow.thaw_period().call(), session=self.session(), channels=channels,
        )

    # Deposits -------------------------------------------------------------------------------------------------
    def deposit(self, amount: int) -> dict:
        """``approve`` (if the allowance is short) and ``CreditEscrow.deposit``; the payer pays gas."""
        if amount <= 0:
            raise WalletError("deposit amount must be positive")
        held = self.chain.opg.functions.balanceOf(self.address).call()
        if held < amount:
            raise WalletError(f"{self.address} holds {format_opg(held)} OPG in its wallet, less than the "
                              f"{format_opg(amount)} OPG to deposit")
        approve_tx = None
        escrow_address = self.deployment.address("CreditEscrow")
        if self.chain.opg.functions.allowance(self.address, escrow_address).call() < amount:
            approve_tx = self._send(self.chain.opg.functions.approve(escrow_address, amount))
        tx = self._send(self.escrow.functions.deposit(amount))
        return {"transaction": tx, "approveTransaction": approve_tx, "amount": str(amount),
                "credits": str(self.escrow.functions.balance_of(self.address).call())}

    def sign_deposit_authorization(self, amount: int, valid_for: int = 3600) -> dict:
        """The ``POST /deposits`` body: an EIP-3009 ReceiveWithAuthorization of ``amount`` to the escrow."""
        if self.account is None:
            raise WalletError("a gasless deposit needs the payer's key to sign (--dev-account or --keystore)")
        auth = ReceiveWithAuthorization(owner=self.address, to=self.deployment.address("CreditEscrow"),
                                        value=amount, valid_after=0, valid_before=self.chain_now() + valid_for,
                                        nonce="0x" + secrets.token_hex(32))
        domain = Domain.token(self.chain.chain_id, self.deployment.address("OPG"))
        signature = auth.sign_with(self.account.key, domain)
        return {"authorization": {"from": auth.owner, "to": auth.to, "value": str(auth.value),
                                  "validAfter": str(auth.valid_after), "validBefore": str(auth.valid_before),
                                  "nonce": auth.nonce}, "signature": signature}

    # A gasless deposit's signed authorisation is kept until the chain has it, so that a retry (after a timeout, a
    # crash, an unreachable relayer) re-sends the same authorisation, which the relayer treats as the same deposit
    # and the token can execute only once, instead of signing a second one that would pay twice.
    def _pending_deposit_path(self) -> Path:
        return (self.state.root / "pending_deposits" / str(self.chain.chain_id)
                / f"{self.deployment.address('CreditEscrow').lower()}-{self.address.lower()}.json")

    def pending_deposit(self) -> dict | None:
        """The stored gasless deposit authorisation this client has not seen confirmed (None if there is none or it
        expired unused; ``used: true`` if the chain executed it meanwhile). The record is dropped when read as
        used or expired."""
        path = self._pending_deposit_path()
        try:
            body = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        auth = body["authorization"]
        used = self.chain.opg.functions.authorizationState(self.address, bytes.fromhex(auth["nonce"][2:])).call()
        if used or int(auth["validBefore"]) <= self.chain_now():
            path.unlink(missing_ok=True)
            return {"used": True, **body} if used else None
        return body

    def _keep_pending_deposit(self, body: dict | None) -> None:
        path = self._pending_deposit_path()
        if body is None:
            path.unlink(missing_ok=True)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(body))
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)

    def deposit_gasless(self, amount: int, relayer_url: str | None = None, valid_for: int = 3600) -> dict:
        """Sign a ReceiveWithAuthorization and have the relayer submit ``deposit_with_authorization`` (no ETH
        needed). Returns the relayer's answer ``{success, status, transaction, payer, amount, balance}`` (with
        ``resent: true`` when it re-sent an earlier, unconfirmed authorisation of the same amount).

        The signed authorisation is stored until the chain has it: a retry of a deposit that timed out re-sends
        it (the same deposit, never a second one). A stored authorisation of another amount is refused with a
        WalletError saying so, until it lands or expires."""
        url = (relayer_url or self.relayer_url or "").rstrip("/")
        if not url:
            raise WalletError("a gasless deposit needs a relayer (--relayer-url or OPG_CLIENT_RELAYER_URL)")
        if self.account is None:
            raise WalletError("a gasless deposit needs the payer's key to sign (--dev-account or --keystore)")
        pending = self.pending_deposit()
        resent = False
        if pending is not None and pending.get("used") and int(pending["authorization"]["value"]) != amount:
            pending = None  # the earlier one landed: this one is another deposit
        if pending is not None:  # the retry of a deposit this client never saw confirmed: the same authorisation
            value = int(pending["authorization"]["value"])
            if value != amount:
                raise WalletError(
                    f"an earlier gasless deposit of {format_opg(value)} OPG is not confirmed yet and may still "
                    f"complete: `opg deposit {format_opg(value)} --gasless` follows it (the same authorisation, "
                    f"never a second payment); it expires in {int(pending['authorization']['validBefore']) - self.chain_now()} s")
            body, resent = {"authorization": pending["authorization"], "signature": pending["signature"]}, True
            if pending.get("used"):
                self._keep_pending_deposit(body)  # until the relayer's answer (the same transaction) is seen
        else:
            body = self.sign_deposit_authorization(amount, valid_for)
            self._keep_pending_deposit(body)
        answer = self._post_deposit(url, body, amount)
        self._keep_pending_deposit(None)
        return {**answer, "resent": resent}

    def _post_deposit(self, url: str, body: dict, amount: int) -> dict:
        retry_hint = (f"the deposit may still complete: `opg deposit {format_opg(amount)} --gasless` re-sends the "
                      "same authorisation (never a second payment), `opg balance` shows the credits")
        relayer = RelayerClient(url, timeout=self.timeout + 10)
        try:
            for _ in range(10):
                try:
                    status, answer = relayer.deposit(body)
                except RelayerUnavailable as exc:  # unreachable, 5xx or not JSON: the authorisation may still execute
                    raise WalletError(f"{exc}; {retry_hint}") from None
                if status == 202:  # sent, not mined yet: the same body follows the same transaction
                    time.sleep(1)
                    continue
                if status != 200:
                    if status == 409 and answer.get("error") == "authorization_used":
                        # executed on chain by an earlier attempt whose answer was lost
                        return {"success": True, "status": "confirmed", "transaction": None, "payer": self.address,
                                "amount": str(amount),
                                "balance": str(self.escrow.functions.balance_of(self.address).call())}
                    self._keep_pending_deposit(None)  # refused for good: nothing can execute it through us
                    raise WalletError(f"relayer refused the deposit: {answer.get('reason') or answer}")
                return answer
            raise WalletError(f"the relayer's deposit transaction is still not mined; {retry_hint}")
        finally:
            relayer.close()

    # Withdrawals ----------------------------------------------------------------------------------------------
    def request_withdrawal(self, amount: int) -> dict:
        """Start the thaw of ``amount`` credits (replaces a pending request). Returns the withdrawal view with
        ``transaction``, ``readyAt``, ``expiresAt``, ``secondsLeft``."""
        tx = self._send(self.escrow.functions.request_withdrawal(amount))
        return {"transaction": tx, **self.withdrawal().as_dict()}

    def cancel_withdrawal(self) -> str:
        return self._send(self.escrow.functions.cancel_withdrawal())

    def withdraw(self) -> dict:
        """Complete a ready withdrawal; WalletError with the time left if it is still thawing."""
        w = self.withdrawal()
        if w.state == "none":
            raise WalletError("no withdrawal requested: `opg withdraw AMOUNT` requests one")
        if w.state == "thawing":
            raise WalletError(f"still thawing: {w.seconds_left} s left (ready at {w.ready_at})")
        if w.state == "expired":
            raise WalletError("the withdrawal request expired: request it again")
        before = self.chain.opg.functions.balanceOf(self.address).call()
        tx = self._send(self.escrow.functions.withdraw())
        paid = self.chain.opg.functions.balanceOf(self.address).call() - before
        return {"transaction": tx, "amount": str(paid),
                "credits": str(self.escrow.functions.balance_of(self.address).call())}

    # Session keys ---------------------------------------------------------------------------------------------
    def authorize_session(self, expires_in: int, allowance: int, new_key: bool = False) -> dict:
        """Authorise a session key (``CreditEscrow.authorize_signer``) for ``expires_in`` seconds and ``allowance``
        wei, stored in the state directory (mode 0600). The stored key is reused (its expiry extended, its
        remaining allowance raised to ``allowance``) while it is in force, unless ``new_key``."""
        escrow_address = self.deployment.address("CreditEscrow")
        thaw = self.escrow.functions.thaw_period().call()
        if expires_in < 2 * thaw:
            raise WalletError(f"a session key must last at least twice the thaw period ({2 * thaw} s): its vouchers "
                              "are accepted only while it has a thaw period left")
        stored = self.state.load_session(self.chain.chain_id, escrow_address, self.address)
        now = self.chain_now()
        key, address = None, None
        if stored and not new_key:
            onchain = self.escrow.session_key(self.address, stored["address"])
            expiry, remaining = onchain.expiry, onchain.allowance
            if expiry > now:
                key, address = stored["key"], stored["address"]
                if allowance < remaining:
                    raise WalletError(f"the session key's remaining allowance is {format_opg(remaining)} OPG; "
                                      "lowering it needs a new key (--new) or revocation (--revoke)")
        if key is None:
            acct = Account.create()
            key, address = "0x" + bytes(acct.key).hex(), acct.address
        expiry = now + expires_in + 30  # a margin for the block that includes it
        if stored and address == stored.get("address"):
            expiry = max(expiry, int(stored.get("expiry", 0)))
        # the key is stored before the transaction, so a crash never leaves an authorised key nobody holds
        record = {"payer": self.address, "address": address, "key": key, "expiry": expiry,
                  "allowance": str(allowance), "chainId": self.chain.chain_id, "escrow": escrow_address,
                  "createdAt": int(time.time())}
        self.state.save_session(self.chain.chain_id, escrow_address, self.address, record)
        try:
            tx = self._send(self.escrow.functions.authorize_signer(address, expiry, allowance))
        except WalletError:
            if stored and stored.get("address") != address:
                self.state.save_session(self.chain.chain_id, escrow_address, self.address, stored)
            raise
        return {"key": address, "expiry": expiry, "allowance": str(allowance), "transaction": tx}

    def revoke_session(self) -> dict:
        """``revoke_signer`` the stored key (effective after the thaw period) and delete it locally."""
        escrow_address = self.deployment.address("CreditEscrow")
        stored = self.state.load_session(self.chain.chain_id, escrow_address, self.address)
        if not stored:
            raise WalletError("no session key stored for this payer")
        tx = self._send(self.escrow.functions.revoke_signer(stored["address"]))
        expiry = self.escrow.session_key(self.address, stored["address"]).expiry
        self.state.delete_session(self.chain.chain_id, escrow_address, self.address)
        return {"key": stored["address"], "effectiveAt": expiry, "transaction": tx}

    # Paying ---------------------------------------------------------------------------------------------------
    def session_problem(self) -> str | None:
        """Why the stored session key cannot sign now, or None if it can (or none is stored): it must stay in force
        for at least the thaw period, judged by the time the chain will settle its vouchers at (the relayer and
        the escrow refuse it otherwise, and the node's pay for the answer would be lost)."""
        stored = self.state.load_session(self.chain.chain_id, self.deployment.address("CreditEscrow"), self.address)
        if not stored:
            return None
        expiry = self.escrow.session_key(self.address, stored["address"]).expiry
        thaw = self.escrow.thaw_period()
        now = self.chain_now()
        renew = ("renew it with `opg session --allowance OPG`, or sign with your main key (--no-session)")
        if expiry <= now:
            return f"the session key {stored['address']} is not in force (expired or revoked): {renew}"
        if expiry < now + thaw:
            return (f"the session key {stored['address']} expires in {expiry - now} s, sooner than the thaw period "
                    f"({thaw} s) its vouchers must stay valid for settlement: {renew}")
        return None

    def payer(self, use_session: bool = True, **kw: Any) -> Payer:
        """A Payer for this payer: its session key if one is stored (``use_session``), else its own key. A stored
        key that is not in force for at least the thaw period is refused (WalletError), never silently replaced
        by the main key."""
        kw.setdefault("state", self.state)
        kw.setdefault("relayer_url", self.relayer_url)
        kw.setdefault("rpc_url", self.rpc_url)
        if use_session:
            stored = self.state.load_session(self.chain.chain_id, self.deployment.address("CreditEscrow"),
                                             self.address)
            if stored:
                problem = self.session_problem()
                if problem:
                    raise WalletError(problem)
                return Payer.from_session(stored, self.deployment, **kw)
        if self.account is None:
            raise WalletError("no session key stored and no payer key given: authorise one with "
                              "`opg session --allowance OPG`, or give --keystore / --dev-account")
        return Payer.from_key(self.account.key, self.deployment, **kw)

    def spendable(self) -> dict:
        """What this payer can still spend, as a person reads it: ``credits`` (escrow credits nodes serve against,
        less what this client's channels charged and the chain has not settled yet: it never goes up without a
        deposit), ``allowance`` (the stored session key's remaining allowance, less the same; None without a
        key) and ``left``, the lower of the two (the real limit)."""
        escrow = self.escrow.functions
        unsettled = 0
        for ch in self.state.channels(self.chain.chain_id, self.deployment.address("CreditEscrow"), self.address):
            unsettled += max(0, int(ch.charged) - int(escrow.spent(self.address, ch.node).call()))
        credits = max(0, int(escrow.available_of(self.address).call()) - unsettled)
        allowance = None
        stored = self.state.load_session(self.chain.chain_id, self.deployment.address("CreditEscrow"), self.address)
        if stored:
            expiry, remaining = escrow.signer_of(self.address, stored["address"]).call()
            if expiry > self.chain_now():
                allowance = max(0, int(remaining) - unsettled)
        left = credits if allowance is None else min(credits, allowance)
        return {"credits": credits, "allowance": allowance, "left": left}
