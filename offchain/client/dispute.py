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

The command (its options, output and exit codes) is ``offchain.client.cli.dispute``; this module is what it does.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
from web3.exceptions import ContractLogicError

from ..amounts import format_opg
from ..chain import Chain
from ..inference import input_hash, output_hash
from ..messages import InvalidSignature, Receipt, SignedReceipt
from ..sdk.connect import connect
from ..sdk.constants import ROLE_VERIFIER
from ..sdk.contracts import NodeStaking
from ..sdk.tx import TxFailed, TxManager, revert_message
from ..sdk.wire import SignatureChecker, parse_receipt, receipt_json


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


def connect_payer(settings: Any) -> tuple[Chain, Any]:
    """The chain and the payer's key from client settings (``rpc_url``, ``deployment``, the key fields)."""
    conn = connect(settings, timeout=30)
    return Chain(w3=conn.w3, deployment=conn.deployment), conn.account


def dispute(chain: Chain, account: Any, receipt_id: str, payload_file: Path | None, state_dir: Path,
            verifier_urls: list[str], timeout: float, wait: float) -> dict:
    """Check the payload, open the dispute (bond), hand the payload to the verifiers and, with ``wait``, wait for the
    outcome: the summary ``{receiptId, receiptHash, node, dispute, verifiers, accepted, outcome}``. DisputeError
    for a refusal."""
    rid = receipt_id.lower()
    payload = load_payload(rid, payload_file, state_dir)
    receipt = _receipt(payload.pop("receipt"))
    check_payload(payload, receipt, chain, rid)
    if receipt.payer != account.address:
        raise DisputeError(f"only the receipt's payer {receipt.payer} can dispute it (this key is {account.address})")
    opened = open_dispute(chain, account, receipt)
    if opened["state"] in ("fraud_proven", "proven_valid"):
        results: list[dict] = []
    else:
        results = hand_over(payload, receipt, [(url, url) for url in verifier_urls] or active_verifiers(chain),
                            timeout)
    outcome = wait_outcome(chain, receipt, wait) if wait > 0 else None
    return {"receiptId": rid, "receiptHash": "0x" + Receipt(**receipt.model_dump(exclude={"signature"}))
            .struct_hash().hex(), "node": receipt.node, "dispute": opened, "verifiers": results,
            "accepted": sum(r["accepted"] for r in results), "outcome": outcome or opened["state"]}
