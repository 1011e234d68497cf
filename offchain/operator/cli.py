"""``opg operator``: manage the staked account behind an inference node or a verifier.

Each command is a body returning (JSON result, readable lines) from :mod:`offchain.operator.ops`; ``operator_command``
prints one of them (``--json``: one JSON object), or the refusal as one line with the contract's revert reason or the
time when it becomes possible. Exit codes: :mod:`offchain.clikit`'s.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from .. import clikit
from ..daemon.settings import ConfigError
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

COMMON = ("rpc_url", "deployment", "keystore", "password_file", "dev_account", "tx_timeout")


@clikit.group("operator", help=DESCRIPTION, epilog=EPILOG + "\n\n" + clikit.EXIT_CODES)
def operator() -> None:
    pass


def operator_command(name: str, extra: tuple[str, ...] = (),
                     amount: bool = False) -> Callable[[Callable[..., Result]], Any]:
    """An ``opg operator`` command: the body returns (JSON result, readable lines); this prints one of them, or
    the refusal as one line (with ``--json`` also ``{"ok": false, "error": ...}`` on stdout)."""
    short, description, examples = COMMANDS[name]

    def decorate(body: Callable[..., Result]) -> Any:
        @functools.wraps(body)
        def command(settings: OperatorSettings, as_json: bool, **params: Any) -> int:
            from .ops import OperatorError

            try:
                result, lines = body(settings, **params)
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # noqa: BLE001 - one readable line, never a traceback
                code, data, message = clikit.FAILED, {}, f"{exc.__class__.__name__}: {clikit.one_line(exc)}"
                if isinstance(exc, OperatorError):
                    code, data, message = exc.code, exc.data, clikit.one_line(exc)
                elif isinstance(exc, (ConfigError, clikit.CliError)):
                    code, message = getattr(exc, "exit_code", clikit.USAGE), clikit.one_line(exc)
                if as_json:
                    clikit.emit({"ok": False, "error": message, **data}, True, indent=None)
                raise clikit.CliError(message, code) from None
            clikit.emit({"ok": True, "command": name, **result}, True) if as_json else clikit.emit(None, False, lines)
            return clikit.OK

        command = clikit.json_option(command)
        command = clikit.settings_options(OperatorSettings, section="operator", only=COMMON + extra)(command)
        return operator.command(name, help=description, short_help=short, epilog="examples:\n" + examples,
                                **({"context_settings": clikit.NEGATIVE_OK} if amount else {}))(command)

    return decorate


Result = tuple[dict[str, Any], list[str]]


def _with_txs(line: str, r: dict) -> list[str]:
    if r.get("txs"):
        line += f"; tx {r['txs'][-1]}" if len(r["txs"]) == 1 else f"; {len(r['txs'])} txs, last {r['txs'][-1]}"
    return [line]


def _connect(settings: OperatorSettings) -> Any:
    from .ops import Operator

    return Operator.connect(settings, need_key=True)


@operator_command("status", extra=("relayer_url", "from_block"))
@click.option("--address", metavar="ADDR", help="show this account (no key needed)")
@click.option("--no-probe", is_flag=True, help="do not call the endpoint's /healthz")
def status(settings: OperatorSettings, address: str | None, no_probe: bool) -> Result:
    from .ops import Operator, OperatorError

    if address is not None:
        from web3 import Web3

        if not Web3.is_address(address):
            raise OperatorError(f"--address {address!r} is not an address", 2)
    result = Operator.connect(settings, need_key=False, address=address).status(probe=not no_probe)
    return result, status_lines(result)


@operator_command("register")
@click.option("--role", required=True, type=clikit.Choice(["inference", "verifier"]),
              help="inference (serves models) or verifier (re-executes and votes)")
@click.option("--stake", required=True, metavar="OPG", help="initial stake in OPG")
@click.option("--endpoint", required=True, metavar="URL", help="where the daemon serves (http(s)://, at most 256 bytes)")
def register(settings: OperatorSettings, role: str, stake: str, endpoint: str) -> Result:
    from .ops import fmt_opg, parse_opg, when

    amount = parse_opg(stake, "stake")  # arguments before the chain
    op = _connect(settings)
    r = op.register(role, amount, endpoint)
    line = f"registered {r['address']} as {'an inference node' if role == 'inference' else 'a verifier'}: " \
           f"stake {fmt_opg(int(r['stake']))}, endpoint {r['endpoint']}; "
    line += "it can serve and be paid now" if role == "inference" else \
        f"its stake is warm from {when(r['warmupEndsAt'], op.now())}, then a heartbeat makes it live the next epoch"
    return r, _with_txs(line, r)


@operator_command("stake", amount=True)
@click.argument("amount", metavar="AMOUNT")
def stake(settings: OperatorSettings, amount: str) -> Result:
    from .ops import fmt_opg, parse_opg, when

    value = parse_opg(amount)
    op = _connect(settings)
    r = op.add_stake(value)
    line = f"added {fmt_opg(value)}: stake now {fmt_opg(int(r['stake']))}"
    if r["role"] == "verifier":
        line += f", the new stake weighs from {when(r['warmupEndsAt'], op.now())}"
    if r["wasJailed"]:
        line += "; released from jail" if not r["jailed"] else "; still jailed (see `opg operator status`)"
    return r, _with_txs(line, r)


@operator_command("unbond", amount=True)
@click.argument("amount", metavar="AMOUNT")
def unbond(settings: OperatorSettings, amount: str) -> Result:
    from .ops import fmt_opg, parse_opg, when

    value = None if amount.strip().lower() == "all" else parse_opg(amount)
    op = _connect(settings)
    r = op.unbond(value)
    line = (f"unbonding {fmt_opg(int(r['amount']))} ({fmt_opg(int(r['unbonding']))} unbonding in all, "
            f"{fmt_opg(int(r['stake']))} still active): withdrawable from {when(r['withdrawableAt'], op.now())}")
    return r, _with_txs(line, r)


@operator_command("withdraw")
def withdraw(settings: OperatorSettings) -> Result:
    from .ops import fmt_opg

    r = _connect(settings).withdraw()
    return r, _with_txs(f"withdrew {fmt_opg(int(r['amount']))} of unbonded stake; wallet now "
                        f"{fmt_opg(int(r['balance']))}", r)


@operator_command("claim", extra=("from_block",))
def claim(settings: OperatorSettings) -> Result:
    from .ops import fmt_opg

    r = _connect(settings).claim()
    parts = []
    for key, what in (("verifierRewards", "verifier pools"), ("emissions", "emissions")):
        if r[key]:
            total = sum(int(i["amount"]) for i in r[key])
            parts.append(f"{what} of epoch{'s' if len(r[key]) > 1 else ''} "
                         f"{', '.join(str(i['epoch']) for i in r[key])}: {fmt_opg(total)}")
    detail = f" (collected {'; '.join(parts)})" if parts else ""
    if int(r["claimed"]):
        line = f"claimed {fmt_opg(int(r['claimed']))}{detail}; wallet now {fmt_opg(int(r['balance']))}"
    else:
        line = f"nothing to claim{detail}"
    return r, _with_txs(line, r)


@operator_command("set-endpoint")
@click.argument("endpoint", metavar="URL")
def set_endpoint(settings: OperatorSettings, endpoint: str) -> Result:
    r = _connect(settings).set_endpoint(endpoint)
    return r, _with_txs(f"endpoint now {r['endpoint']} (was {r['previous']})", r)


@operator_command("unjail")
def unjail(settings: OperatorSettings) -> Result:
    r = _connect(settings).unjail()
    return r, _with_txs(f"released {r['address']} from jail", r)


@operator_command("heartbeat")
def heartbeat(settings: OperatorSettings) -> Result:
    from .ops import fmt_opg

    r = _connect(settings).heartbeat()
    return r, _with_txs(f"heartbeat: weight {fmt_opg(int(r['weight']))} recorded for epoch {r['epoch']}", r)


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

