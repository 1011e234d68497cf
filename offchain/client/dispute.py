"""``opg dispute RECEIPT_ID``: dispute an answer a node gave you.

  opg dispute 0x<receipt id> [--payload FILE] [--state-dir DIR] [--verifier URL ...] [--wait SECONDS] [--json]
      (--keystore payer.json [--password-file FILE] | --dev-account N) [--rpc-url URL] [--deployment FILE]

1. Reads what you asked and what you got: the request record the client stored when the node answered
   (``<state dir>/requests/<receipt id>.json``), or ``--payload FILE`` (JSON ``{receipt, request, output}``, optionally
   ``pricing``, ``usage``, ``finishReason``; a stored request record works too). It checks that the receipt is the
   node's and that your request and answer hash to it (otherwise no verifier would take the payload).
2. Posts the dispute bond on-chain: approves the receipt's ``amount`` of OPG to NodeStaking and calls
   ``staking.flag(receipt, signature)`` from your key (the receipt's payer). The bond comes back if fraud is proven,
   goes to the node if the verifiers prove the answer valid, and can be reclaimed after two dispute windows otherwise.
3. Hands your payload to every active verifier's registered endpoint (``POST /disputes``), or to the ``--verifier``
   URLs given: they re-execute your request and vote, so a node that withholds its payloads is judged anyway.
4. With ``--wait``, waits that long for the outcome on-chain (fraud proven / proven valid).

Settings also come from ``OPG_CLIENT_*`` environment variables (``OPG_CLIENT_RPC_URL``, ``OPG_CLIENT_DEPLOYMENT``,
``OPG_CLIENT_STATE_DIR``, ``OPG_CLIENT_KEYSTORE``, ``OPG_CLIENT_PASSWORD``, ``OPG_CLIENT_DEV_ACCOUNT``). Exit codes: 0 the
dispute is open and at least one verifier took the payload, 1 refused or failed, 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from pydantic import Field
from pydantic_settings import SettingsConfigDict
from web3.exceptions import ContractLogicError

from ..amounts import format_opg
from ..chain import Chain
from ..daemon.settings import ConfigError, DaemonSettings, load_settings
from ..inference import input_hash, output_hash
from ..messages import InvalidSignature, Receipt, SignedReceipt
from ..sdk.connect import connect
from ..sdk.constants import ROLE_VERIFIER
from ..sdk.contracts import NodeStaking
from ..sdk.tx import TxFailed, TxManager, revert_message
from ..sdk.wire import SignatureChecker, parse_receipt, receipt_json

PROG = "opg dispute"


class DisputeSettings(DaemonSettings):
    model_config = SettingsConfigDict(env_prefix="OPG_CLIENT_", extra="ignore", validate_default=True)

    state_dir: Path = Field(Path("~/.opg"), description="the client's state directory")


class DisputeError(Exception):
    """A refusal, printed as one line (exit 1)."""


def _receipt(data: Any) -> SignedReceipt:
    if not isinstance(data, dict):
        raise DisputeError("the payload has no signed receipt")
    try:
        return parse_receipt(data)
    except ValueError as exc:
        raise DisputeError(f"the receipt is malformed: {str(exc).splitlines()[0]}") from None


def load_payload(receipt_id: str, payload_file: Path | None, state_dir: Path) -> dict:
    """``{receipt, request, output, pricing?, usage?, finishReason?}`` from ``--payload`` or the stored request."""
    if payload_file is not None:
        try:
            record = json.loads(payload_file.expanduser().read_text())
        except OSError as exc:
            raise DisputeError(f"cannot read {payload_file}: {exc.strerror}") from None
        except ValueError:
            raise DisputeError(f"{payload_file} is not JSON") from None
    else:
        from .state import ClientState

        record = ClientState(state_dir).load_request(receipt_id)
        if record is None:
            raise DisputeError(f"no stored request for receipt {receipt_id} in {state_dir} (give --payload FILE)")
    if not isinstance(record, dict):
        raise DisputeError("the payload must be a JSON object")
    request = record.get("canonicalRequest") or record.get("request")
    output = record.get("output", record.get("answer"))
    if not isinstance(request, dict) or not isinstance(output, str):
        raise DisputeError("the payload lacks the request or the answer (the node's answer was not stored?)")
    out = {"receipt": record.get("receipt"), "request": request, "output": output}
    pricing = record.get("pricing") or ((record.get("quoteRequirement") or {}).get("extra") or {}).get("pricing")
    if isinstance(pricing, dict):
        out["pricing"] = pricing
    if isinstance(record.get("usage"), dict):
        out["usage"] = record["usage"]
    if record.get("finishReason") in ("stop", "length"):
        out["finishReason"] = record["finishReason"]
    th = record.get("tokensHash") or (record.get("payment") or {}).get("tokensHash")
    if isinstance(th, str):  # the node's token commitment inside outputHash (its payment response carried it)
        out["tokensHash"] = th
    return out


def check_payload(payload: dict, receipt: SignedReceipt, chain: Chain, receipt_id: str) -> None:
    plain = Receipt(**receipt.model_dump(exclude={"signature"}))
    checker = SignatureChecker(chain.staking_domain)
    if "0x" + checker.digest(plain).hex() != receipt_id.lower():
        raise DisputeError(f"the stored receipt is not receipt {receipt_id} of this deployment")
    try:
        signer = checker.signer(plain, receipt.signature)
    except InvalidSignature as exc:
        raise DisputeError(f"the receipt's signature is malformed: {exc}") from None
    if signer != receipt.node:
        raise DisputeError("the receipt is not signed by its node")
    if input_hash(payload["request"]) != receipt.input_hash:
        raise DisputeError("your request does not hash to the receipt's inputHash")
    try:
        committed = output_hash(payload["output"], payload.get("tokensHash"))
    except ValueError as exc:
        raise DisputeError(f"the payload's tokensHash is malformed: {exc}") from None
    if committed != receipt.output_hash:
        raise DisputeError("your answer does not hash to the receipt's outputHash")


def active_verifiers(chain: Chain) -> list[tuple[str, str]]:
    """(address, endpoint) of every registered verifier that is active now."""
    st = chain.staking
    seen: list[str] = []
    for ev in st.events.Registered().get_logs(from_block=chain.deployment.start_block):
        if ev["args"]["role"] == ROLE_VERIFIER and ev["args"]["node"] not in seen:
            seen.append(ev["args"]["node"])
    out = []
    for v in seen:
        if st.functions.is_active_as(v, ROLE_VERIFIER).call():
            out.append((v, st.functions.endpoint(v).call()))
    return out


def _send(chain: Chain, account: Any, fn: Any) -> str:
    fn.call({"from": account.address})
    try:
        receipt = TxManager(chain.w3, account, chain.chain_id).transact(fn, "dispute", timeout=120)
    except TxFailed as exc:
        raise DisputeError(f"transaction {exc.tx_hash} reverted" if exc.receipt is not None else str(exc)) from None
    return "0x" + bytes(receipt["transactionHash"]).hex()


def open_dispute(chain: Chain, account: Any, receipt: SignedReceipt) -> dict:
    """Approve the bond and ``flag`` the receipt from the payer (unless it is already disputed or judged)."""
    st, opg = chain.staking.functions, chain.opg.functions
    plain = Receipt(**receipt.model_dump(exclude={"signature"}))
    h = plain.struct_hash()
    if st.fraud_proven_at(h).call():
        return {"state": "fraud_proven", "bond": "0", "tx": None}
    if st.valid_proven_at(h).call():
        return {"state": "proven_valid", "bond": "0", "tx": None}
    existing = NodeStaking(chain.w3, chain.staking.address).dispute(h)
    if existing.bond > 0:
        return {"state": "already_disputed", "bond": str(existing.bond), "tx": None}
    bond = receipt.amount
    balance = opg.balanceOf(account.address).call()
    if balance < bond:
        raise DisputeError(f"the bond is {format_opg(bond)} OPG and your wallet holds {format_opg(balance)} OPG (the "
                           "bond is paid from the wallet, not from escrow credits)")
    staking = chain.staking.address
    if opg.allowance(account.address, staking).call() < bond:
        _send(chain, account, opg.approve(staking, bond))
    try:
        tx = _send(chain, account, st.flag(plain.as_tuple(), bytes.fromhex(receipt.signature[2:])))
    except ContractLogicError as exc:
        raise DisputeError(f"the contract refused the dispute: {revert_message(exc)}") from None
    return {"state": "opened", "bond": str(bond), "tx": tx}


def hand_over(payload: dict, receipt: SignedReceipt, verifiers: list[tuple[str, str]], timeout: float) -> list[dict]:
    body = {**payload, "receipt": receipt_json(receipt)}
    results = []
    with httpx.Client(timeout=timeout) as http:
        for address, endpoint in verifiers:
            url = endpoint.rstrip("/") + "/disputes"
            try:
                res = http.post(url, json=body)
                ok = res.status_code in (200, 202)
                detail = res.json() if res.headers.get("content-type", "").startswith("application/json") else {}
                results.append({"verifier": address, "url": url, "accepted": ok, "status": res.status_code,
                                "detail": detail if ok else detail.get("reason", res.text[:200])})
            except httpx.HTTPError as exc:
                results.append({"verifier": address, "url": url, "accepted": False, "status": None,
                                "detail": f"{exc.__class__.__name__}: {str(exc)[:200]}"})
    return results


def wait_outcome(chain: Chain, receipt: SignedReceipt, seconds: float) -> str:
    h = Receipt(**receipt.model_dump(exclude={"signature"})).struct_hash()
    deadline = time.monotonic() + seconds
    while True:
        if chain.staking.functions.fraud_proven_at(h).call():
            return "fraud_proven"
        if chain.staking.functions.valid_proven_at(h).call():
            return "proven_valid"
        if time.monotonic() >= deadline:
            return "pending"
        time.sleep(0.5)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Dispute an answer: post the bond, hand your prompt and "
                                                       "answer to the verifiers.")
    p.add_argument("receipt_id", metavar="RECEIPT_ID", help="the receipt id (0x + 64 hex) of the answer")
    p.add_argument("--payload", type=Path, help="JSON {receipt, request, output} instead of the stored request")
    p.add_argument("--state-dir", dest="state_dir", help="the client's state directory [env OPG_CLIENT_STATE_DIR]")
    p.add_argument("--verifier", action="append", default=[], metavar="URL",
                   help="send to this verifier URL (repeatable; default: every active verifier's endpoint)")
    p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS", help="wait this long for the outcome")
    p.add_argument("--timeout", type=float, default=30.0, help="HTTP timeout per verifier (s)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--rpc-url", dest="rpc_url", help="JSON-RPC endpoint [env OPG_CLIENT_RPC_URL]")
    p.add_argument("--deployment", help="deployment file [env OPG_CLIENT_DEPLOYMENT]")
    p.add_argument("--keystore", help="the payer's keystore [env OPG_CLIENT_KEYSTORE; password in OPG_CLIENT_PASSWORD]")
    p.add_argument("--password-file", dest="password_file", help="file holding the keystore password")
    p.add_argument("--dev-account", dest="dev_account", help="anvil development account (chain 31337 only)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    rid = args.receipt_id.lower()
    if not (rid.startswith("0x") and len(rid) == 66 and all(c in "0123456789abcdef" for c in rid[2:])):
        print(f"{PROG}: error: not a receipt id (0x + 64 hex digits): {args.receipt_id}", file=sys.stderr)
        return 2
    flags = {k: getattr(args, k) for k in ("rpc_url", "deployment", "keystore", "password_file", "dev_account",
                                           "state_dir")}
    try:
        settings = load_settings(DisputeSettings, flags)
        conn = connect(settings, timeout=30)
        chain, account = Chain(w3=conn.w3, deployment=conn.deployment), conn.account
    except ConfigError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        print(f"{PROG}: error: {str(exc).splitlines()[0] if str(exc) else exc!r}", file=sys.stderr)
        return 2
    try:
        payload = load_payload(rid, args.payload, settings.state_dir)
        receipt = _receipt(payload.pop("receipt"))
        check_payload(payload, receipt, chain, rid)
        if receipt.payer != account.address:
            raise DisputeError(f"only the receipt's payer {receipt.payer} can dispute it (this key is "
                               f"{account.address})")
        opened = open_dispute(chain, account, receipt)
        if opened["state"] in ("fraud_proven", "proven_valid"):
            verifiers, results = [], []
        else:
            verifiers = [(url, url) for url in args.verifier] or active_verifiers(chain)
            results = hand_over(payload, receipt, verifiers, args.timeout)
        outcome = wait_outcome(chain, receipt, args.wait) if args.wait > 0 else None
    except DisputeError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    accepted = sum(r["accepted"] for r in results)
    summary = {"receiptId": rid, "receiptHash": "0x" + Receipt(**receipt.model_dump(exclude={"signature"}))
               .struct_hash().hex(), "node": receipt.node, "dispute": opened, "verifiers": results,
               "accepted": accepted, "outcome": outcome or opened["state"]}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        state = {"opened": f"dispute opened, bond {format_opg(opened['bond'])} OPG posted ({opened['tx']})",
                 "already_disputed": "already disputed", "fraud_proven": "fraud already proven",
                 "proven_valid": "already proven valid"}[opened["state"]]
        print(f"receipt {rid} of node {receipt.node}: {state}")
        for r in results:
            print(f"  {'ok  ' if r['accepted'] else 'FAIL'} {r['url']}"
                  + ("" if r["accepted"] else f": {r['detail']}"))
        if outcome:
            print(f"outcome: {outcome}")
    if opened["state"] in ("fraud_proven", "proven_valid"):
        return 0
    if not results:
        print(f"{PROG}: error: no active verifier to hand the payload to", file=sys.stderr)
        return 1
    return 0 if accepted else 1
