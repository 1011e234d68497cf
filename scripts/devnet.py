"""``make devnet``: the demo's system, kept up for ``make console``, the ``opg`` CLI and the daemons' HTTP APIs.

anvil on 127.0.0.1:8545, the contracts deployed with ``ape run deploy`` (deployments/31337.json), the relayer,
two inference nodes (the second cheating at ``--cheat-rate``), three live verifiers, and a payer (anvil account 4)
with credits. It prints where each listens and how to talk to it, then waits; Ctrl-C (SIGINT) or SIGTERM stops
every process it started.
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import signal
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from offchain.daemon.keys import anvil_key  # noqa: E402
from offchain.devkit.system import OPG, Operator, System  # noqa: E402

PAYER_ACCOUNT = 4
OPERATOR_ACCOUNT = 8  # an operator to try `opg operator register` with
OPERATOR_OPG = 300


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="make devnet", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", default="smollm2", help="model backend of nodes and verifiers (smollm2, builtin)")
    p.add_argument("--cheat-rate", type=float, default=0.1, help="the second node's rate of wrong answers")
    p.add_argument("--sample-rate", type=float, default=0.5, help="verifiers' sampling rate")
    p.add_argument("--rpc-port", type=int, default=8545)
    p.add_argument("--relayer-port", type=int, default=8402)
    p.add_argument("--base-port", type=int, default=8500, help="first port of nodes and verifiers")
    p.add_argument("--state-dir", default="var/devnet")
    p.add_argument("--deployments-dir", default=str(ROOT / "deployments"))
    p.add_argument("--credits", type=float, default=100, help="credits the payer (anvil account 4) starts with")
    p.add_argument("--wallet", type=float, default=100,
                   help="OPG the payer keeps in its wallet besides (for `opg deposit`, exact payments)")
    p.add_argument("--web-port", type=int, default=None, help="port of `opg web` (default 8600, else a free one)")
    args = p.parse_args(argv)

    state = Path(args.state_dir)
    if state.exists():
        shutil.rmtree(state)
    port = itertools.count(args.base_port)
    system = System(
        state_dir=state, rpc_port=args.rpc_port, relayer_port=args.relayer_port, backend=args.backend,
        sample_rate=args.sample_rate, deployments_dir=Path(args.deployments_dir), batch_age=5.0,
        nodes=[Operator("node-1", "inference", 1, next(port), 300),
               Operator("node-2", "inference", 5, next(port), 300, cheat_rate=args.cheat_rate)],
        verifiers=[Operator("verifier-1", "verifier", 2, next(port), 200),
                   Operator("verifier-2", "verifier", 3, next(port), 300),
                   Operator("verifier-3", "verifier", 6, next(port), 400)],
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        system.start()
        from eth_account import Account

        from offchain.client import OpgClient

        payer = Account.from_key(anvil_key(PAYER_ACCOUNT))
        amount = int(args.credits * OPG)
        system.fund(payer.address, amount + int(args.wallet * OPG))
        system.fund(Account.from_key(anvil_key(OPERATOR_ACCOUNT)).address, OPERATOR_OPG * OPG)
        OpgClient(payer, system.rpc_url, system.deployment_file, relayer_url=system.relayer_url,
                  state=state / "clients").deposit(amount)
        from offchain.web.launch import start_web

        web = start_web(system, state / "clients", dev_account=PAYER_ACCOUNT, port=args.web_port)
        print_where(system, args, payer.address)
        if web:
            print(f"   web        {web}  (opg web: chat as the payer, the path of each answer's OPG, payer and "
                  "network views)", flush=True)
        while not stop.wait(1.0):
            dead = system.alive()
            if dead:
                print(f"devnet: {', '.join(dead)} exited; see {state}/<name>.log; stopping", file=sys.stderr)
                return_code = 1
                break
        else:
            return_code = 0
    except Exception as exc:
        print(f"devnet: error: {str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)}", file=sys.stderr)
        print(f"devnet: logs are in {state}/", file=sys.stderr)
        return_code = 1
    finally:
        print("== stopping", flush=True)
        killed = system.stop()
        left = [p.name for p in system.procs if p.process.poll() is None]
        if killed or left:
            print(f"devnet: had to kill {killed}; still running {left}", file=sys.stderr)
        print(f"== every process stopped ({len(system.procs)})", flush=True)
    return return_code


def print_where(system: System, args, payer: str) -> None:
    from eth_account import Account

    n1 = system.nodes[0]
    lines = [
        "",
        "== devnet is up (Ctrl-C stops everything)",
        f"   chain      {system.rpc_url}  (chain id 31337, contracts in {system.deployment_file})",
        f"   relayer    {system.relayer_url}  (API docs {system.relayer_url}/docs)",
    ]
    for n in system.nodes:
        lines.append(f"   {n.name:<10} {n.url}/v1  ({n.address}{', cheats' if n.cheat_rate else ''})")
    for v in system.verifiers:
        lines.append(f"   {v.name:<10} {v.url}  ({v.address})")
    lines += [
        f"   payer      {payer} (anvil account {PAYER_ACCOUNT}) with {args.credits:g} OPG of credits and "
        f"{args.wallet:g} OPG in its wallet",
        f"   operator   {Account.from_key(anvil_key(OPERATOR_ACCOUNT)).address} (anvil account {OPERATOR_ACCOUNT}) with "
        f"{OPERATOR_OPG} OPG to stake (`opg operator register ... --dev-account {OPERATOR_ACCOUNT}`)",
        f"   OPG token  {system.chain.deployment.address('OPG')} (allow-list it in stock x402 clients: network "
        "eip155:31337)",
        f"   clock      the chain's clock follows the wall clock (a block every second; skew {system.clock_skew()} s)",
        "",
        "   try, in another shell (after `export PATH=$PWD/.venv/bin:$PATH`):",
        "     make console",
        f"     opg balance --dev-account {PAYER_ACCOUNT} --relayer-url {system.relayer_url}",
        f"     opg chat \"Why batch settlements?\" --dev-account {PAYER_ACCOUNT} --node-url {n1.url} "
        f"--relayer-url {system.relayer_url}",
        f"     opg operator status --address {n1.address}",
        f"     curl {n1.url}/v1/models",
    ]
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    sys.exit(main())
