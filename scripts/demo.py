"""The demo's main job, on a chain where ``ape run deploy`` has just deployed the system (see ``demo.sh``).

Roles (anvil's public development accounts, devnet only): 0 deployer and treasury, 1 inference node, 2 and 3
verifiers, 4 user (payer), 9 relayer. The user asks questions; for each it signs a cumulative voucher, the node
answers with a small deterministic model, signs a receipt and hands it to the relayer, and the user sees the credit
row. Then the relayer settles the batch on-chain, and a cheating node is slashed.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from eth_account import Account  # noqa: E402

from offchain.chain import Chain  # noqa: E402
from offchain.devchain import anvil_key, transact  # noqa: E402
from offchain.messages import Receipt, Registration, Voucher  # noqa: E402

OPG = 10**18
PRICE_PER_TOKEN = 10**15  # 0.001 OPG per output token
PRICE_CAP = 64 * PRICE_PER_TOKEN  # the most one answer may cost
MODEL_ID = "0x" + hashlib.sha256(b"opg-demo/echo-1").hexdigest()
QUESTIONS = [
    "What is a payment channel?",
    "Why settle in batches instead of per request?",
    "Who checks that the node really ran the model?",
    "What happens to a node that signs two different answers for one request?",
    "How much did all of this cost me?",
]


def h(data: str | bytes) -> str:
    return "0x" + hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def demo_model(prompt: str) -> str:
    """A deterministic stand-in for the node's model backend (verifiers can re-execute it exactly)."""
    words = prompt.rstrip("?").split()
    return "You asked about " + " ".join(reversed(words)).lower() + "; the answer is settled on-chain."


def fmt(amount: int) -> str:
    return f"{amount / OPG:,.4f} OPG"


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up within {timeout:.0f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rpc-url", required=True)
    parser.add_argument("--deployment", required=True)
    parser.add_argument("--relayer-port", type=int, default=8402)
    parser.add_argument("--state-dir", default="var/demo")
    parser.add_argument("--keep-running", choices=["auto", "yes", "no"], default="auto",
                        help="stay up until Ctrl-C (auto: only on an interactive terminal)")
    args = parser.parse_args()

    chain = Chain.connect(args.rpc_url, args.deployment)
    w3, params = chain.w3, chain.deployment.params
    treasury, node, verifier_a, verifier_b, user = (anvil_key(i) for i in (0, 1, 2, 3, 4))
    node_addr, user_addr = Account.from_key(node).address, Account.from_key(user).address

    print("== staking: one inference node, two verifiers")
    for key, role, stake, endpoint in (
        (node, 1, params.min_inference_stake * 2, "http://127.0.0.1:9000"),
        (verifier_a, 2, params.min_verifier_stake, "http://127.0.0.1:9100"),
        (verifier_b, 2, params.min_verifier_stake * 3, "http://127.0.0.1:9101"),
    ):
        address = Account.from_key(key).address
        transact(w3, treasury, chain.opg.functions.transfer(address, stake))
        transact(w3, key, chain.opg.functions.approve(chain.staking.address, stake))
        proof = Registration(account=address).sign_with(key, chain.staking_domain)  # proves it holds the key
        transact(w3, key, chain.staking.functions.register(role, stake, endpoint, bytes.fromhex(proof[2:])))
        print(f"   {['', 'inference', 'verifier'][role]:<9} {address} staked {fmt(stake)}")

    print("== the user buys 10 OPG of credits")
    transact(w3, treasury, chain.opg.functions.transfer(user_addr, 50 * OPG))
    transact(w3, user, chain.opg.functions.approve(chain.escrow.address, 10 * OPG))
    transact(w3, user, chain.escrow.functions.deposit(10 * OPG))
    print(f"   credits: {fmt(chain.balance_of(user_addr))}")

    state = Path(args.state_dir)
    store = state / "relayer.sqlite3"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{store}{suffix}").unlink(missing_ok=True)
    relayer_url = f"http://127.0.0.1:{args.relayer_port}"
    relayer = subprocess.Popen(
        [sys.executable, "-m", "offchain.cli", "relayer", "run", "--rpc-url", args.rpc_url,
         "--deployment", args.deployment, "--store", str(store), "--dev-account", "9",
         "--batch-size", "100", "--batch-age", "3", "--confirmations", "1",
         "--host", "127.0.0.1", "--port", str(args.relayer_port)],
        cwd=ROOT, stdout=open(state / "relayer.log", "w"), stderr=subprocess.STDOUT,
    )
    try:
        wait_http(f"{relayer_url}/healthz")
        print(f"== relayer up on {relayer_url} (OpenAPI at {relayer_url}/docs)")
        return run_chat(chain, relayer_url, node, user, node_addr, user_addr, args.keep_running)
    finally:
        relayer.send_signal(signal.SIGTERM)
        try:
            relayer.wait(timeout=10)
        except subprocess.TimeoutExpired:
            relayer.kill()


def run_chat(chain, relayer_url, node, user, node_addr, user_addr, keep_running) -> int:
    client = httpx.Client(base_url=relayer_url, timeout=30)
    charged = chain.spent(user_addr, node_addr)
    rows = []
    print("== chatting (each answer: voucher signed by the user, receipt signed by the node)")
    for i, question in enumerate(QUESTIONS, start=1):
        # The user authorises at most one more price cap on its channel with this node.
        voucher = Voucher(payer=user_addr, node=node_addr, max_cumulative=charged + PRICE_CAP)
        voucher_sig = voucher.sign_with(user, chain.escrow_domain)
        # The node runs the model and charges by output tokens.
        answer = demo_model(question)
        cost = min(len(answer.split()) * PRICE_PER_TOKEN, PRICE_CAP)
        charged += cost
        receipt = Receipt(
            request_id=h(f"{user_addr}:{i}:{time.time_ns()}"), payer=user_addr, node=node_addr,
            model_id=MODEL_ID, input_hash=h(question), output_hash=h(answer), amount=cost, cumulative=charged,
            timestamp=int(time.time()),
        )
        receipt_sig = receipt.sign_with(node, chain.staking_domain)
        item = {
            "receipt": {**receipt.model_dump(by_alias=True), "signature": receipt_sig},
            "voucher": {**voucher.model_dump(by_alias=True), "signature": voucher_sig},
        }
        answer_json = client.post("/settle", json={"receipts": [item]}).raise_for_status().json()
        result = answer_json["results"][0]
        if result.get("error"):
            print(f"   relayer refused the receipt: {result['field']}: {result['reason']}")
            return 1
        left = chain.available_of(user_addr) - (charged - chain.spent(user_addr, node_addr))
        rows.append((i, question, answer, cost, result["id"]))
        print(f"   Q{i}: {question}\n       {answer}\n       this answer cost {fmt(cost)} · "
              f"{fmt(left)} credits left · {result['status']}")

    print("== waiting for the relayer's batch to settle on-chain")
    deadline = time.monotonic() + 60
    views = {}
    while time.monotonic() < deadline:
        views = {rid: client.get(f"/receipts/{rid}").json() for *_, rid in rows}
        if all(v["status"] == "settled" for v in views.values()):
            break
        time.sleep(0.5)
    else:
        print("   not settled within 60 s: see the relayer log", file=sys.stderr)
        return 1
    for i, _q, _a, cost, rid in rows:
        v = views[rid]
        print(f"   answer {i}: {fmt(cost)} settled in batch #{v['batchId']} (tx {v['tx'][:18]}...)")
    print(f"   channel paid on-chain: {fmt(chain.spent(user_addr, node_addr))}; "
          f"credits left: {fmt(chain.balance_of(user_addr))}")
    d = chain.distributor.functions
    print(f"   node claimable {fmt(d.claimable_of(node_addr).call())} · treasury "
          f"{fmt(d.claimable_of(d.treasury().call()).call())} · verifiers "
          f"{fmt(sum(d.claimable_of(Account.from_key(anvil_key(k)).address).call() for k in (2, 3)))}")

    print("== a cheating node: two different receipts for one request")
    stake_before = chain.staking.functions.nodes(node_addr).call()[2]
    request_id = h("the contested request")
    for answer in ("honest answer", "a different, cheaper answer"):
        voucher = Voucher(payer=user_addr, node=node_addr, max_cumulative=charged + PRICE_CAP)
        receipt = Receipt(
            request_id=request_id, payer=user_addr, node=node_addr, model_id=MODEL_ID, input_hash=h("q"),
            output_hash=h(answer), amount=PRICE_PER_TOKEN, cumulative=charged + PRICE_PER_TOKEN,
            timestamp=int(time.time()),
        )
        item = {
            "receipt": {**receipt.model_dump(by_alias=True), "signature": receipt.sign_with(node, chain.staking_domain)},
            "voucher": {**voucher.model_dump(by_alias=True), "signature": voucher.sign_with(user, chain.escrow_domain)},
        }
        client.post("/settle", json={"receipts": [item]})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        slashes = [s for s in client.get("/slashes").json() if s["kind"] == "equivocation"]
        if slashes and slashes[0]["status"] == "confirmed":
            break
        time.sleep(0.5)
    else:
        print("   equivocation was not slashed within 60 s: see the relayer log", file=sys.stderr)
        return 1
    node_state = chain.staking.functions.nodes(node_addr).call()
    print(f"   relayer slashed the node in tx {slashes[0]['txHash'][:18]}...: stake {fmt(stake_before)} -> "
          f"{fmt(node_state[2])}, jailed={node_state[1]}")
    print("== demo complete")
    interactive = keep_running == "yes" or (keep_running == "auto" and sys.stdin.isatty())
    if interactive:
        print("   everything stays up: try `ape console --network ethereum:local:foundry` with "
              "APE_FOUNDRY_HOST=" + chain.w3.provider.endpoint_uri + "; Ctrl-C to stop")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
