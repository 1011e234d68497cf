"""``opg verifier run``: a verifier daemon (options generated from :class:`VerifierSettings`)."""

from __future__ import annotations

from .. import clikit
from .config import VerifierSettings

PROG = "opg verifier"

EPILOG = """\
Settings come from flags, then OPG_VERIFIER_* environment variables, then the config file (TOML or JSON, keys under
[verifier] or at top level), then defaults. The keystore password is read from OPG_VERIFIER_PASSWORD or
--password-file, never from a flag. The verifier must be registered (role 2) with its public URL as endpoint (payers
send disputes there): `opg operator register --role verifier ...`.

examples:
  # a devnet verifier on anvil's account 5, re-executing every receipt with the builtin model
  opg verifier run --rpc-url http://127.0.0.1:8545 --relayer-url http://127.0.0.1:8402 --dev-account 5 \\
      --sample-rate 1 --port 8404

  # a real verifier: keystore key, two backends, a tenth of the receipts
  OPG_VERIFIER_PASSWORD=... opg verifier run --rpc-url https://rpc.example --deployment deployments/8453.json \\
      --keystore verifier.json --backends builtin,smollm2 --sample-rate 0.1 --store /var/lib/opg/verifier.sqlite3
"""


@clikit.group("verifier", help="A verifier: re-executes sampled receipts, signs verdicts, flags fraud.")
def verifier() -> None:
    pass


@verifier.command("run", help="Follow the relayer's receipts and the chain's flags, re-execute, sign verdicts.",
                  epilog=EPILOG)
@clikit.settings_options(VerifierSettings, section="verifier", prog=PROG)
def run(settings: VerifierSettings) -> int:
    from ..daemon.serve import serve
    from .api import create_app
    from .service import Verifier

    daemon = clikit.start_daemon(PROG, Verifier, settings)
    banner = (f"{PROG}: {daemon.address} on chain {daemon.chain_id}, sampling {settings.sample_rate:g}, "
              f"listening on http://{settings.host}:{settings.port}")
    return serve(create_app(daemon), settings.host, settings.port, settings.log_level, banner)
