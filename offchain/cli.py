"""``opg``: the command line of OPG Settlement.

Subcommands live next to the component they drive; this module only dispatches:
  opg relayer ...   the settlement relayer daemon (offchain/relayer/cli.py)
  opg abi           regenerate offchain/abi/*.json from contracts/
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    usage = "usage: opg {relayer,abi} ..."
    if not argv or argv[0] in {"-h", "--help"}:
        print(__doc__.strip())
        return 0
    command, rest = argv[0], argv[1:]
    try:
        if command == "relayer":
            from .relayer.cli import main as relayer_main

            return relayer_main(rest)
        if command == "abi":
            from .artifacts import export_abis

            for path in export_abis():
                print(path)
            return 0
    except KeyboardInterrupt:
        return 130
    print(f"opg: unknown command {command!r}; {usage}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
