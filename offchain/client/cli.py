"""The payer's commands: ``opg deposit|balance|withdraw|session|chat`` (and the ``dispute`` hook).

  opg deposit AMOUNT [--gasless]                 buy credits: approve + deposit, or sign EIP-3009 and let the relayer
                                                 submit it (no ETH needed)
  opg balance [--unblock NODE]                   wallet OPG, credits, available, withdrawal and thaw, session, channels
  opg withdraw [AMOUNT|all] [--cancel] [--wait]  request a withdrawal, or complete a ready one (time left shown)
  opg session --allowance OPG [--expiry 1d] [--new] | --revoke
                                                 authorise a session key (stored locally) so chats never use the main key
  opg chat ["PROMPT"] [--model M] [--max-tokens N] [--system TEXT] [--json] [--wait-settled S]
                                                 one answer, or an interactive session (/model, /clear, /status, /quit)

Common flags (each also OPG_CLIENT_<NAME>): --rpc-url, --deployment, --relayer-url, --node-url, --state-dir, --payer,
--keystore (password in OPG_CLIENT_PASSWORD or --password-file) or --dev-account N (anvil keys, chain 31337 only),
--json. Amounts are in OPG ("12.5"). Exit codes are :mod:`offchain.clikit`'s: here 1 also when a one-shot answer's
receipt is refused, 2 also for an empty prompt, an unknown model or no key, and 130 after a cut answer printed what
it cost; an interactive chat exits 0 when the person quits.

Each command is a body (``_deposit`` ...) computing and printing its outcome, wrapped by :func:`payer_command`
into a click command whose options come from :class:`ClientSettings`.
"""

from __future__ import annotations

import functools
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import click

from .. import clikit
from ..amounts import format_opg, parse_opg
from ..clikit import CliError, Style
from ..daemon.settings import ConfigError
from .settings import ClientSettings


# Output ---------------------------------------------------------------------------------------------------------
def _print_json(data: Any) -> None:
    clikit.emit(data, True, sort_keys=True)


def _emit(args: Any, data: Any, line: str) -> None:
    """A payer command's outcome: ``data`` as JSON with ``--json``, else its one ``line``."""
    clikit.emit(data, args.json, [line], sort_keys=True)


def _duration(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+)\s*([smhdw]?)\s*", str(text))
    if not m:
        raise CliError(f"not a duration: {text!r} (e.g. 3600, 90m, 12h, 7d)", 2)
    return int(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}[m.group(2)]


def _span(seconds: int) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min {seconds % 60} s"
    if seconds < 172_800:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86_400} d {seconds % 86_400 // 3600} h"


def _amount(text: str, positive: bool = False, what: str = "amount") -> int:
    try:
        value = parse_opg(text)
    except ValueError as exc:
        raise CliError(str(exc), 2) from None
    if positive and value <= 0:
        raise CliError(f"the {what} must be more than 0 OPG", 2)
    return value


# Wiring ---------------------------------------------------------------------------------------------------------
def _account(settings: ClientSettings, chain_id: int):
    from ..daemon.keys import load_account

    try:
        return load_account(settings, chain_id)  # type: ignore[arg-type]  (the key fields are the daemon's)
    except ConfigError as exc:
        raise CliError(str(exc).replace("OPG_NODE_", "OPG_CLIENT_"), 2) from None


def _wallet(settings: ClientSettings, need_key: bool):
    """(OpgClient, chain id); the key is loaded only if ``need_key`` or a key is configured and wanted."""
    import requests
    from web3 import Web3

    from .state import ClientState
    from .wallet import OpgClient, WalletError

    try:
        chain_id = Web3(Web3.HTTPProvider(settings.rpc_url, request_kwargs={"timeout": 10})).eth.chain_id
    except (requests.exceptions.RequestException, OSError) as exc:
        raise CliError(f"cannot reach the chain at {settings.rpc_url}: {exc.__class__.__name__}", 2) from None
    account = _account(settings, chain_id) if need_key else None
    state = ClientState(settings.state_dir)
    payer_address = None
    if account is None:
        payer_address = settings.payer or settings.key_address()
        if payer_address is None:
            from ..deployments import load_deployment

            try:
                dep = load_deployment(chain_id=chain_id, path=settings.deployment)
            except (FileNotFoundError, ValueError) as exc:
                raise CliError(str(exc), 2) from None
            stored = state.sessions(chain_id, dep.address("CreditEscrow"))
            if len(stored) == 1:
                payer_address = stored[0]["payer"]
            elif len(stored) > 1:
                raise CliError("several payers have session keys here: give --payer ADDRESS (or a key)", 2)
            else:
                raise CliError("no key: give --keystore PATH (password in OPG_CLIENT_PASSWORD or --password-file) "
                               "or, on a devnet, --dev-account N", 2)
    try:
        client = OpgClient(account, settings.rpc_url, settings.deployment, relayer_url=settings.relayer_url,
                           state=state, payer_address=payer_address)
    except (FileNotFoundError, ValueError, WalletError) as exc:
        raise CliError(str(exc).splitlines()[0], 2) from None
    return client, chain_id


# Commands -------------------------------------------------------------------------------------------------------
def _deposit(args: Any, settings: ClientSettings) -> int:
    amount = _amount(args.amount, positive=True, what="deposit")
    client, _ = _wallet(settings, need_key=True)
    if args.gasless:
        answer = client.deposit_gasless(amount)
        again = " (the earlier, unconfirmed authorisation re-sent: one deposit)" if answer.get("resent") else ""
        _emit(args, {"gasless": True, **answer},
              f"deposited {format_opg(amount)} OPG (gasless{again}, relayer tx {answer.get('transaction')}); "
              f"credits {format_opg(answer.get('balance') or 0)} OPG")
        return 0
    answer = client.deposit(amount)
    _emit(args, {"gasless": False, **answer},
          f"deposited {format_opg(amount)} OPG (tx {answer['transaction']}); credits {format_opg(answer['credits'])} OPG")
    return 0


def _balance(args: Any, settings: ClientSettings) -> int:
    client, _ = _wallet(settings, need_key=False)
    if args.unblock:
        _unblock(client, args.unblock)
    b = client.balance()
    if args.json:
        _print_json(b.as_dict())
        return 0
    from ..seasons.standing import SeasonView  # season standing (offchain/seasons, issue 17)

    room = client.spendable() if b.session or b.channels else None
    season = SeasonView(client.chain.w3, client.deployment, settings.deployment).balance_lines(b.payer)
    clikit.emit(None, False, balance_lines(b, room, season, Style()))
    return 0


def balance_lines(b: Any, room: dict | None, season: list[str], s: Style) -> list[str]:
    """``opg balance``'s report: the wallet's ``Balance``, what is left to spend (``room``), the season's lines."""
    lines = [f"payer        {b.payer}", f"wallet       {format_opg(b.opg)} OPG, {format_opg(b.eth, 6)} ETH",
             f"credits      {format_opg(b.credits)} OPG ({format_opg(b.available)} OPG available to nodes)"]
    if room is not None:
        limit = " (the session key's allowance)" if room["allowance"] is not None and room["allowance"] < room["credits"] else ""
        lines.append(f"left         {format_opg(room['left'], 6)} OPG to spend{limit}")
    w = b.withdrawal
    if w.state == "thawing":
        lines.append(f"withdrawal   {format_opg(w.amount)} OPG thawing: ready in {_span(w.seconds_left)}")
    elif w.state == "ready":
        lines.append(f"withdrawal   {format_opg(w.amount)} OPG ready: `opg withdraw` (expires in "
                     f"{_span(w.expires_at - w.now)})")
    elif w.state == "expired":
        lines.append("withdrawal   request expired: request it again")
    if b.session:
        state = f"{_span(b.session['secondsLeft'])} left" if b.session["inForce"] else "expired"
        lines.append(f"session key  {b.session['key']}: {format_opg(b.session['allowance'])} OPG allowance left, "
                     f"{state}")
    for ch in b.channels:
        charged = max(int(ch["charged"]), int(ch["spent"]))  # the chain may know of charges this client did not see
        line = (f"channel      node {ch['node']}: charged {format_opg(charged, 6)} OPG, of which "
                f"{format_opg(ch['spent'], 6)} OPG settled")
        lines.append(s.red(line + f"  BLOCKED: {ch['blocked']}") if ch["blocked"] else line)
    return lines + season


def _unblock(client: Any, node: str) -> None:
    from eth_utils import to_checksum_address

    with client.state.channel(client.chain.chain_id, client.deployment.address("CreditEscrow"), client.address,
                              to_checksum_address(node)) as (st, _):
        st.blocked = st.blocked_receipt = st.blocked_at = None


def _withdraw(args: Any, settings: ClientSettings) -> int:
    from .wallet import WalletError

    client, _ = _wallet(settings, need_key=True)
    if args.cancel:
        tx = client.cancel_withdrawal()
        _emit(args, {"canceled": True, "transaction": tx}, f"withdrawal canceled (tx {tx})")
        return 0
    if args.amount:
        amount = (client.escrow.functions.balance_of(client.address).call() if args.amount == "all"
                  else _amount(args.amount))
        if amount <= 0:
            if args.amount == "all":
                raise CliError("nothing to withdraw: no credits")
            raise CliError("the withdrawal must be more than 0 OPG", 2)
        w = client.request_withdrawal(amount)
        if args.json and not args.wait:
            _print_json({"requested": True, **w})
            return 0
        if not args.json:
            print(f"withdrawal of {format_opg(amount)} OPG requested (tx {w['transaction']}): ready in "
                  f"{_span(w['secondsLeft'])}; then `opg withdraw` completes it before it expires "
                  f"{_span(w['expiresAt'] - w['readyAt'])} later")
        if not args.wait:
            return 0
    w = client.withdrawal()
    if args.wait and w.state == "thawing":
        # judged by the time the chain will mine the withdrawal at (its pending block), so this ends on an idle
        # chain too; bounded by the thaw it showed, plus a minute
        if not args.json:
            print(f"waiting {_span(w.seconds_left)} for the thaw ...", file=sys.stderr)
        deadline = time.monotonic() + w.seconds_left + 60
        while (w := client.withdrawal()).state == "thawing":
            if time.monotonic() > deadline:
                raise CliError(f"still thawing after the wait: {w.seconds_left} s left by the chain's clock "
                               f"(ready at {w.ready_at}); run `opg withdraw` later")
            time.sleep(min(2.0, max(0.5, w.seconds_left)))
    # with --wait, the chain's own refusal "still thawing" (its next block can stamp a second or two behind the clock
    # this side reads) means wait a little more, for at most a minute
    retry_until = time.monotonic() + 60 if args.wait else 0.0
    while True:
        try:
            done = client.withdraw()
            break
        except WalletError as exc:
            if "still thawing" in str(exc) and time.monotonic() < retry_until:
                time.sleep(1.0)
                continue
            w = client.withdrawal()
            if args.json:
                _print_json({"withdrawn": False, "reason": str(exc), **w.as_dict()})
                return 1
            raise CliError(str(exc)) from None
    _emit(args, {"withdrawn": True, **done},
          f"withdrew {format_opg(done['amount'])} OPG (tx {done['transaction']}); credits {format_opg(done['credits'])} OPG")
    return 0


def _session(args: Any, settings: ClientSettings) -> int:
    if args.revoke:
        client, _ = _wallet(settings, need_key=True)
        out = client.revoke_session()
        _emit(args, {"revoked": True, **out},
              f"session key {out['key']} revoked (effective at {out['effectiveAt']}, tx {out['transaction']})")
        return 0
    if args.allowance is None:
        client, _ = _wallet(settings, need_key=False)
        session = client.session()
        if args.json:
            _print_json(session)
        elif session is None:
            print("no session key: `opg session --allowance OPG [--expiry 7d]` authorises one")
        else:
            state = f"{_span(session['secondsLeft'])} left" if session["inForce"] else "expired"
            print(f"session key {session['key']}: {format_opg(session['allowance'])} OPG allowance left, {state}")
        return 0 if session else 1
    allowance = _amount(args.allowance, positive=True, what="allowance")
    expires_in = _duration(args.expiry) if args.expiry else None
    client, _ = _wallet(settings, need_key=True)
    thaw = client.escrow.functions.thaw_period().call()
    if expires_in is None:
        expires_in = max(7 * 86_400, 2 * thaw)
    elif expires_in < 2 * thaw:
        raise CliError(f"--expiry {args.expiry}: a session key must last at least twice the thaw period "
                       f"({_span(2 * thaw)} here)", 2)
    out = client.authorize_session(expires_in, allowance, new_key=args.new)
    _emit(args, out, f"session key {out['key']} may spend {format_opg(allowance)} OPG for {_span(expires_in)} "
                     f"(tx {out['transaction']}); `opg chat` signs with it, never with your main key")
    return 0


# Chat -----------------------------------------------------------------------------------------------------------
def _with_hint(message: str) -> str:
    """A refusal with what to do about it."""
    if "insufficient_balance" in message:
        return message + "; buy credits with `opg deposit AMOUNT` (see `opg balance`)"
    if "allowance_exceeded" in message:
        return message + "; raise the session key's allowance with `opg session --allowance OPG`"
    return message


class _ChatRun:
    def __init__(self, args: Any, settings: ClientSettings):
        from .chat import ChatClient

        if not settings.node_url:
            raise CliError("no node: give --node-url URL (or OPG_CLIENT_NODE_URL)", 2)
        self.args, self.style = args, Style()
        if args.prompt is not None and not args.prompt.strip():
            raise CliError("the prompt is empty (omit it for an interactive session)", 2)
        max_amount = _amount(args.max_price, positive=True, what="--max-price") if args.max_price else None
        need_key = bool(args.no_session or args.exact)
        client, _ = _wallet(settings, need_key=need_key)
        if not need_key and (settings.keystore or settings.dev_account is not None):
            # the session key signs when one is stored (refused below if it is not in force long enough: never a
            # silent fall-back to the main key); the main key only when no session key is stored
            if client.session() is None:
                client, _ = _wallet(settings, need_key=True)
        self.wallet = client
        from .wallet import WalletError

        try:
            self.payer = client.payer(use_session=not args.no_session, max_amount=max_amount)
        except WalletError as exc:
            raise CliError(str(exc).splitlines()[0], 1) from None
        self.chat = ChatClient(self.payer, settings.node_url, exact=args.exact)
        self.model = settings.model  # --model or OPG_CLIENT_MODEL
        self.history: list[dict] = []
        self.receipts: list[str] = []
        self.last_status: dict[str, str] = {}
        from ..seasons.standing import SeasonView  # the row's season signal (offchain/seasons, issue 17)

        self.season = SeasonView(client.chain.w3, client.deployment, settings.deployment)

    def model_ids(self) -> list[str]:
        from .chat import ChatError

        try:
            return [m["id"] for m in self.chat.models()]
        except ChatError as exc:
            raise CliError(str(exc)) from None

    def pick_model(self) -> str:
        if self.model:
            return self.model
        models = self.model_ids()
        if not models:
            raise CliError(f"node {self.chat.node_url} serves no model")
        self.model = models[0]
        return self.model

    def check_model(self, name: str) -> str:
        """``name`` if the node serves it, else a usage error listing what it serves."""
        models = self.model_ids()
        if name not in models:
            raise CliError(f"node {self.chat.node_url} does not serve {name!r}; it serves: {', '.join(models)}", 2)
        return name

    def messages_for(self, prompt: str) -> list[dict]:
        msgs = []
        if self.args.system:
            msgs.append({"role": "system", "content": self.args.system})
        return msgs + self.history + [{"role": "user", "content": prompt}]

    def ask(self, prompt: str, stream_to: Any | None):
        from .chat import ChatError

        on_token = None
        if stream_to is not None:
            def on_token(piece: str) -> None:
                stream_to.write(piece)
                stream_to.flush()
        try:
            return self.chat.ask(self.messages_for(prompt), self.pick_model(), max_tokens=self.args.max_tokens,
                                 stream=not self.args.no_stream, on_token=on_token,
                                 temperature=self.args.temperature, seed=self.args.seed)
        except ChatError as exc:
            raise CliError(_with_hint(str(exc))) from None

    def left_text(self) -> str | None:
        """What the payer can still spend: escrow credits less this client's unsettled charges, or the session
        key's remaining allowance when that is lower (never goes up without a deposit)."""
        try:
            room = self.wallet.spendable()
        except Exception:  # the chain unreachable: leave it out
            return None
        if room["allowance"] is not None and room["allowance"] < room["credits"]:
            return f"{format_opg(room['left'], 6)} OPG left of the session key's allowance"
        return f"{format_opg(room['left'], 6)} OPG credits left"

    def cut_row(self, answer: Any) -> str:
        """The row under an answer cut short (Ctrl-C): the node bills only the tokens it sent."""
        o = answer.outcome if answer is not None else None
        parts = []
        if o is not None and o.cost is not None:
            parts.append(f"this answer (cut short) cost {format_opg(o.cost, 6)} OPG")
        else:
            quote = f" (at most {format_opg(o.quote, 6)} OPG)" if o is not None and o.quote else ""
            parts.append(f"this answer was cut short: the node bills the tokens it sent{quote}, in the next row's "
                         "credits")
        left = self.left_text()
        if left:
            parts.append(left)
        return " · ".join(parts)

    def settlement(self, receipt_id: str | None, wait: float = 0) -> dict | None:
        if not receipt_id:
            return None
        deadline = time.monotonic() + wait
        while True:
            view = self.chat.settlement(receipt_id)  # None until the node's outbox has handed the receipt over
            if (view is not None and view.get("status") != "pending") or time.monotonic() >= deadline:
                return view
            time.sleep(0.25)

    def status_text(self, view: dict | None, fallback: str | None) -> str:
        if not view:
            return fallback or "status unknown"
        if view.get("status") == "settled":
            tx = view.get("tx") or ""
            return f"settled in batch {view.get('batchId')}" + (f", tx {tx[:10]}…{tx[-4:]}" if tx else "")
        if view.get("status") == "rejected":
            return f"rejected: {view.get('reason')}"
        return "pending" + (f" in batch {view['batchId']}" if view.get("batchId") else "")

    def row(self, answer: Any) -> str:
        o = answer.outcome
        if o is None:
            return "no payment information"
        parts = []
        if o.cost is not None:
            parts.append(f"this answer cost {format_opg(o.cost, 6)} OPG")
        left = self.left_text()
        if left is not None:
            parts.append(left)
        elif o.credits_left is not None:
            parts.append(f"{format_opg(o.credits_left, 6)} OPG credits left")
        view = self.settlement(o.receipt_id)
        parts.append(self.status_text(view, o.status))
        if o.receipt_id:
            self.last_status[o.receipt_id] = parts[-1]
        # the previous answer's settlement, on this later look
        if self.receipts:
            prev = self.receipts[-1]
            prev_view = self.settlement(prev)
            if prev_view and prev_view.get("status") != "pending":
                parts.append("previous: " + self.status_text(prev_view, None))
        if o.receipt_id:
            self.receipts.append(o.receipt_id)
        signal = self.season.signal(self.payer.address)  # on its own line: the row's format stays as it was
        return " · ".join(parts) + (f"\n{signal}" if signal else "")

    def as_json(self, answer: Any) -> dict:
        o = answer.outcome
        view = self.settlement(o.receipt_id if o else None, wait=self.args.wait_settled)
        out = {"model": answer.model, "answer": answer.text, "finishReason": answer.finish_reason,
               "usage": answer.usage, "payer": self.payer.address, "signer": self.payer.signer,
               "node": o.node if o else None}
        out.update(o.as_dict() if o else {"ok": False, "problem": "no payment information"})
        if view:
            out.update({"status": view.get("status"), "batchId": view.get("batchId"), "tx": view.get("tx"),
                        "settlementReason": view.get("reason")})
        else:
            out.setdefault("batchId", None)
            out.setdefault("tx", None)
        return out

    def problem_line(self, answer: Any) -> str | None:
        o = answer.outcome
        if o is not None and not o.ok and o.problem:
            return self.style.red(f"warning: {o.problem}; no further payments to node {o.node}")
        return None


def _chat(args: Any, settings: ClientSettings) -> int:
    run = _ChatRun(args, settings)
    try:
        if args.prompt is not None:
            return _chat_once(run, args.prompt)
        if args.json:
            raise CliError("--json needs a PROMPT (the interactive session is for people)", 2)
        return _repl(run)  # reads a turn per line, from a terminal or a pipe
    finally:
        run.chat.close()


def _chat_once(run: _ChatRun, prompt: str) -> int:
    if run.args.json:
        answer = run.ask(prompt, None)
        out = run.as_json(answer)
        _print_json(out)
        return 0 if out.get("ok") else 1
    from .chat import Interrupted

    if run.model:
        run.check_model(run.model)
    stream = sys.stdout if not run.args.no_stream else None
    try:
        answer = run.ask(prompt, stream)
    except Interrupted as cut:
        print()
        print(run.style.dim(run.cut_row(cut.answer)))
        return 130
    if stream is None:
        print(answer.text, end="")
    print()
    if run.args.wait_settled and answer.outcome:
        run.settlement(answer.outcome.receipt_id, wait=run.args.wait_settled)
    print(run.style.dim(run.row(answer)))
    problem = run.problem_line(answer)
    if problem:
        print(problem, file=sys.stderr)
        return 1
    return 0


REPL_HELP = "/model [NAME] list or switch models · /clear forget the conversation · /status settlements · /quit"


def _repl(run: _ChatRun) -> int:
    try:
        import readline  # noqa: F401  (line editing and history for input())

        history_file = run.payer.state.root / "chat_history"
        try:
            readline.read_history_file(history_file)
        except OSError:
            pass
    except ImportError:  # pragma: no cover - platform without readline
        readline = None  # type: ignore[assignment]
        history_file = None
    from .chat import Interrupted

    s = run.style
    model = run.check_model(run.model) if run.model else run.pick_model()
    print(s.dim(f"chatting with {model} at {run.chat.node_url} as {run.payer.address}"
                + (" (session key)" if run.payer.is_session else "") + f" · {REPL_HELP}"))
    code = 0  # 0 when the person quits (/quit or end of input): each failed turn printed its error already
    while True:
        try:
            line = input(s.bold(">>> ") if s.on else ">>> ")
        except EOFError:
            print()
            break
        except KeyboardInterrupt:
            print()
            continue
        line = line.strip()
        if not line:
            continue
        if line.startswith("/"):
            cmd, _, arg = line.partition(" ")
            if cmd in ("/quit", "/exit", "/bye"):
                code = 0
                break
            if cmd == "/help":
                print(REPL_HELP)
            elif cmd == "/clear":
                run.history.clear()
                print(s.dim("conversation cleared"))
            elif cmd == "/model":
                if arg.strip():
                    try:
                        run.model = run.check_model(arg.strip())
                    except CliError as exc:
                        print(s.red(f"error: {exc}"), file=sys.stderr)
                        continue
                    print(s.dim(f"model: {run.model}"))
                else:
                    for m in run.model_ids():
                        print(f"{'*' if m == run.model else ' '} {m}")
            elif cmd == "/status":
                for rid in run.receipts[-10:]:
                    print(s.dim(f"{rid[:10]}…  {run.status_text(run.settlement(rid), None)}"))
            else:
                print(f"unknown command {cmd}; {REPL_HELP}")
            continue
        try:
            answer = run.ask(line, sys.stdout if not run.args.no_stream else None)
        except CliError as exc:
            print(s.red(f"error: {exc}"), file=sys.stderr)
            continue
        except Interrupted as cut:
            print()
            print(s.dim(run.cut_row(cut.answer)))
            continue
        except KeyboardInterrupt:
            print(s.dim("\n(interrupted)"))
            continue
        if run.args.no_stream:
            print(answer.text, end="")
        print()
        print(s.dim(run.row(answer)))
        problem = run.problem_line(answer)
        if problem:
            print(problem, file=sys.stderr)
        run.history += [{"role": "user", "content": line}, {"role": "assistant", "content": answer.text}]
    if readline is not None and history_file is not None:
        try:
            history_file.parent.mkdir(parents=True, exist_ok=True)
            readline.write_history_file(history_file)
        except OSError:
            pass
    return code


# Commands -------------------------------------------------------------------------------------------------------
KEY_HELP = """\
The payer's key: --keystore FILE (password in OPG_CLIENT_PASSWORD or --password-file) or, on a devnet (chain 31337)
only, --dev-account N; each option is also OPG_CLIENT_<OPTION>. Amounts are in OPG ("12.5").
"""


def payer_command(name: str, help: str, examples: str, chat_options: bool = False,
                  amount: bool = False) -> Callable[[Callable], Any]:
    """A payer command: the client settings as options (``--model`` only for chat), ``--json``, examples, and
    wallet / payment / RPC refusals as one line (exit 1)."""

    def decorate(body: Callable[[Any, ClientSettings], int]) -> Any:
        @functools.wraps(body)
        def command(settings: ClientSettings, as_json: bool, **params: Any) -> int:
            try:
                return body(SimpleNamespace(json=as_json, **params), settings)
            except (CliError, KeyboardInterrupt):
                raise
            except Exception as exc:  # a wallet, relayer or chain refusal: one readable line, exit 1
                import requests

                from .payer import PaymentRefused
                from .wallet import WalletError

                if isinstance(exc, (WalletError, PaymentRefused)):
                    raise CliError(str(exc), clikit.FAILED) from None
                if isinstance(exc, requests.exceptions.RequestException):
                    raise CliError(f"the chain RPC did not answer: {exc.__class__.__name__}", clikit.FAILED) from None
                raise

        command = clikit.json_option(command)
        command = clikit.settings_options(ClientSettings, config=False,
                                          skip=() if chat_options else ("model",))(command)
        return clikit.command(name, help=help, epilog=KEY_HELP + "\nexamples:\n" + examples + "\n" +
                              clikit.EXIT_CODES, **({"context_settings": clikit.NEGATIVE_OK} if amount else {}))(command)

    return decorate


@payer_command("deposit", "Buy credits: OPG from your wallet into the CreditEscrow (approve + deposit), or sign an "
                          "EIP-3009 authorisation and let the relayer submit it (--gasless, no ETH needed).",
               "  opg deposit 10 --dev-account 4\n  opg deposit 2.5 --gasless --keystore me.json", amount=True)
@click.argument("amount")
@click.option("--gasless", is_flag=True,
              help="sign an EIP-3009 ReceiveWithAuthorization and let the relayer submit it (no ETH needed)")
def deposit(args: Any, settings: ClientSettings) -> int:
    return _deposit(args, settings)


@payer_command("balance", "Wallet OPG, credits, what nodes can serve against, withdrawal and thaw, session key, "
                          "channels, season standing.",
               "  opg balance --dev-account 4\n  opg balance --payer 0xYourAddress --json")
@click.option("--unblock", metavar="NODE", help="sign for a node this client blocked for over-charging again")
def balance(args: Any, settings: ClientSettings) -> int:
    return _balance(args, settings)


@payer_command("withdraw", "Request a withdrawal of AMOUNT (or all) credits; without AMOUNT, complete the pending "
                           "one once thawed (the time left is shown while it thaws).",
               "  opg withdraw 5 --dev-account 4      # request\n  opg withdraw --dev-account 4        # complete"
               "\n  opg withdraw all --wait --dev-account 4", amount=True)
@click.argument("amount", required=False)
@click.option("--cancel", is_flag=True, help="cancel the pending withdrawal")
@click.option("--wait", is_flag=True, help="wait for the thaw, then complete the withdrawal")
def withdraw(args: Any, settings: ClientSettings) -> int:
    return _withdraw(args, settings)


@payer_command("session", "Authorise a session key (stored under the state directory) that signs vouchers for chats, "
                          "with an expiry and an allowance; without flags, show it.",
               "  opg session --allowance 5 --expiry 7d --dev-account 4\n  opg session --dev-account 4\n"
               "  opg session --revoke --dev-account 4")
@click.option("--allowance", metavar="OPG", help="OPG the key may spend in total (its remaining allowance)")
@click.option("--expiry", default=None, help="how long it lasts: 3600, 90m, 12h, 7d (default 7 days; at least twice "
                                             "the thaw period)")
@click.option("--new", is_flag=True, help="a new key even if the stored one is in force")
@click.option("--revoke", is_flag=True, help="revoke the stored key (effective after the thaw)")
def session(args: Any, settings: ClientSettings) -> int:
    return _session(args, settings)


@payer_command("chat", "Ask a node: one prompt, or an interactive session like `ollama run` (/model NAME, /clear, "
                       "/status, /quit). After each answer one row: its cost, credits left, settlement status.",
               '  opg chat "What is a voucher?" --dev-account 4\n'
               '  opg chat "Hi" --json --wait-settled 30 --dev-account 4   # answer, cost, receipt, batch, tx\n'
               "  opg chat --model builtin --dev-account 4                  # interactive",
               chat_options=True)
@click.argument("prompt", required=False)
@click.option("--max-tokens", type=click.IntRange(min=1), default=None,
              help="most output tokens (the node's default otherwise)")
@click.option("--system", default=None, help="system prompt")
@click.option("--temperature", type=float, default=None)
@click.option("--seed", type=int, default=None)
@click.option("--no-stream", is_flag=True, help="wait for the whole answer")
@click.option("--exact", is_flag=True, help="allow exact payments (on-chain per request) from your OPG")
@click.option("--max-price", metavar="OPG", help="refuse quotes above this many OPG per request")
@click.option("--no-session", is_flag=True, help="sign with the payer's own key, not the session key")
@click.option("--wait-settled", type=float, default=0, metavar="S",
              help="wait up to S seconds for the answer's settlement (batch and transaction)")
def chat(args: Any, settings: ClientSettings) -> int:
    return _chat(args, settings)


DISPUTE_EXAMPLES = """\
examples:
  opg dispute 0xRECEIPT_ID --dev-account 4 --wait 60       # the request and answer stored when it was answered
  opg dispute 0xRECEIPT_ID --payload answer.json --keystore me.json --verifier http://127.0.0.1:8404 --json

exit codes: 0 the dispute is open and at least one verifier took the payload (or it is already decided), 1 refused or
failed (no verifier took it), 2 bad usage or configuration, 130 interrupted.
"""


@clikit.command("dispute", help="Dispute an answer you got: check that your request and answer hash to the node's "
                                "receipt, post the bond (the receipt's amount) with staking.flag, hand your prompt "
                                "and answer to every active verifier (or --verifier URLs) and, with --wait, wait for "
                                "the outcome on-chain.", epilog=KEY_HELP + "\n" + DISPUTE_EXAMPLES)
@click.argument("receipt_id", metavar="RECEIPT_ID")
@click.option("--payload", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="JSON {receipt, request, output} instead of the stored request")
@click.option("--verifier", "verifiers", multiple=True, metavar="URL",
              help="send to this verifier URL (repeatable; default: every active verifier's endpoint)")
@click.option("--wait", type=float, default=0.0, metavar="SECONDS", help="wait this long for the outcome")
@click.option("--timeout", type=float, default=30.0, show_default=True, help="HTTP timeout per verifier (s)")
@clikit.json_option
@clikit.settings_options(ClientSettings, config=False,
                         only=("rpc_url", "deployment", "state_dir", "keystore", "password_file", "dev_account"))
def dispute(settings: ClientSettings, receipt_id: str, payload: Path | None, verifiers: tuple[str, ...], wait: float,
            timeout: float, as_json: bool) -> int:
    from .dispute import DisputeError, connect_payer
    from .dispute import dispute as open_and_hand_over

    rid = receipt_id.lower()
    if not (rid.startswith("0x") and len(rid) == 66 and all(c in "0123456789abcdef" for c in rid[2:])):
        raise CliError(f"not a receipt id (0x + 64 hex digits): {receipt_id}", clikit.USAGE)
    try:
        chain, account = connect_payer(settings)
    except (ConfigError, OSError, ValueError) as exc:
        raise CliError(clikit.one_line(exc), clikit.USAGE) from None
    except Exception as exc:  # the RPC did not answer
        raise CliError(f"cannot reach the chain at {settings.rpc_url}: {exc.__class__.__name__}", clikit.USAGE) from None
    try:
        summary = open_and_hand_over(chain, account, rid, payload, settings.state_dir, list(verifiers), timeout, wait)
    except DisputeError as exc:
        raise CliError(str(exc), clikit.FAILED) from None
    clikit.emit(summary, as_json, dispute_lines(summary, waited=wait > 0))
    if summary["dispute"]["state"] in ("fraud_proven", "proven_valid"):
        return clikit.OK
    if not summary["verifiers"]:
        raise CliError("no active verifier to hand the payload to", clikit.FAILED)
    return clikit.OK if summary["accepted"] else clikit.FAILED


def dispute_lines(summary: dict, waited: bool) -> list[str]:
    opened = summary["dispute"]
    state = {"opened": f"dispute opened, bond {format_opg(opened['bond'])} OPG posted ({opened.get('tx')})",
             "already_disputed": "already disputed", "fraud_proven": "fraud already proven",
             "proven_valid": "already proven valid"}[opened["state"]]
    lines = [f"receipt {summary['receiptId']} of node {summary['node']}: {state}"]
    lines += [f"  {'ok  ' if r['accepted'] else 'FAIL'} {r['url']}" + ("" if r["accepted"] else f": {r['detail']}")
              for r in summary["verifiers"]]
    if waited:
        lines.append(f"outcome: {summary['outcome']}")
    return lines
