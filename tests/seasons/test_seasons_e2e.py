"""A season end to end on a real anvil: real nodes (``opg node run``, builtin model) answer real chats paid by the
SDK, the real relayer settles them, a verifier quorum proves one node's receipt fraudulent (the relayer submits the
proof), and anyone proves the jailed node's next, unpaid receipt fraudulent (its charge is voided); then the
operator's ``opg season deploy|close|build|propose`` and a payer's ``opg season claim``, each a
fresh process. The usage of the slashed node counts zero (its refunded and voided charges too), a fresh process rebuilds the
table and root byte for byte from the chain's logs, and the claim pays exactly what the table says."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import ape
from eth_account import Account

from offchain.client import Payer, payment_http_client
from offchain.devkit.devchain import free_port, transact
from offchain.devkit.devnet import OPG, ChannelSim, DaemonProc, wait_until
from offchain.messages import Receipt, Verdict
from offchain.seasons.ops import Seasons, load_table, table_path
from offchain.seasons.standing import SeasonView
from offchain.seasons.usage import table_bytes, table_hash

BUDGET = 100 * OPG
ROOT_DELAY = 60


def opg_cli(devnet, *args: str, key: str | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "offchain.cli", "season", "--rpc-url", devnet.url, "--deployment",
           str(devnet.deployment_file), *(["--key", key] if key else []), *args]
    out = subprocess.run(cmd, capture_output=True, timeout=120)
    assert out.returncode == 0, out.stderr.decode()
    return out


def start_node(devnet, actor, relayer_url: str, folder: Path) -> DaemonProc:
    """``opg node run`` (builtin model) for a registered inference node, its endpoint set on chain."""
    keystore = folder / f"{actor.address}.json"
    keystore.write_text(json.dumps(Account.encrypt(actor.key, "node-pw", kdf="pbkdf2", iterations=2)))
    password = folder / f"{actor.address}.pw"
    password.write_text("node-pw\n")
    port = free_port()
    transact(devnet.w3, actor.key, devnet.staking.functions.set_endpoint(f"http://127.0.0.1:{port}"))
    return DaemonProc("node", ["node", "run", "--rpc-url", devnet.url, "--deployment", str(devnet.deployment_file),
                               "--relayer-url", relayer_url, "--store", str(folder / f"node.{port}.sqlite3"),
                               "--keystore", str(keystore), "--password-file", str(password), "--backend",
                               "builtin", "--max-tokens", "8", "--outbox-max-backoff", "0.5"],
                      folder, port=port).start()


def chat(payer: Payer, node_url: str, text: str) -> str:
    with payment_http_client(payer, base_url=node_url) as http:
        res = http.post("/v1/chat/completions", json={"model": "builtin", "max_tokens": 8,
                                                      "messages": [{"role": "user", "content": text}]})
    assert res.status_code == 200, res.text
    outcome = res.extensions["opg_payment"].outcome
    assert outcome.ok
    return outcome.receipt_id


@ape.fixture(scope="module", chain_isolation=False)
def season(devnet, relayer, tmp_path_factory):
    """Traffic, a fraud proof, the season closed and built: (payers, nodes, table, seasons view)."""
    verifiers = [devnet.new_verifier() for _ in range(3)]
    devnet.make_live(verifiers)
    honest, fraud = devnet.new_node(), devnet.new_node()
    folder = tmp_path_factory.mktemp("nodes")
    procs = [start_node(devnet, n, relayer.url, folder) for n in (honest, fraud)]
    try:
        p1, p2 = devnet.new_payer(deposit=50 * OPG), devnet.new_payer(deposit=50 * OPG)
        payers = {a.address: Payer.from_key(a.key, devnet.deployment_file, relayer_url=relayer.url,
                                            rpc_url=devnet.url, state=tmp_path_factory.mktemp("state"))
                  for a in (p1, p2)}
        ids = [chat(payers[p1.address], procs[0].url, f"honest question {i}") for i in range(3)]
        ids += [chat(payers[p1.address], procs[1].url, "question to the cheat")]
        cheated = [chat(payers[p2.address], procs[1].url, f"cheated question {i}") for i in range(2)]
        relayer.wait_receipts(ids + cheated, timeout=60)
        # a quorum of verifiers proves one of p2's receipts fraudulent; the relayer sends the proof
        receipt_hash = relayer.receipt_status(cheated[-1])["receiptHash"]
        for v in sorted(verifiers, key=lambda a: int(a.address, 16)):
            sig = Verdict(receipt_hash=receipt_hash, valid=False).sign_with(v.key, devnet.staking_domain)
            res = relayer.post("/verdicts", {"receiptHash": receipt_hash, "valid": False, "verifier": v.address,
                                             "signature": sig})
            assert res.status_code == 200, res.text
        wait_until(lambda: [s for s in relayer.get("/slashes").json()
                            if s["kind"] == "fraud" and s["status"] == "confirmed"], timeout=60, what="fraud slash")
        # the jailed node's next receipt to p1, never paid (the relayer refuses a jailed node's receipts), is proven
        # fraudulent by anyone with the quorum's verdicts: its charge is voided in the escrow
        ch = ChannelSim(devnet, p1, fraud)
        ch.cumulative = devnet.spent(p1, fraud)
        unpaid = ch.receipt(OPG)
        unpaid_hash = devnet.staking.functions.receipt_hash(Receipt(**unpaid.model_dump(exclude={"signature"}))
                                                            .as_tuple()).call()
        verdicts = [(v.address, bytes.fromhex(Verdict(receipt_hash="0x" + unpaid_hash.hex(), valid=False)
                                              .sign_with(v.key, devnet.staking_domain)[2:]))
                    for v in sorted(verifiers, key=lambda a: int(a.address, 16))]
        transact(devnet.w3, devnet.deployer, devnet.staking.functions.slash_fraud(
            Receipt(**unpaid.model_dump(exclude={"signature"})).as_tuple(), bytes.fromhex(unpaid.signature[2:]),
            verdicts), gas=5_000_000)  # anvil's estimate falls short since NodeStaking v3 (mined: reverted)
    finally:
        for proc in procs:
            proc.stop()
    # every epoch with settlements ends and is finalised (no emission funded: nothing to take off the rewards)
    distributor = devnet.system.distributor
    devnet.advance(devnet.params.epoch_length + 1)
    last = distributor.functions.epoch_now().call() - 1
    transact(devnet.w3, devnet.deployer, distributor.functions.finalize_epoch(last))

    # what the client's credit row says before the season closes (read incrementally: twice, no new logs between)
    view = SeasonView(devnet.w3, devnet.system.deployment, devnet.deployment_file)
    signals = [view.signal(p1.address), view.signal(p1.address)]
    opg_cli(devnet, "deploy", "--root-delay", str(ROOT_DELAY), "--expiry-seasons", "2", key=devnet.deployer)
    opg_cli(devnet, "close", "--budget", str(BUDGET // OPG), key=devnet.deployer)
    built = json.loads(opg_cli(devnet, "--json", "build").stdout)
    path = table_path(devnet.chain_id, 1, devnet.deployment_file.parent)
    assert built["table"] == str(path)
    return {"signals": signals, "p1": p1, "p2": p2, "honest": honest, "fraud": fraud, "table": load_table(path), "path": path,
            "built": built}


def row(table: dict, account) -> dict:
    return next(a for a in table["accounts"] if a["account"] == account.address)


def test_usage_of_a_node_slashed_for_fraud_and_voided_or_refunded_charges_count_zero(devnet, season):
    table = season["table"]
    p1, p2 = row(table, season["p1"]), row(table, season["p2"])
    escrow = devnet.escrow.functions
    honest_spent = escrow.spent(season["p1"].address, season["honest"].address).call()
    p1_fraud_spent = escrow.spent(season["p1"].address, season["fraud"].address).call()
    p2_fraud_spent = escrow.spent(season["p2"].address, season["fraud"].address).call()
    assert honest_spent > 0 and p1_fraud_spent > 0 and p2_fraud_spent > 0
    voids = devnet.escrow.events.ChargesVoided().get_logs(from_block=0)
    assert [(e.args.payer, e.args.node, e.args.amount) for e in voids] == [
        (season["p1"].address, season["fraud"].address, OPG)]
    p1_fraud_spent -= OPG  # spent counts the voided charge, which was never paid
    # p1: only its honest node's usage counts; the fraudulent node's settled charge is excluded
    assert int(p1["settled"]) == honest_spent + p1_fraud_spent
    assert int(p1["usage"]) == honest_spent and int(p1["excluded"]) == p1_fraud_spent
    # p2 used only the fraudulent node (one charge refunded by the slash): nothing counts, no reward
    assert int(p2["settled"]) == p2_fraud_spent and int(p2["usage"]) == 0 and int(p2["reward"]) == 0
    # weight = the protocol fee (rounded down), reward = C x weight (no emission funded, budget not binding)
    fee = honest_spent * devnet.params.protocol_fee_bps // 10_000
    assert int(p1["fees"]) in (fee, fee - 1) and int(p1["emission"]) == 0
    assert int(p1["reward"]) == int(p1["fees"]) * 8_000 // 10_000 > 0
    assert int(p1["cumulative"]) == int(p1["reward"])


def test_a_fresh_process_rebuilds_the_same_table_and_root(devnet, season):
    config = str(devnet.deployment_file.parent / f"{devnet.chain_id}.seasons.json")
    out = opg_cli(devnet, "--json", "usage", "--config", config)
    assert out.stdout == season["path"].read_bytes() == table_bytes(season["table"])
    assert season["built"]["hash"] == table_hash(season["table"])
    assert season["built"]["root"] == season["table"]["root"]
    # without parameters: the closed season plus the open one (nothing used since): cumulative amounts carry over
    open_table = json.loads(opg_cli(devnet, "--json", "usage").stdout)
    assert open_table["season"] == 2 and open_table["total_reward"] == "0"
    assert {a["account"]: a["cumulative"] for a in open_table["accounts"]} == {
        a["account"]: a["cumulative"] for a in season["table"]["accounts"]}


def test_propose_accept_claim_pays_exactly_the_table(devnet, season):
    p1 = season["p1"]
    amount = int(row(season["table"], p1)["cumulative"])
    view = Seasons(devnet.w3, devnet.system.deployment, devnet.deployment_file)
    # the deployment file on disk now names the distributor (the CLI wrote it)
    from offchain.deployments import load_deployment

    view.deployment = load_deployment(path=devnet.deployment_file)
    c = view.contract
    # unfunded: refused; --fund transfers what the root lacks
    out = subprocess.run([sys.executable, "-m", "offchain.cli", "season", "--rpc-url", devnet.url, "--deployment",
                          str(devnet.deployment_file), "--key", devnet.deployer, "propose"], capture_output=True)
    assert out.returncode == 1 and b"lacks" in out.stderr and len(out.stderr.decode().strip().splitlines()) == 1
    opg_cli(devnet, "propose", "--fund", key=devnet.deployer)
    assert c.functions.pending_root().call().hex() == season["table"]["root"][2:]
    # a claim against the pending root is refused; after the delay anyone (here p1 itself) accepts
    out = subprocess.run([sys.executable, "-m", "offchain.cli", "season", "--rpc-url", devnet.url, "--deployment",
                          str(devnet.deployment_file), "--key", p1.key, "claim"], capture_output=True)
    assert out.returncode == 1, out.stderr
    devnet.advance(ROOT_DELAY + 1)
    opg_cli(devnet, "accept", key=p1.key)
    before = devnet.opg.functions.balanceOf(p1.address).call()
    # the deployer claims for p1: paid to p1
    result = json.loads(opg_cli(devnet, "--json", "claim", "--account", p1.address, key=devnet.deployer).stdout)
    assert result["paid"] == amount
    assert devnet.opg.functions.balanceOf(p1.address).call() == before + amount
    again = json.loads(opg_cli(devnet, "--json", "claim", key=p1.key).stdout)
    assert again["paid"] == 0
    status = json.loads(opg_cli(devnet, "--json", "status", "--account", p1.address).stdout)
    assert status["standing"]["claimed"] == amount and status["standing"]["claimable"] == 0


def test_the_credit_row_signal_and_balance_lines(devnet, season):
    fees = int(row(season["table"], season["p1"])["fees"])
    text = f"{fees / 10**18:.6f}".rstrip("0").rstrip(".")
    assert season["signals"] == [f"counts toward S1: {text} OPG of eligible fees"] * 2
    from offchain.deployments import load_deployment

    view = SeasonView(devnet.w3, load_deployment(path=devnet.deployment_file), devnet.deployment_file)
    assert view.signal(season["p1"].address) == "counts toward S2: 0 OPG of eligible fees"  # season 1 is closed
    lines = view.balance_lines(season["p1"].address)
    assert lines[0].startswith("season       S2 so far: 0 OPG of usage") and lines[1].startswith("rewards ")


def test_opg_balance_shows_the_season_standing(devnet, season, tmp_path):
    out = subprocess.run([sys.executable, "-m", "offchain.cli", "balance", "--rpc-url", devnet.url, "--deployment",
                          str(devnet.deployment_file), "--payer", season["p1"].address, "--state-dir",
                          str(tmp_path)], capture_output=True, timeout=120, text=True)
    assert out.returncode == 0, out.stderr
    claimed = int(row(season["table"], season["p1"])["cumulative"]) / 10**18
    assert "season       S2 so far: 0 OPG of usage, 0 OPG of eligible fees" in out.stdout, out.stdout
    assert f"rewards      0 OPG claimable (`opg season claim`), {claimed:.6f}".rstrip("0").rstrip(".") in out.stdout
