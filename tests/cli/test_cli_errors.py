"""Bad input, in-process: every refusal is one line on stderr (``<command>: error: <why>``), nothing on stdout, and
the exit code of ``offchain.clikit``'s table (2 for usage and configuration). None of these reach a chain."""

from __future__ import annotations

import json

import pytest
from cli_kit import opg, run

NO_CHAIN = ["--rpc-url", "http://127.0.0.1:9"]  # nothing listens there; every case fails before using it


@pytest.mark.parametrize("argv, prog, message", [
    (["nope"], "opg", "No such command 'nope'"),
    (["node", "run", "--bogus"], "opg node run", "No such option: --bogus"),
    (["node", "run", *NO_CHAIN, "--port", "abc"], "opg node", "invalid setting port"),
    (["node", "run", *NO_CHAIN, "--relayer-url", "relayer:8402"], "opg node", "invalid setting relayer_url"),
    (["node", "run", *NO_CHAIN, "--dev-account", "1", "--backend", "gpt-5"], "opg node", "unknown backend spec"),
    (["node", "settle", *NO_CHAIN, "--price-base", "-1"], "opg node", "invalid setting price_base"),
    (["relayer", "run", "--rpc-url", "ftp://x"], "opg relayer", "invalid setting rpc_url"),
    (["relayer", "run", *NO_CHAIN, "--batch-size", "0"], "opg relayer", "invalid setting batch_size"),
    (["verifier", "run", "--sample-rate", "7"], "opg verifier", "invalid setting sample_rate"),
    (["verifier", "run", "--log-level", "loud"], "opg verifier", "invalid setting log_level"),
    (["deposit"], "opg deposit", "Missing argument 'AMOUNT'"),
    (["deposit", "1", "--rpc-url", "ftp://x"], "opg deposit", "invalid setting rpc_url"),
    (["chat", "hi", "--max-tokens", "0"], "opg chat", "Invalid value for '--max-tokens'"),
    (["balance", "--dev-account", "-1"], "opg balance", "invalid setting dev_account"),
    (["operator", "register", "--role", "admin", "--stake", "1", "--endpoint", "http://x"], "opg operator register",
     "Invalid value for '--role': invalid choice: 'admin' (choose from inference, verifier)"),
    (["operator", "stake", "1x", *NO_CHAIN, "--dev-account", "1"], "opg operator stake", "is not a number of OPG"),
    (["operator", "stake", "-3", *NO_CHAIN, "--dev-account", "1"], "opg operator stake", "positive number of OPG"),
    (["deposit", "-3", *NO_CHAIN], "opg deposit", "-3"),
    (["season", "close", "--budget", "x"], "opg season close", "not an OPG amount: 'x'"),
    (["dispute", "0x1234"], "opg dispute", "not a receipt id (0x + 64 hex digits): 0x1234"),
    (["dispute", "0x" + "ab" * 32, "--dev-account", "x"], "opg dispute", "invalid setting dev_account"),
    (["web"], "opg web", "give exactly one of --dev-account N, --keystore FILE or --payer ADDRESS"),
])
def test_bad_input_is_one_line_and_exit_2(argv, prog, message):
    ran = opg(*argv)
    assert ran.code == 2, (ran.code, ran.err)
    assert message in ran.error_line(prog)
    assert ran.out == ""


def test_a_missing_or_bad_config_file_is_one_line(tmp_path):
    ran = opg("relayer", "run", "--config", str(tmp_path / "missing.toml"))
    assert ran.code == 2 and "does not exist" in ran.error_line("opg relayer")
    bad = tmp_path / "node.toml"
    bad.write_text("[node]\ncolour = 'blue'\n")
    ran = opg("node", "run", "--config", str(bad))
    assert ran.code == 2 and "unknown setting 'colour'" in ran.error_line("opg node")
    bad.write_text("colour = 'blue'\n")  # keys at top level
    ran = opg("verifier", "run", env={"OPG_VERIFIER_CONFIG": str(bad)})  # the config file from the environment
    assert ran.code == 2 and "unknown setting 'colour'" in ran.error_line("opg verifier")


def test_an_unreachable_chain_is_one_line_and_exit_1():
    ran = opg("season", *NO_CHAIN, "status")
    assert ran.code == 1 and "cannot reach the chain at http://127.0.0.1:9" in ran.error_line("opg season status")
    ran = opg("web", "--dev-account", "4", *NO_CHAIN)
    assert ran.code == 1 and "no chain at http://127.0.0.1:9" in ran.error_line("opg web")


def test_a_refusal_with_json_is_also_a_json_object_on_stdout():
    ran = opg("operator", "stake", "1x", *NO_CHAIN, "--dev-account", "1", "--json")
    assert ran.code == 2
    assert json.loads(ran.out) == {"ok": False, "error": ran.error_line("opg operator stake").split(": error: ")[1]}


def test_the_backends_module_refuses_in_one_line():
    from offchain.backends.__main__ import backends

    ran = run(backends, "python -m offchain.backends", "describe", "gpt-9")
    assert ran.code == 1 and "unknown backend spec 'gpt-9'" in ran.error_line("python -m offchain.backends")
    ran = run(backends, "python -m offchain.backends", "generate", "builtin")
    assert ran.code == 2 and "Missing option '--prompt'" in ran.error_line("python -m offchain.backends generate")


def test_test_switches_are_not_production_options():
    """The cheating node, the lazy verifier and the relayer's crash fault are injected by tests and the demo
    (backend option, the tests' lazy judge, a relayer plug-in), never options of the shipped daemons."""
    for argv, option in ((["node", "run", "--cheat-rate", "1"], "--cheat-rate"),
                         (["node", "run", "--cheat-seed", "1"], "--cheat-seed"),
                         (["verifier", "run", "--lazy"], "--lazy"),
                         (["relayer", "run", "--fault-exit-after-sent"], "--fault-exit-after-sent")):
        ran = opg(*argv)
        assert ran.code == 2 and f"No such option: {option}" in ran.err
