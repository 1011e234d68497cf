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

Common flags: --rpc-url (OPG_RPC_URL, default http://127.0.0.1:8545), --deployment FILE, --key HEX (OPG_KEY) or
--dev-account N (anvil's keys, chain 31337 only), --json. Exit codes: 0 done, 1 refused or failed, 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from decimal import Decimal
from pathlib import Path

import requests
from pydantic import ValidationError

from ..daemon.serve import fail
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


def _parse_opg(text: str) -> int:
    try:
        value = Decimal(text) * 10**18
    except Exception:
        raise argparse.ArgumentTypeError(f"not an OPG amount: {text!r}") from None
    if value < 0 or value != value.to_integral_value():
        raise argparse.ArgumentTypeError(f"not an OPG amount: {text!r}")
    return int(value)


def _parser() -> argparse.ArgumentParser:
    def common(parser: argparse.ArgumentParser, suppress: bool) -> None:
        # the common flags go before or after the subcommand; after it they override
        def default(value):
            return argparse.SUPPRESS if suppress else value

        parser.add_argument("--rpc-url", default=default(os.environ.get("OPG_RPC_URL", "http://127.0.0.1:8545")))
        parser.add_argument("--deployment", default=default(os.environ.get("OPG_DEPLOYMENT")))
        parser.add_argument("--key", default=default(os.environ.get("OPG_KEY")),
                            help="private key (hex) sending transactions")
        parser.add_argument("--dev-account", type=int, default=default(None),
                            help="anvil development account N (chain 31337 only)")
        parser.add_argument("--json", action="store_true", default=default(False))

    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common(p, suppress=False)
    after = argparse.ArgumentParser(add_help=False)
    common(after, suppress=True)
    sub = p.add_subparsers(dest="command", required=True)
    add = sub.add_parser

    def add_parser(name: str) -> argparse.ArgumentParser:
        return add(name, parents=[after])

    sub.add_parser = add_parser  # type: ignore[method-assign]
    s = sub.add_parser("status")
    s.add_argument("--account")
    s = sub.add_parser("usage")
    s.add_argument("--config", type=Path, help="season parameters (default: closed seasons + the open one)")
    s.add_argument("--budget", type=_parse_opg, default=0, help="the open season's budget, OPG (for its rewards)")
    s = sub.add_parser("claim")
    s.add_argument("--account", help="the account paid (default: the key's)")
    s.add_argument("--table", type=Path, help="the season table (default: the claimable season's file)")
    s = sub.add_parser("deploy")
    s.add_argument("--root-delay", type=int, default=DEFAULT_ROOT_DELAY)
    s.add_argument("--expiry-seasons", type=int, default=DEFAULT_EXPIRY_SEASONS)
    s.add_argument("--min-season-length", type=int, default=None,
                   help="least seconds between accepted roots; earnings expire after K x this "
                        "(default 30 days; the root delay on the devnet)")
    s.add_argument("--governance-delay", type=int, default=DEFAULT_GOVERNANCE_DELAY,
                   help="timelock of a treasury change (default 7 days)")
    s.add_argument("--treasury")
    s = sub.add_parser("close")
    s.add_argument("--budget", type=_parse_opg, required=True, help="OPG the season pays at most")
    s.add_argument("--to-block", type=int)
    s.add_argument("--evidence-block", type=int)
    s.add_argument("--reward-bps", type=int, default=8_000, help="C: reward + emission <= C x protocol fee")
    s.add_argument("--cap-bps", type=int, default=500, help="per-address cap, share of the budget")
    s = sub.add_parser("build")
    s.add_argument("--config", type=Path)
    s = sub.add_parser("propose")
    s.add_argument("--table", type=Path)
    s.add_argument("--fund", action="store_true", help="transfer the OPG the root lacks from the key first")
    sub.add_parser("accept")
    return p


def _key(args: argparse.Namespace, seasons) -> str:
    if args.dev_account is not None:
        from ..daemon.keys import DEVNET_CHAIN_ID, anvil_key

        if seasons.deployment.chainId != DEVNET_CHAIN_ID:
            raise SeasonError("--dev-account only on the local chain 31337")
        return anvil_key(args.dev_account)
    if not args.key:
        raise SeasonError("no key: give --key (or OPG_KEY) or --dev-account N")
    return args.key


def _address(args: argparse.Namespace, seasons, explicit: str | None) -> str:
    if explicit:
        return explicit
    from eth_account import Account

    return Account.from_key(_key(args, seasons)).address


def _print_table(table: dict) -> None:
    print(f"season {table['season']}  root {table['root']}  hash {table_hash(table)}")
    print(f"{'account':<42} {'settled':>12} {'excluded':>12} {'fees':>10} {'emission':>10} {'reward':>10} "
          f"{'cumulative':>12}")
    for a in table["accounts"]:
        print(f"{a['account']:<42} {_opg(a['settled']):>12} {_opg(a['excluded']):>12} {_opg(a['fees']):>10} "
              f"{_opg(a['emission']):>10} {_opg(a['reward']):>10} {_opg(a['cumulative']):>12}")
    print(f"total reward {_opg(table['total_reward'])} OPG, cumulative {_opg(table['total_cumulative'])} OPG")


def run(args: argparse.Namespace) -> int:
    try:
        seasons = open_seasons(args.rpc_url, args.deployment)
    except (requests.exceptions.RequestException, OSError) as exc:
        raise SeasonError(f"cannot reach the chain at {args.rpc_url}: {exc.__class__.__name__}") from None
    chain_id, directory = seasons.deployment.chainId, seasons.directory
    cmd = args.command
    if cmd == "usage":
        config = load_config(args.config) if args.config else seasons.provisional_config(budget=args.budget)
        if config is None:
            raise SeasonError(f"no season parameters at {args.config}")
        table = seasons.table(config)
        if args.json:
            sys.stdout.buffer.write(table_bytes(table))
        else:
            _print_table(table)
        return 0
    if cmd == "close":
        config, path = seasons.close_season(args.budget, args.to_block, args.evidence_block,
                                            reward_bps=args.reward_bps, cap_bps=args.cap_bps)
        last = config.seasons[-1]
        if seasons.warning:
            print(f"{PROG}: warning: {seasons.warning}", file=sys.stderr)
        out = {"season": last.season, "from_block": last.from_block, "to_block": last.to_block,
               "evidence_block": last.evidence_block, "budget": last.budget, "config": str(path)}
        print(json.dumps(out) if args.json else f"season {last.season}: blocks {last.from_block}..{last.to_block}, "
              f"evidence to {last.evidence_block}, budget {_opg(last.budget)} OPG -> {path}")
        return 0
    if cmd == "build":
        table, path = seasons.build(load_config(args.config) if args.config else None)
        out = {"season": table["season"], "root": table["root"], "hash": table_hash(table),
               "total_cumulative": table["total_cumulative"], "table": str(path)}
        if args.json:
            print(json.dumps(out))
        else:
            _print_table(table)
            print(f"wrote {path} (keccak256 {out['hash']})")
        return 0
    if cmd == "deploy":
        address = seasons.deploy(_key(args, seasons), args.root_delay, args.expiry_seasons, args.treasury,
                                 args.min_season_length, args.governance_delay)
        print(json.dumps({"SeasonDistributor": address}) if args.json else f"SeasonDistributor {address}")
        return 0
    if cmd == "status":
        out = seasons.status() if seasons.deployed else {"distributor": None}
        if args.account:
            out["standing"] = seasons.standing(args.account)
        if args.json:
            print(json.dumps(out, indent=2, sort_keys=True, default=str))
            return 0
        if out.get("distributor"):
            print(f"distributor   {out['distributor']}  season {out['season']}  root {out['root']}")
            print(f"owed          {_opg(out['outstanding'])} OPG of {_opg(out['root_total'])}; held "
                  f"{_opg(out['held'])}; surplus {_opg(out['surplus'])}; expired {_opg(out['total_expired'])}")
            print(f"cadence       seasons >= {out['min_season_length']} s apart (next from {out['next_season_at']}); "
                  f"earnings expire {out['expiry_period']} s and {out['expiry_seasons']} seasons after theirs")
            if out["pending"]:
                p = out["pending"]
                print(f"pending       season {p['season']} root {p['root']} total {_opg(p['total'])} OPG, "
                      f"acceptable from {p['eta']}")
        else:
            print("distributor   not deployed (`opg season deploy`)")
        if args.account:
            st = out["standing"]
            o = st["open_season"]
            print(f"account       {st['account']}: S{o['season']} so far {_opg(o['usage'])} OPG of usage, "
                  f"{_opg(o['fees'])} OPG of eligible fees")
            if "claimable" in st:
                print(f"rewards       claimable {_opg(st['claimable'])} OPG, claimed {_opg(st['claimed'])} OPG")
        return 0
    key = _key(args, seasons)
    if cmd == "propose":
        path = args.table or table_path(chain_id, (seasons.config().seasons[-1].season if seasons.config() else 0),
                                        directory)
        result = seasons.propose(key, load_table(path), fund=args.fund)
        print(json.dumps(result) if args.json else f"proposed {path.name}: claimable from {result['eta']} "
              f"(tx {result['transaction']})")
        return 0
    if cmd == "accept":
        tx = seasons.accept(key)
        print(json.dumps({"transaction": tx}) if args.json else f"accepted (tx {tx})")
        return 0
    if cmd == "claim":
        season = seasons.contract.functions.season().call()
        path = args.table or table_path(chain_id, season, directory)
        if not path.exists():
            raise SeasonError(f"no table at {path}: get season {season}'s table from the operator (--table)")
        result = seasons.claim(key, load_table(path), _address(args, seasons, args.account))
        print(json.dumps(result) if args.json else f"paid {_opg(result['paid'])} OPG to {result['account']} "
              f"(cumulative {_opg(result['cumulative'])}, tx {result['transaction']})")
        return 0
    raise SeasonError(f"unknown command {cmd!r}")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        return run(args)
    except SeasonError as exc:
        return fail(PROG, str(exc), 1)
    except ValidationError as exc:
        return fail(PROG, "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()), 2)
    except (FileNotFoundError, ValueError) as exc:
        return fail(PROG, str(exc), 2)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the chain said no, or cannot be reached
        return fail(PROG, f"{exc.__class__.__name__}: {exc}", 1)
