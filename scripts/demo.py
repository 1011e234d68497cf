"""``make demo``: the whole system on a local anvil chain, with real daemons, and a summary read from the chain.

It starts anvil, deploys with ``ape run deploy``, starts the relayer, two inference nodes running the real small
model (one of them cheating at a low rate) and three verifiers, each registered and staked through ``opg
operator``; funds three payers (one gasless through ``deposit_with_authorization``, one paying with a session key);
and sends a stream of chat requests through both payment schemes with the project's client SDK, some streaming and
some through the ``openai`` package. A live display shows requests answered, receipts pending, batches settled,
verdicts and slashes. At the end it prints a summary read from on-chain state and events and checks that it
reconciles: every answered request paid exactly once, the cheating node slashed, its payers refunded. Every process
it started is stopped. Exit code 0 only if the summary reconciles.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from eth_account import Account

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the checkout's offchain package (scripts/, this file's folder, is on it already)

from offchain.client import OpgClient, format_opg, payment_http_client  # noqa: E402
from offchain.daemon.keys import anvil_key  # noqa: E402
from offchain.devkit.system import OPG, Operator, System  # noqa: E402
from offchain.sdk.relayer_client import RelayerClient, RelayerError  # noqa: E402

PROMPTS = [
    "What is a payment channel?",
    "Why settle many answers in one transaction?",
    "Who checks that the node ran the model?",
    "What happens to a node that cheats?",
    "Explain a cumulative voucher in one sentence.",
    "What does a verifier re-execute?",
    "Why does a node store its receipt before answering?",
    "What is a session key for?",
    "Name one thing a relayer cannot do.",
    "How are fees split after settlement?",
    "Why is greedy decoding used here?",
    "What is the dispute window?",
]
MODES = ("sdk", "sdk-stream", "openai", "openai-stream", "exact")


@dataclass
class Answer:
    index: int
    payer: str
    node: str
    mode: str
    scheme: str
    prompt: str
    text: str
    receipt_id: str | None
    cost: int
    credits_left: int | None
    transaction: str | None = None


@dataclass
class PayerSetup:
    name: str
    key: str
    how: str  # "deposit" | "gasless" | "session"
    wallet: OpgClient | None = None
    credits_before: int = 0
    deposited: int = 0
    answers: list[Answer] = field(default_factory=list)

    @property
    def address(self) -> str:
        return Account.from_key(self.key).address


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="make demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=24, help="chat requests to send (default 24)")
    p.add_argument("--cheat-rate", type=float, default=0.25, help="the cheating node's rate of wrong answers")
    p.add_argument("--backend", default="smollm2", help="model backend of nodes and verifiers (smollm2, builtin)")
    p.add_argument("--sample-rate", type=float, default=0.5, help="verifiers' sampling rate")
    p.add_argument("--max-tokens", type=int, default=24, help="max_tokens of each chat request")
    p.add_argument("--deposit", type=float, default=20.0, help="credits each payer buys (OPG)")
    p.add_argument("--rpc-port", type=int, default=8545)
    p.add_argument("--relayer-port", type=int, default=8402)
    p.add_argument("--base-port", type=int, default=8500, help="first port of nodes and verifiers")
    p.add_argument("--state-dir", default="var/demo", help="logs, stores and client state")
    p.add_argument("--deployments-dir", default=str(ROOT / "deployments"))
    p.add_argument("--batch-age", type=float, default=30.0,
                   help="how long the relayer lets receipts gather into a batch when nothing urges settlement (s): "
                        "the longer, the less gas per request (offchain/relayer/policy.py)")
    p.add_argument("--timeout", type=float, default=240, help="how long to wait for settlement and slashing (s)")
    p.add_argument("--no-live", action="store_true", help="no live display (also when not on a terminal)")
    p.add_argument("--web-port", type=int, default=None, help="port of `opg web` (default 8600, else a free one)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object at the end")
    return p.parse_args(argv)


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.answered = 0
        self.failed: list[str] = []
        self.jailed: set[str] = set()
        self.last = ""


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    state = Path(args.state_dir)
    if state.exists():
        shutil.rmtree(state)
    state.mkdir(parents=True)
    port = itertools.count(args.base_port)
    system = System(
        state_dir=state, rpc_port=args.rpc_port, relayer_port=args.relayer_port, backend=args.backend,
        sample_rate=args.sample_rate, deployments_dir=Path(args.deployments_dir), batch_age=args.batch_age,
        nodes=[Operator("node-honest", "inference", 1, next(port), 300),
               Operator("node-cheat", "inference", 5, next(port), 300, cheat_rate=args.cheat_rate)],
        verifiers=[Operator("verifier-1", "verifier", 2, next(port), 200),
                   Operator("verifier-2", "verifier", 3, next(port), 300),
                   Operator("verifier-3", "verifier", 6, next(port), 400)],
    )
    code = 1
    try:
        system.start()
        code = run(system, args, state)
    except Exception as exc:  # one readable line; the logs in the state dir have the rest
        print(f"demo: error: {str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)}", file=sys.stderr)
        print(f"demo: logs are in {state}/", file=sys.stderr)
        code = 1
    finally:
        killed = system.stop()
        left = [p.name for p in system.procs if p.process.poll() is None]
        if killed or left:
            print(f"demo: had to kill {killed}; still running {left}", file=sys.stderr)
            code = code or 1
        else:
            print(f"== every process stopped ({len(system.procs)})")
    return code


def setup_payers(system: System, args, state: Path) -> list[PayerSetup]:
    chain = system.chain
    assert chain is not None
    amount = int(args.deposit * OPG)
    fresh = Account.create()
    payers = [
        PayerSetup("alice", anvil_key(4), "deposit"),
        PayerSetup("bob", "0x" + bytes(fresh.key).hex(), "gasless"),
        PayerSetup("carol", anvil_key(7), "session"),
    ]
    for p in payers:
        # OPG in the wallet: the deposit, and (alice) some for exact payments. Bob gets no ETH at all.
        system.fund(p.address, amount + (10 * OPG if p.name == "alice" else 0))
        p.wallet = OpgClient(Account.from_key(p.key), system.rpc_url, system.deployment_file,
                             relayer_url=system.relayer_url, state=state / "clients" / p.name)
        p.credits_before = chain.escrow.functions.balance_of(p.address).call()
        if p.how == "gasless":
            assert chain.w3.eth.get_balance(p.address) == 0
            p.wallet.deposit_gasless(amount)
        else:
            p.wallet.deposit(amount)
        if p.how == "session":
            p.wallet.authorize_session(expires_in=3 * 3600, allowance=amount, new_key=True)
        p.deposited = amount
        system.say(f"   {p.name:<6} {p.address} bought {format_opg(amount)} OPG of credits"
                   + {"deposit": "", "gasless": " (gasless: signed, the relayer submitted; it holds no ETH)",
                      "session": " and chats with a session key"}[p.how])
    return payers


def ask(system: System, payer: PayerSetup, node: Operator, mode: str, prompt: str, index: int,
        max_tokens: int) -> Answer:
    assert payer.wallet is not None
    body = {"model": "", "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens}
    model = httpx.get(node.url + "/v1/models", timeout=10).json()["data"][0]["id"]
    body["model"] = model
    exact = mode == "exact"
    sdk_payer = payer.wallet.payer(use_session=not exact)
    http = payment_http_client(sdk_payer, exact=exact, schemes=("exact",) if exact else None)
    text, payment = "", None
    try:
        if mode in ("openai", "openai-stream"):
            import openai

            ai = openai.OpenAI(base_url=node.url + "/v1", api_key="opg", http_client=http, max_retries=0)
            if mode == "openai":
                reply = ai.chat.completions.create(model=model, messages=body["messages"], max_tokens=max_tokens)
                text = reply.choices[0].message.content or ""
                payment = (reply.model_extra or {}).get("x_opg_payment")
            else:
                for chunk in ai.chat.completions.create(model=model, messages=body["messages"],
                                                        max_tokens=max_tokens, stream=True):
                    if chunk.choices:
                        text += chunk.choices[0].delta.content or ""
                    extra = (chunk.model_extra or {}).get("x_opg_payment")
                    payment = extra or payment
        elif mode == "sdk-stream":
            with http.stream("POST", node.url + "/v1/chat/completions", json={**body, "stream": True}) as res:
                res.raise_for_status()
                for line in res.iter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    chunk = json.loads(line[6:])
                    if chunk.get("choices"):
                        text += chunk["choices"][0].get("delta", {}).get("content") or ""
                    payment = chunk.get("x_opg_payment") or payment
        else:
            res = http.post(node.url + "/v1/chat/completions", json=body)
            if res.status_code != 200:
                raise RuntimeError(f"{res.status_code}: {res.text[:200]}")
            data = res.json()
            text = data["choices"][0]["message"]["content"]
            payment = data.get("x_opg_payment")
    finally:
        http.close()
    if not payment:
        raise RuntimeError(f"no payment result for request {index}")
    return Answer(index, payer.name, node.name, mode, payment.get("scheme", "exact" if exact else "opg-credit"),
                  prompt, text, payment.get("receiptId"), int(payment.get("cost") or 0),
                  int(payment["creditsLeft"]) if payment.get("creditsLeft") not in (None, "") else None,
                  payment.get("transaction") or None)


def run(system: System, args, state: Path) -> int:
    system.say("== payers")
    payers = setup_payers(system, args, state)
    from offchain.web.launch import start_web

    carol = next(p for p in payers if p.how == "session")
    web = start_web(system, state / "clients" / carol.name, payer=carol.address, port=args.web_port)
    if web:
        system.say(f"== watch it live: {web} (opg web as {carol.name}, holding only her session key; the network "
                   "view shows every payer's batches and the slashes)")
    stats = Stats()
    answers: list[Answer] = []

    def traffic() -> None:
        for i in range(args.requests):
            payer = payers[i % len(payers)]
            node = system.nodes[(i // len(payers)) % len(system.nodes)]
            mode = MODES[i % len(MODES)]
            if mode == "exact" and payer.name != "alice":
                mode = "sdk"
            prompt = PROMPTS[i % len(PROMPTS)] + ("" if i < len(PROMPTS) else f" (take {i // len(PROMPTS) + 1})")
            if node.name in stats.jailed:  # a jailed node refuses new work: ask another one
                node = next(n for n in system.nodes if n.name not in stats.jailed)
            try:
                try:
                    a = ask(system, payer, node, mode, prompt, i, args.max_tokens)
                except Exception as exc:
                    if "node_not_active" not in str(exc):
                        raise
                    with stats.lock:  # jailed for fraud: the node answers 402 node_not_active from now on
                        stats.jailed.add(node.name)
                        stats.last = f"{node.name} is jailed and refuses new requests; asking another node"
                    node = next(n for n in system.nodes if n.name not in stats.jailed)
                    a = ask(system, payer, node, mode, prompt, i, args.max_tokens)
            except Exception as exc:
                with stats.lock:
                    stats.failed.append(f"request {i} ({payer.name} -> {node.name}, {mode}): {exc}")
                continue
            with stats.lock:
                answers.append(a)
                payer.answers.append(a)
                stats.answered += 1
                left = "" if a.credits_left is None else f" · {format_opg(a.credits_left)} OPG credits left"
                stats.last = (f"{a.payer} -> {a.node} [{a.mode}] this answer cost {format_opg(a.cost)} OPG{left}")

    system.say(f"== chatting: {args.requests} requests ({', '.join(MODES)})")
    worker = threading.Thread(target=traffic, daemon=True)
    worker.start()
    live_view(system, stats, worker, args)
    if stats.failed:
        for f in stats.failed:
            print(f"   failed: {f}", file=sys.stderr)
    system.say(f"== {stats.answered} answered; waiting for settlement, verdicts and slashing")
    for name in sorted(stats.jailed):
        system.say(f"   {name} was jailed during the run and refused new requests from then on (402 node_not_active)")
    wait_settled(system, answers, args.timeout)
    from demo_summary import reconcile, summary  # scripts/demo_summary.py (next to this script)

    report = summary(system, payers, answers)
    problems = reconcile(system, payers, answers, report) + stats.failed
    if args.json:
        print(json.dumps({**report, "problems": problems}, default=str))
    if problems:
        for p in problems:
            print(f"demo: does not reconcile: {p}", file=sys.stderr)
        return 1
    system.say("== the summary reconciles with the chain")
    return 0


def relayer_counts(system: System) -> dict:
    out = {"pending": 0, "batches": 0, "verdicts": 0, "slashes": 0}
    relayer = RelayerClient(system.relayer_url, timeout=5)
    try:
        for line in relayer.metrics().splitlines():
            if line.startswith("opg_relayer_pending_receipts "):
                out["pending"] = int(float(line.split()[-1]))
            elif line.startswith("opg_relayer_verdicts_total{"):
                out["verdicts"] += int(float(line.split()[-1]))
        out["batches"] = len(relayer.batches(limit=1000, status="confirmed"))
        out["slashes"] = len(relayer.slashes(status="confirmed"))
    except RelayerError:
        pass
    finally:
        relayer.close()
    return out


def live_view(system: System, stats: Stats, worker: threading.Thread, args) -> None:
    """A live table while requests run (rich, on a terminal); plain progress lines otherwise."""
    use_live = sys.stdout.isatty() and not args.no_live
    if use_live:
        from rich.live import Live
        from rich.table import Table

        def table() -> Table:
            c = relayer_counts(system)
            t = Table(title="OPG devnet", expand=False)
            for col in ("answered", "receipts pending", "batches settled", "verdicts", "slashes"):
                t.add_column(col, justify="right")
            t.add_row(f"{stats.answered}/{args.requests}", str(c["pending"]), str(c["batches"]), str(c["verdicts"]),
                      str(c["slashes"]))
            t.caption = stats.last
            return t

        with Live(table(), refresh_per_second=4, transient=False) as live:
            while worker.is_alive():
                worker.join(0.5)
                live.update(table())
    else:
        shown = 0
        while worker.is_alive() or shown < stats.answered:
            worker.join(0.5)
            with stats.lock:
                if stats.answered > shown:
                    shown = stats.answered
                    print(f"   [{shown:>3}/{args.requests}] {stats.last}", flush=True)


def wait_settled(system: System, answers: list[Answer], timeout: float) -> None:
    """Until every credit receipt is settled or rejected and the relayer has no slash in flight."""
    ids = [a.receipt_id for a in answers if a.scheme == "opg-credit" and a.receipt_id]
    deadline = time.monotonic() + timeout
    relayer = RelayerClient(system.relayer_url, timeout=10)
    try:
        while time.monotonic() < deadline:
            views = [relayer.receipt(i) for i in ids]
            done = all(v is not None and v.status in ("settled", "rejected") for v in views)
            slashes = relayer.slashes()
            busy = any(s.status in ("queued", "sent") for s in slashes)
            fraud = any(s.kind == "fraud" and s.status == "confirmed" for s in slashes)
            if done and not busy and fraud:
                return
            time.sleep(1)
    finally:
        relayer.close()


if __name__ == "__main__":
    sys.exit(main())
