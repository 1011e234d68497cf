"""``opg operator``: manage the staked account behind an inference node or a verifier.

Each command prints one readable line per outcome (``status`` prints a short report), or one JSON object with
``--json``. Exit codes: 0 done, 1 refused or failed (the line says why, with the contract's revert reason or the
time when it becomes possible), 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from ..daemon.settings import ConfigError, load_settings
from .settings import OperatorSettings

PROG = "opg operator"

DESCRIPTION = """\
Manage the staked account behind an inference node or a verifier: register with a role and a stake, add stake,
unbond and withdraw it, move the endpoint, leave jail, heartbeat, claim rewards, and read the whole state.

The signing key is an encrypted keystore (--keystore FILE, password in OPG_OPERATOR_PASSWORD or --password-file)
or, on a local devnet (chain 31337) only, one of anvil's public development accounts (--dev-account N). The chain
is --rpc-url (default http://127.0.0.1:8545) and the contracts come from deployments/<chainId>.json (or
--deployment FILE). Every option can also be set as OPG_OPERATOR_<OPTION> or in a --config TOML/JSON file
(section [operator]).

Amounts are in OPG (decimals allowed: 0.5). Times are the chain's clock."""

EPILOG = """\
examples:
  opg operator register --role inference --stake 200 --endpoint https://node.example.com --keystore node.json
  opg operator register --role verifier --stake 150 --endpoint http://127.0.0.1:8403 --dev-account 3
  opg operator status --dev-account 3                   # role, stake, jail, endpoint, live, rewards, slashes
  opg operator status --address 0xAbC... --relayer-url http://127.0.0.1:8402 --json
  opg operator stake 50 --dev-account 2                 # add 50 OPG (weighs after the warm-up)
  opg operator unbond 50 --dev-account 2                # or `unbond all`; withdrawable after the unbonding period
  opg operator withdraw --dev-account 2                 # says when, if it is too early
  opg operator claim --dev-account 3                    # verifier pools, emissions and fee shares, all at once
  opg operator set-endpoint https://node2.example.com --dev-account 2
  opg operator unjail --dev-account 2

Run `opg operator COMMAND --help` for one command. docs/operator.md explains the life of an operator account."""

COMMANDS: dict[str, tuple[str, str, str]] = {
    # name: (help, description, epilog examples)
    "register": (
        "register with a role, a stake and an endpoint",
        "Approve the stake and register this account in NodeStaking with a role (for life), an initial stake "
        "(at least the role's minimum) and the endpoint where its daemon serves. The account signs an EIP-712 "
        "Registration, proving it holds an ECDSA key (every receipt and verdict it signs is evidence against it). "
        "Fresh stake weighs in votes and rewards only after the warm-up.",
        "  opg operator register --role inference --stake 200 --endpoint https://node.example.com --keystore k.json\n"
        "  opg operator register --role verifier --stake 100 --endpoint http://127.0.0.1:8403 --dev-account 3",
    ),
    "stake": (
        "add stake",
        "Approve and add AMOUNT OPG to the active stake. It weighs after the warm-up; a jailed account whose "
        "jail has served its time is released once its stake is back at its pre-slash level.",
        "  opg operator stake 50 --dev-account 2",
    ),
    "unbond": (
        "start unbonding stake",
        "Move AMOUNT OPG (or `all`) of active stake to unbonding. All unbonding stake becomes withdrawable one "
        "unbonding period after the LATEST request (a new request restarts the clock) and stays slashable until "
        "withdrawn.",
        "  opg operator unbond 50 --dev-account 2\n  opg operator unbond all --dev-account 2",
    ),
    "withdraw": (
        "withdraw unbonded stake",
        "Pay the unbonding stake back to the account once the unbonding period is over (and, for an inference "
        "node, a dispute window after its last settlement). Too early: exits 1 and says when it becomes possible.",
        "  opg operator withdraw --dev-account 2",
    ),
    "claim": (
        "collect and claim every reward",
        "Collect this account's shares of ended epochs (verifier pools it had snapshot weight in, found from its "
        "Heartbeat events; emissions of epochs it settled fees in, from FeesCredited events), then claim "
        "everything claimable from the RewardDistributor (node fee shares, collected rewards). Fraud bounties "
        "(the challenger reward of a slash) are paid at the slash itself and need no claim.",
        "  opg operator claim --dev-account 3\n  opg operator claim --keystore node.json --json",
    ),
    "status": (
        "show the account's whole state",
        "Role, stake (warm and fresh), unbonding and when it is withdrawable, jail and its terms, endpoint and "
        "whether it answers /healthz, epoch, vote weight and liveness (heartbeats), claimable and uncollected "
        "rewards, fees settled, and for verifiers the verdicts proofs carried on-chain, flags and slashes "
        "suffered (from chain events; with --relayer-url also the relayer's slashing submissions). Needs no key "
        "with --address.",
        "  opg operator status --dev-account 3\n"
        "  opg operator status --address 0xAbC... --relayer-url http://127.0.0.1:8402 --json",
    ),
    "set-endpoint": (
        "change the registered endpoint",
        "Register URL as where this account's daemon serves (clients and verifiers find it there).",
        "  opg operator set-endpoint https://node2.example.com --dev-account 2",
    ),
    "unjail": (
        "leave jail",
        "Release the account once a dispute window has passed since its jailing and its active stake is back at "
        "its level before the offence (and at least the minimum). Too early: says when and how much stake is "
        "missing.",
        "  opg operator unjail --dev-account 2",
    ),
    "heartbeat": (
        "record a verifier as live for the next epoch",
        "A verifier's warm stake becomes its vote and reward weight in the next epoch. `opg verifier run` does "
        "this every epoch; this command is the manual fallback.",
        "  opg operator heartbeat --dev-account 3",
    ),
}

SETTING_FLAGS = ("rpc_url", "deployment", "keystore", "password_file", "dev_account", "relayer_url", "tx_timeout",
                 "from_block")


def _parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("chain and key")
    g.add_argument("--rpc-url", metavar="URL", help="JSON-RPC endpoint [env OPG_OPERATOR_RPC_URL; default "
                                                     "http://127.0.0.1:8545]")
    g.add_argument("--deployment", metavar="FILE", help="deployment file [default deployments/<chainId>.json]")
    g.add_argument("--keystore", metavar="FILE", help="encrypted keystore of the account (eth-account or ape "
                                                      "format); password in OPG_OPERATOR_PASSWORD")
    g.add_argument("--password-file", metavar="FILE", help="file holding the keystore password")
    g.add_argument("--dev-account", metavar="N", help="anvil development account N (chain 31337 only)")
    g.add_argument("--config", metavar="FILE", type=Path, help="TOML or JSON settings [env OPG_OPERATOR_CONFIG]")
    g.add_argument("--tx-timeout", metavar="S", help="seconds to wait for each transaction [default 120]")
    g.add_argument("--json", action="store_true", help="print one JSON object (amounts in wei, as strings)")

    parser = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION, epilog=EPILOG, formatter_class=fmt)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    subs = {}
    for name, (help_, description, examples) in COMMANDS.items():
        subs[name] = sub.add_parser(name, help=help_, description=description, epilog="examples:\n" + examples,
                                    parents=[common], formatter_class=fmt)
    subs["register"].add_argument("--role", required=True, choices=["inference", "verifier"],
                                  help="inference (serves models) or verifier (re-executes and votes)")
    subs["register"].add_argument("--stake", required=True, metavar="OPG", help="initial stake in OPG")
    subs["register"].add_argument("--endpoint", required=True, metavar="URL",
                                  help="where the daemon serves (http(s)://, at most 256 bytes)")
    subs["stake"].add_argument("amount", metavar="AMOUNT", help="OPG to add")
    subs["unbond"].add_argument("amount", metavar="AMOUNT", help="OPG to unbond, or `all`")
    subs["set-endpoint"].add_argument("endpoint", metavar="URL", help="the new endpoint")
    for name in ("status", "claim"):
        subs[name].add_argument("--from-block", metavar="N",
                                help="first block scanned for events [default: the deployment's first block]")
    st = subs["status"]
    st.add_argument("--address", metavar="ADDR", help="show this account (no key needed)")
    st.add_argument("--relayer-url", metavar="URL", help="also list the relayer's slashing submissions against "
                                                         "the account [env OPG_OPERATOR_RELAYER_URL]")
    st.add_argument("--no-probe", action="store_true", help="do not call the endpoint's /healthz")
    return parser


def _settings(args: argparse.Namespace) -> OperatorSettings:
    flags = {k: getattr(args, k, None) for k in SETTING_FLAGS}
    config = args.config or (Path(os.environ["OPG_OPERATOR_CONFIG"]) if os.environ.get("OPG_OPERATOR_CONFIG")
                             else None)
    return load_settings(OperatorSettings, flags, config, section="operator")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        parser.print_help()
        return 0
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2, message already printed)
        return int(exc.code or 0)
    if args.command is None:
        parser.print_help()
        return 0
    prog = f"{PROG} {args.command}"
    try:
        settings = _settings(args)
        result = run(args, settings)
    except ConfigError as exc:
        return _fail(prog, str(exc), 2, args.json, {})
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - one readable line, never a traceback
        from .ops import OperatorError

        if isinstance(exc, OperatorError):
            return _fail(prog, str(exc), exc.code, args.json, exc.data)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        return _fail(prog, f"{exc.__class__.__name__}: {first}", 1, args.json, {})
    if args.json:
        print(json.dumps({"ok": True, "command": args.command, **result}, indent=2))
    else:
        for line in result.pop("_lines"):
            print(line)
    return 0


def _fail(prog: str, message: str, code: int, as_json: bool, data: dict) -> int:
    first = message.strip().splitlines()[0] if message.strip() else "failed"
    if as_json:
        print(json.dumps({"ok": False, "error": first, **data}))
    print(f"{prog}: error: {first}", file=sys.stderr)
    return code


def run(args: argparse.Namespace, settings: OperatorSettings) -> dict[str, Any]:
    """Run one command; returns its JSON result with ``_lines`` (the readable output) added."""
    from .ops import Operator, OperatorError, fmt_opg, parse_opg, when

    command = args.command
    if command == "status":
        address = args.address
        if address is not None:
            from web3 import Web3

            if not Web3.is_address(address):
                raise OperatorError(f"--address {address!r} is not an address", 2)
        op = Operator.connect(settings, need_key=False, address=address)
        result = op.status(probe=not args.no_probe)
        result["_lines"] = status_lines(result)
        return result

    # Validate arguments before touching the chain.
    amount = None
    if command == "register":
        stake = parse_opg(args.stake, "stake")
    elif command == "stake":
        amount = parse_opg(args.amount)
    elif command == "unbond" and args.amount.strip().lower() != "all":
        amount = parse_opg(args.amount)
    op = Operator.connect(settings, need_key=True)
    now = op.now
    if command == "register":
        r = op.register(args.role, stake, args.endpoint)
        line = f"registered {r['address']} as {'an inference node' if args.role == 'inference' else 'a verifier'}: " \
               f"stake {fmt_opg(int(r['stake']))}, endpoint {r['endpoint']}; "
        line += "it can serve and be paid now" if args.role == "inference" else \
            f"its stake is warm from {when(r['warmupEndsAt'], now())}, then a heartbeat makes it live the next epoch"
    elif command == "stake":
        r = op.add_stake(amount)
        line = f"added {fmt_opg(amount)}: stake now {fmt_opg(int(r['stake']))}"
        if r["role"] == "verifier":
            line += f", the new stake weighs from {when(r['warmupEndsAt'], now())}"
        if r["wasJailed"]:
            line += "; released from jail" if not r["jailed"] else "; still jailed (see `opg operator status`)"
    elif command == "unbond":
        r = op.unbond(amount)
        line = (f"unbonding {fmt_opg(int(r['amount']))} ({fmt_opg(int(r['unbonding']))} unbonding in all, "
                f"{fmt_opg(int(r['stake']))} still active): withdrawable from {when(r['withdrawableAt'], now())}")
    elif command == "withdraw":
        r = op.withdraw()
        line = f"withdrew {fmt_opg(int(r['amount']))} of unbonded stake; wallet now {fmt_opg(int(r['balance']))}"
    elif command == "claim":
        r = op.claim()
        parts = []
        if r["verifierRewards"]:
            total = sum(int(i["amount"]) for i in r["verifierRewards"])
            parts.append(f"verifier pools of epoch{'s' if len(r['verifierRewards']) > 1 else ''} "
                         f"{', '.join(str(i['epoch']) for i in r['verifierRewards'])}: {fmt_opg(total)}")
        if r["emissions"]:
            total = sum(int(i["amount"]) for i in r["emissions"])
            parts.append(f"emissions of epoch{'s' if len(r['emissions']) > 1 else ''} "
                         f"{', '.join(str(i['epoch']) for i in r['emissions'])}: {fmt_opg(total)}")
        detail = f" (collected {'; '.join(parts)})" if parts else ""
        if int(r["claimed"]):
            line = f"claimed {fmt_opg(int(r['claimed']))}{detail}; wallet now {fmt_opg(int(r['balance']))}"
        else:
            line = f"nothing to claim{detail}"
    elif command == "set-endpoint":
        r = op.set_endpoint(args.endpoint)
        line = f"endpoint now {r['endpoint']} (was {r['previous']})"
    elif command == "unjail":
        r = op.unjail()
        line = f"released {r['address']} from jail"
    elif command == "heartbeat":
        r = op.heartbeat()
        line = f"heartbeat: weight {fmt_opg(int(r['weight']))} recorded for epoch {r['epoch']}"
    else:  # pragma: no cover - argparse restricts the choices
        raise OperatorError(f"unknown command {command!r}", 2)
    if r.get("txs"):
        line += f"; tx {r['txs'][-1]}" if len(r["txs"]) == 1 else f"; {len(r['txs'])} txs, last {r['txs'][-1]}"
    r["_lines"] = [line]
    return r


def status_lines(s: dict) -> list[str]:
    """The readable ``status`` report."""
    from .ops import fmt_opg, fmt_time, when

    now = s["chainTime"]
    bal = s["balances"]
    wallet = f"{fmt_opg(int(bal['opg']))}, {int(bal['eth']) / 10**18:.4f} ETH"
    if not s["registered"]:
        mins = ", ".join(f"{role} {fmt_opg(int(v))}" for role, v in s["minStake"].items())
        return [f"{s['address']} on chain {s['chainId']}: not registered (minimum stake: {mins}; "
                "`opg operator register --help`)", f"  wallet       {wallet}"]
    state = ["active" if s["active"] else "not active"]
    if s["jailed"]:
        state.append("JAILED")
    if s["role"] == "verifier":
        state.append("live" if s["live"] else "not live this epoch")
    elif "payable" in s:
        state.append("payable" if s["payable"] else "not payable")
    lines = [f"{s['address']} on chain {s['chainId']}: {s['role']}, {', '.join(state)}"]
    stake = f"{fmt_opg(int(s['stake']))} (warm {fmt_opg(int(s['warmStake']))}"
    if int(s["freshStake"]):
        stake += f"; {fmt_opg(int(s['freshStake']))} fresh, warm from {when(s['warmAt'], now)}"
    lines.append(f"  stake        {stake}); minimum {fmt_opg(int(s['minStake']))}")
    if int(s["unbonding"]):
        ready = s["withdrawableAt"]
        tail = "withdraw it now: `opg operator withdraw`" if ready <= now else f"withdrawable from {when(ready, now)}"
        lines.append(f"  unbonding    {fmt_opg(int(s['unbonding']))}, {tail}")
    else:
        lines.append("  unbonding    none")
    if s["jailed"]:
        jail = s["jail"]
        missing = int(jail["missingStake"])
        terms = [f"since {fmt_time(jail['since'])}", f"released from {when(jail['until'], now)}"]
        if missing:
            terms.append(f"once active stake is back at {fmt_opg(int(jail['restoreStake']))} (add {fmt_opg(missing)})")
        lines.append(f"  jail         {'; '.join(terms)}; then `opg operator unjail`")
    else:
        lines.append("  jail         not jailed")
    health = s.get("endpointHealth")
    if health is None:
        probe = ""
    elif health["ok"]:
        probe = f" (answers /healthz, {health['ms']} ms)"
    else:
        probe = f" (not answering /healthz: {health.get('error') or 'HTTP ' + str(health.get('status'))})"
    lines.append(f"  endpoint     {s['endpoint']}{probe}")
    lines.append(f"  epoch        {s['epoch']}, ends {when(s['epochEndsAt'], now)}")
    if s["role"] == "verifier":
        due = "heartbeat due this epoch" if s["heartbeatDue"] else "heartbeat done for the next epoch"
        lines.append(f"  vote weight  {fmt_opg(int(s['voteWeight']))} now; next epoch "
                     f"{fmt_opg(int(s['weightNextEpoch']))} ({due})")
        beat = s["lastHeartbeat"]
        lines.append("  heartbeat    " + ("never" if beat is None else
                                         f"last in epoch {beat['epoch']} at {fmt_time(beat['time'])} (block "
                                         f"{beat['block']}, weight {fmt_opg(int(beat['weight']))})"))
        verdicts = s["verdicts"]
        fraud = sum(1 for v in verdicts if not v["valid"])
        lines.append(f"  verdicts     {len(verdicts)} carried by on-chain proofs ({len(verdicts) - fraud} valid, "
                     f"{fraud} fraud); {len(s['flags'])} on-chain flag{'s' if len(s['flags']) != 1 else ''}")
    rw = s["rewards"]
    epochs = [str(i["epoch"]) for i in rw["verifier"] + rw["emission"]]
    line = f"  rewards      claimable {fmt_opg(int(rw['claimable']))}"
    if int(rw["uncollected"]):
        line += f" + uncollected {fmt_opg(int(rw['uncollected']))} (epochs {', '.join(epochs)})"
    if rw["emissionPending"]:
        line += f"; emissions of epoch{'s' if len(rw['emissionPending']) > 1 else ''} " \
                f"{', '.join(map(str, rw['emissionPending']))} decided at finalisation"
    if int(rw["total"]) or rw["emissionPending"]:
        line += ": `opg operator claim`"
    lines.append(line)
    if s["role"] == "inference":
        lines.append(f"  fees         {fmt_opg(int(rw['feesSettled']))} settled (gross)")
    slashes = s["slashes"]
    if slashes:
        total = sum(int(x["amount"]) for x in slashes)
        kinds = ", ".join(f"{x['kind']} {fmt_opg(int(x['amount']))} at {fmt_time(x['time'])}" for x in slashes[-3:])
        lines.append(f"  slashes      {len(slashes)}, {fmt_opg(total)} in all: {kinds}")
    else:
        lines.append("  slashes      none")
    if "relayerSlashes" in s:
        if s.get("relayerError"):
            lines.append(f"  relayer      {s['relayerError']}")
        else:
            rs = s["relayerSlashes"]
            listed = ", ".join(f"{r['kind']} {r['status']}" for r in rs[:5])
            lines.append(f"  relayer      {len(rs)} slashing submission{'s' if len(rs) != 1 else ''} against this "
                         f"account{': ' + listed if rs else ''}")
    lines.append(f"  wallet       {wallet}")
    return lines


if __name__ == "__main__":
    sys.exit(main())
