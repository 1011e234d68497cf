"""``opg season``: season usage and rewards.

Payers:
  opg season status [--account A]          the distributor's root, season, pending root; an account's standing
  opg season usage [--config F] [--json]   the usage table from chain events (the open season, or the closed ones)
  opg season claim [--account A]           claim an account's reward with the published table (paid to the account)
Operators:
  opg season deploy [--root-delay S] [--expiry-seasons K] [--min-season-length S] [--governance-delay S]
                                           deploy the SeasonDistributor into the deployment file
  opg season close --budget OPG [--to-block B] [--evidence-block B] [--reward-bps C] [--cap-bps X]
  opg season build                         write the last closed season's table (JSON) and print its hash and root
  opg season propose [--fund]              propose the table's root (claimable after the distributor's delay)
  opg season accept                        accept the proposed root once its delay is over (anyone)

Common flags (before or after the command): --rpc-url (OPG_RPC_URL, default http://127.0.0.1:8545), --deployment
FILE, --key HEX (OPG_KEY) or --dev-account N (anvil's keys, chain 31337 only), --json. Each command is a body that
renders its outcome with ``clikit.emit``; exit codes are :mod:`offchain.clikit`'s.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import click
import requests
from pydantic import ValidationError

from .. import clikit
from .ops import (
    DEFAULT_EXPIRY_SEASONS,
    DEFAULT_GOVERNANCE_DELAY,
    DEFAULT_ROOT_DELAY,
    SeasonError,
    load_config,
    load_table,
    open_seasons,
    table_path,
)
from .usage import table_bytes, table_hash

PROG = "opg season"


def _opg(wei: int | str) -> str:
    return f"{Decimal(int(wei)) / Decimal(10**18):.6f}".rstrip("0").rstrip(".")


class OpgAmount(click.ParamType):
    """An OPG decimal as integer wei."""

    name = "OPG"

    def convert(self, value: Any, param: Any, ctx: Any) -> int:
        if isinstance(value, int):
            return value
        try:
            wei = Decimal(value) * 10**18
        except Exception:
            self.fail(f"not an OPG amount: {value!r}", param, ctx)
        if wei < 0 or wei != wei.to_integral_value():
            self.fail(f"not an OPG amount: {value!r}", param, ctx)
        return int(wei)


def _common(f: Callable[..., Any]) -> Callable[..., Any]:
    """The connection and key options; on the group (before the command) and on each command (after it: these win)."""
    for option in reversed((
        click.option("--rpc-url", envvar="OPG_RPC_URL", default=None, help="JSON-RPC endpoint [env OPG_RPC_URL; "
                     "default http://127.0.0.1:8545]"),
        click.option("--deployment", envvar="OPG_DEPLOYMENT", default=None, help="deployment file [env "
                     "OPG_DEPLOYMENT; default deployments/<chainId>.json]"),
        click.option("--key", envvar="OPG_KEY", default=None, help="private key (hex) sending transactions [env "
                     "OPG_KEY]"),
        click.option("--dev-account", type=int, default=None, help="anvil development account N (chain 31337 only)"),
        click.option("--json", "as_json", is_flag=True, default=None, help="print JSON (machine-readable)"),
    )):
        f = option(f)
    return f


@clikit.group("season", help="Season usage and rewards: payers read their standing and claim; the operator closes a season, builds "
              "its table and proposes its root.", epilog=clikit.EXIT_CODES)
@_common
@click.pass_context
def season(ctx: click.Context, **common: Any) -> None:
    ctx.obj = common


def season_command(name: str, help: str, examples: str) -> Callable[[Callable[..., Any]], Any]:
    """A season command: the common options merged (after the command beats before it), chain errors as one line."""

    def decorate(body: Callable[..., Any]) -> Any:
        @functools.wraps(body)
        @click.pass_context
        def command(ctx: click.Context, rpc_url: Any, deployment: Any, key: Any, dev_account: Any, as_json: Any,
                    **params: Any) -> int:
            given = {"rpc_url": rpc_url, "deployment": deployment, "key": key, "dev_account": dev_account,
                     "json": as_json}
            common = {k: v for k, v in (ctx.obj or {}).items()}
            common["json"] = common.pop("as_json", None)
            args = SimpleNamespace(**{k: given[k] if given[k] is not None else common.get(k) for k in given},
                                   command=name, **params)
            args.rpc_url = args.rpc_url or "http://127.0.0.1:8545"
            args.json = bool(args.json)
            try:
                return body(_open(args), args)
            except SeasonError as exc:
                raise clikit.CliError(str(exc), clikit.FAILED) from None
            except ValidationError as exc:
                raise clikit.CliError("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()),
                                      clikit.USAGE) from None
            except (FileNotFoundError, ValueError) as exc:
                raise clikit.CliError(str(exc), clikit.USAGE) from None
            except (clikit.CliError, KeyboardInterrupt):
                raise
            except Exception as exc:  # the chain said no, or cannot be reached
                raise clikit.CliError(f"{exc.__class__.__name__}: {exc}", clikit.FAILED) from None

        return season.command(name, help=help, epilog="examples:\n" + examples)(_common(command))

    return decorate


def _open(args: SimpleNamespace) -> Any:
    try:
        return open_seasons(args.rpc_url, args.deployment)
    except (requests.exceptions.RequestException, OSError) as exc:
        raise SeasonError(f"cannot reach the chain at {args.rpc_url}: {exc.__class__.__name__}") from None


def _key(args: Any, seasons) -> str:
    if args.dev_account is not None:
        from ..daemon.keys import DEVNET_CHAIN_ID, anvil_key

        if seasons.deployment.chainId != DEVNET_CHAIN_ID:
            raise SeasonError("--dev-account only on the local chain 31337")
        return anvil_key(args.dev_account)
    if not args.key:
        raise SeasonError("no key: give --key (or OPG_KEY) or --dev-account N")
    return args.key


def _address(args: Any, seasons, explicit: str | None) -> str:
    if explicit:
        return explicit
    from eth_account import Account

    return Account.from_key(_key(args, seasons)).address


def table_lines(table: dict) -> list[str]:
    lines = [f"season {table['season']}  root {table['root']}  hash {table_hash(table)}",
             f"{'account':<42} {'settled':>12} {'excluded':>12} {'fees':>10} {'emission':>10} {'reward':>10} "
             f"{'cumulative':>12}"]
    for a in table["accounts"]:
        lines.append(f"{a['account']:<42} {_opg(a['settled']):>12} {_opg(a['excluded']):>12} {_opg(a['fees']):>10} "
                     f"{_opg(a['emission']):>10} {_opg(a['reward']):>10} {_opg(a['cumulative']):>12}")
    lines.append(f"total reward {_opg(table['total_reward'])} OPG, cumulative {_opg(table['total_cumulative'])} OPG")
    return lines


@season_command("usage", "The usage table from chain events: the open season (provisional), or the seasons of a "
                         "config file.", "  opg season usage\n  opg season --json usage --config seasons.json")
@click.option("--config", type=click.Path(path_type=Path), help="season parameters (default: closed seasons + the "
                                                                "open one)")
@click.option("--budget", type=OpgAmount(), default=0, help="the open season's budget, OPG (for its rewards)")
def usage(seasons: Any, args: Any) -> int:
    config = load_config(args.config) if args.config else seasons.provisional_config(budget=args.budget)
    if config is None:
        raise SeasonError(f"no season parameters at {args.config}")
    table = seasons.table(config)
    if args.json:
        sys.stdout.buffer.write(table_bytes(table))  # the canonical bytes its hash is taken over
        sys.stdout.flush()
    else:
        clikit.emit(table, False, table_lines)
    return 0


@season_command("close", "Close the open season: its blocks, evidence horizon and budget go into the seasons file.",
                "  opg season close --budget 100 --dev-account 0")
@click.option("--budget", type=OpgAmount(), required=True, help="OPG the season pays at most")
@click.option("--to-block", type=int)
@click.option("--evidence-block", type=int)
@click.option("--reward-bps", type=int, default=8_000, help="C: reward + emission <= C x protocol fee")
@click.option("--cap-bps", type=int, default=500, help="per-address cap, share of the budget")
def close(seasons: Any, args: Any) -> int:
    config, path = seasons.close_season(args.budget, args.to_block, args.evidence_block,
                                        reward_bps=args.reward_bps, cap_bps=args.cap_bps)
    last = config.seasons[-1]
    if seasons.warning:
        click.echo(f"{PROG}: warning: {seasons.warning}", err=True)
    out = {"season": last.season, "from_block": last.from_block, "to_block": last.to_block,
           "evidence_block": last.evidence_block, "budget": last.budget, "config": str(path)}
    clikit.emit(out, args.json, [f"season {last.season}: blocks {last.from_block}..{last.to_block}, evidence to "
                                 f"{last.evidence_block}, budget {_opg(last.budget)} OPG -> {path}"], indent=None)
    return 0


@season_command("build", "Write the last closed season's table (JSON) and print its hash and root.",
                "  opg season build\n  opg season --json build")
@click.option("--config", type=click.Path(path_type=Path))
def build(seasons: Any, args: Any) -> int:
    table, path = seasons.build(load_config(args.config) if args.config else None)
    out = {"season": table["season"], "root": table["root"], "hash": table_hash(table),
           "total_cumulative": table["total_cumulative"], "table": str(path)}
    clikit.emit(out, args.json, [*table_lines(table), f"wrote {path} (keccak256 {out['hash']})"], indent=None)
    return 0


@season_command("deploy", "Deploy the SeasonDistributor into the deployment file.",
                "  opg season deploy --root-delay 60 --dev-account 0")
@click.option("--root-delay", type=int, default=DEFAULT_ROOT_DELAY, show_default=True)
@click.option("--expiry-seasons", type=int, default=DEFAULT_EXPIRY_SEASONS, show_default=True)
@click.option("--min-season-length", type=int, default=None,
              help="least seconds between accepted roots; earnings expire after K x this (default 30 days; the root "
                   "delay on the devnet)")
@click.option("--governance-delay", type=int, default=DEFAULT_GOVERNANCE_DELAY,
              help="timelock of a treasury change (default 7 days)")
@click.option("--treasury")
def deploy(seasons: Any, args: Any) -> int:
    address = seasons.deploy(_key(args, seasons), args.root_delay, args.expiry_seasons, args.treasury,
                             args.min_season_length, args.governance_delay)
    clikit.emit({"SeasonDistributor": address}, args.json, [f"SeasonDistributor {address}"], indent=None)
    return 0


@season_command("status", "The distributor's root, season and pending root; an account's standing (--account).",
                "  opg season status --account 0xYourAddress\n  opg season --json status")
@click.option("--account")
def status(seasons: Any, args: Any) -> int:
    out = seasons.status() if seasons.deployed else {"distributor": None}
    if args.account:
        out["standing"] = seasons.standing(args.account)
    clikit.emit(out, args.json, status_lines(out, bool(args.account)), sort_keys=True)
    return 0


def status_lines(out: dict, with_account: bool) -> list[str]:
    lines = []
    if out.get("distributor"):
        lines.append(f"distributor   {out['distributor']}  season {out['season']}  root {out['root']}")
        lines.append(f"owed          {_opg(out['outstanding'])} OPG of {_opg(out['root_total'])}; held "
                     f"{_opg(out['held'])}; surplus {_opg(out['surplus'])}; expired {_opg(out['total_expired'])}")
        lines.append(f"cadence       seasons >= {out['min_season_length']} s apart (next from "
                     f"{out['next_season_at']}); earnings expire {out['expiry_period']} s and {out['expiry_seasons']} "
                     "seasons after theirs")
        if out["pending"]:
            p = out["pending"]
            lines.append(f"pending       season {p['season']} root {p['root']} total {_opg(p['total'])} OPG, "
                         f"acceptable from {p['eta']}")
    else:
        lines.append("distributor   not deployed (`opg season deploy`)")
    if with_account:
        st = out["standing"]
        o = st["open_season"]
        lines.append(f"account       {st['account']}: S{o['season']} so far {_opg(o['usage'])} OPG of usage, "
                     f"{_opg(o['fees'])} OPG of eligible fees")
        if "claimable" in st:
            lines.append(f"rewards       claimable {_opg(st['claimable'])} OPG, claimed {_opg(st['claimed'])} OPG")
    return lines


@season_command("propose", "Propose the table's root (claimable after the distributor's delay).",
                "  opg season propose --fund --dev-account 0")
@click.option("--table", type=click.Path(path_type=Path))
@click.option("--fund", is_flag=True, help="transfer the OPG the root lacks from the key first")
def propose(seasons: Any, args: Any) -> int:
    key = _key(args, seasons)
    path = args.table or table_path(seasons.deployment.chainId,
                                    (seasons.config().seasons[-1].season if seasons.config() else 0),
                                    seasons.directory)
    result = seasons.propose(key, load_table(path), fund=args.fund)
    clikit.emit(result, args.json, [f"proposed {path.name}: claimable from {result['eta']} "
                                    f"(tx {result['transaction']})"], indent=None)
    return 0


@season_command("accept", "Accept the proposed root once its delay is over (anyone).",
                "  opg season accept --dev-account 4")
def accept(seasons: Any, args: Any) -> int:
    tx = seasons.accept(_key(args, seasons))
    clikit.emit({"transaction": tx}, args.json, [f"accepted (tx {tx})"], indent=None)
    return 0


@season_command("claim", "Claim an account's reward with the published table (paid to the account).",
                "  opg season claim --dev-account 4\n  opg season claim --account 0xPayer --table season-1.json "
                "--key $KEY")
@click.option("--account", help="the account paid (default: the key's)")
@click.option("--table", type=click.Path(path_type=Path), help="the season table (default: the claimable "
                                                               "season's file)")
def claim(seasons: Any, args: Any) -> int:
    key = _key(args, seasons)
    season_no = seasons.contract.functions.season().call()
    path = args.table or table_path(seasons.deployment.chainId, season_no, seasons.directory)
    if not path.exists():
        raise SeasonError(f"no table at {path}: get season {season_no}'s table from the operator (--table)")
    result = seasons.claim(key, load_table(path), _address(args, seasons, args.account))
    clikit.emit(result, args.json, [f"paid {_opg(result['paid'])} OPG to {result['account']} "
                                    f"(cumulative {_opg(result['cumulative'])}, tx {result['transaction']})"],
                indent=None)
    return 0
