"""Issue 16's CLI edges, in-process (``offchain.cli.main`` with captured output) against the shared devnet: usage
errors exit 2 with one line, an unknown model is refused with the node's list, ``/quit`` exits 0, Ctrl-C during a
streamed answer still prints the cost row, "credits left" never goes up without a deposit, refusals speak OPG."""

from __future__ import annotations

import io
import json
import re
import sys

import pytest
from eth_account import Account

from offchain.chain import Chain
from offchain.daemon.keys import anvil_key
from offchain.devkit.devchain import send, transact

OPG = 10**18


def new_payer(devnet, tmp_path, opg: int = 0, credits: int = 0) -> list[str]:
    """A fresh payer with ETH, ``opg`` OPG in its wallet and ``credits`` deposited: its keystore flags."""
    c = Chain.connect(devnet.rpc_url, devnet.deployment)
    acct = Account.create()
    send(c.w3, anvil_key(0), {"to": acct.address, "value": 10**18, "gas": 21_000})
    if opg + credits:
        transact(c.w3, anvil_key(0), c.opg.functions.transfer(acct.address, opg + credits))
    if credits:
        key = "0x" + bytes(acct.key).hex()
        transact(c.w3, key, c.opg.functions.approve(c.escrow.address, credits))
        transact(c.w3, key, c.escrow.functions.deposit(credits))
    (tmp_path / "pw").write_text("pw")
    (tmp_path / "key.json").write_text(json.dumps(Account.encrypt(acct.key, "pw")))
    return ["--keystore", str(tmp_path / "key.json"), "--password-file", str(tmp_path / "pw")]


def no_wei(line: str) -> bool:
    """No integer of wei (10+ digits) outside addresses and hashes."""
    return not re.search(r"\d{10,}", re.sub(r"0x[0-9a-fA-F]+", "", line))


def one_line_error(err: str, prog: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith(f"{prog}: error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_usage_errors_exit_2_with_one_line(devnet, cli, tmp_path):
    key = new_payer(devnet, tmp_path, opg=2 * OPG)
    code, _, err = cli("deposit", "0", *key)
    assert code == 2 and "more than 0 OPG" in one_line_error(err, "opg deposit")
    code, _, err = cli("chat", "", *key)
    assert code == 2 and "prompt is empty" in one_line_error(err, "opg chat")
    code, _, err = cli("chat", "hi", "--max-tokens", "-3", *key)
    assert code == 2 and "--max-tokens" in one_line_error(err, "opg chat")
    code, _, err = cli("chat", "hi", "--max-price", "abc", *key)
    assert code == 2 and err.count("not an OPG amount") == 1
    code, _, err = cli("session", "--allowance", "1", "--expiry", "90", *key)
    assert code == 2 and "twice the thaw period" in one_line_error(err, "opg session")
    code, _, err = cli("withdraw", "0", *key)
    assert code == 2


def test_refusals_speak_opg_and_say_what_to_do(devnet, cli, tmp_path):
    key = new_payer(devnet, tmp_path, opg=2 * OPG)
    code, _, err = cli("deposit", "5", *key)
    line = one_line_error(err, "opg deposit")
    assert code == 1 and "holds 2 OPG in its wallet, less than the 5 OPG to deposit" in line
    assert no_wei(line), line
    code, _, err = cli("chat", "hi", "--no-stream", *key)  # no credits
    line = one_line_error(err, "opg chat")
    assert code == 1 and "insufficient_balance" in line and "opg deposit" in line
    assert no_wei(line), line


def test_unknown_model_is_refused_with_the_nodes_list(devnet, cli, tmp_path, monkeypatch):
    key = new_payer(devnet, tmp_path, credits=2 * OPG)
    code, _, err = cli("chat", "hi", "--model", "gpt-4", *key)
    assert code == 2 and "does not serve 'gpt-4'; it serves: builtin" in one_line_error(err, "opg chat")
    monkeypatch.setattr(sys, "stdin", io.StringIO("/model gpt-4\n/model\nhi\n/quit\n"))
    code, out, err = cli("chat", "--max-tokens", "5", *key)
    assert code == 0, err
    assert "does not serve 'gpt-4'; it serves: builtin" in err
    assert "* builtin" in out  # the model did not change
    assert "this answer cost" in out  # and the next turn is answered


def test_repl_quit_exits_0_after_a_failed_turn(devnet, cli, tmp_path, monkeypatch):
    key = new_payer(devnet, tmp_path)  # no credits: the turn is refused
    monkeypatch.setattr(sys, "stdin", io.StringIO("hi\n/quit\n"))
    code, _, err = cli("chat", "--max-tokens", "5", *key)
    assert "insufficient_balance" in err and "opg deposit" in err
    assert code == 0


class CutAfter(io.StringIO):
    """A terminal where the person presses Ctrl-C after ``n`` streamed pieces."""

    def __init__(self, n: int):
        super().__init__()
        self.n = n

    def write(self, text: str) -> int:
        if self.n == 0:
            self.n = -1  # once
            raise KeyboardInterrupt
        self.n -= 1
        return super().write(text)


@pytest.mark.parametrize("mode", ["one-shot", "interactive"])
def test_ctrl_c_during_a_streamed_answer_prints_its_row(devnet, cli, tmp_path, monkeypatch, mode):
    key = new_payer(devnet, tmp_path, credits=2 * OPG)
    from offchain.cli import main
    from offchain.client import cli as client_cli  # its chat rows are printed by this module

    term = CutAfter(3)
    printed: list[str] = []
    monkeypatch.setattr(client_cli, "print", lambda *a, **k: printed.append(" ".join(map(str, a))), raising=False)
    monkeypatch.setattr(sys, "stdout", term)
    if mode == "one-shot":
        code = main(["chat", "Tell me a long story", "--max-tokens", "60", *key])
        assert code == 130
    else:
        monkeypatch.setattr(sys, "stdin", io.StringIO("Tell me a long story\n/quit\n"))
        code = main(["chat", "--max-tokens", "60", *key])
        assert code == 0
    rows = [p for p in printed if "cut short" in p]
    assert len(rows) == 1, printed
    assert "OPG credits left" in rows[0]


def test_credits_left_never_goes_up_without_a_deposit(devnet, cli, tmp_path, monkeypatch):
    key = new_payer(devnet, tmp_path, credits=3 * OPG)
    monkeypatch.setattr(sys, "stdin", io.StringIO("one\ntwo\nthree\nfour\n/quit\n"))
    code, out, err = cli("chat", "--max-tokens", "8", *key)
    assert code == 0, err
    rows = re.findall(r"^this answer cost (\d+\.\d+) OPG · (\d+(?:\.\d+)?) OPG credits left · ", out, re.M)
    assert len(rows) == 4, out
    left = [float(r[1]) for r in rows]
    assert left == sorted(left, reverse=True), left
    assert all(float(r[0]) > 0 for r in rows)
    code, out, _ = cli("balance", *key)
    charged, settled = re.search(r"charged (\d+(?:\.\d+)?) OPG, of which (\d+(?:\.\d+)?) OPG settled", out).groups()
    assert float(settled) <= float(charged)
