"""POST /verify for both schemes (happy path and every invalidReason), and exact settlement on-chain."""

from __future__ import annotations

import secrets
import time

import pytest

from offchain.devkit.devchain import transact
from offchain.devkit.devnet import OPG, ChannelSim, item, new_key
from offchain.messages import SECP256K1_HALF_N, Domain, TransferWithAuthorization

N = 2 * SECP256K1_HALF_N + 1  # secp256k1 group order


def malleate(signature: str) -> str:
    sig = bytes.fromhex(signature[2:])
    s = N - int.from_bytes(sig[32:64], "big")
    return "0x" + (sig[:32] + s.to_bytes(32, "big") + bytes([55 - sig[64]])).hex()


# opg-credit ------------------------------------------------------------------------------------------------------
def credit_request(devnet, payer_addr, node_addr, cap, signature, price=OPG, **overrides):
    requirements = {"scheme": "opg-credit", "network": devnet.network, "asset": devnet.opg.address,
                    "amount": str(price), "payTo": node_addr, "maxTimeoutSeconds": 60,
                    "extra": {"escrow": devnet.escrow.address, "staking": devnet.staking.address}}
    requirements.update(overrides.pop("requirements", {}))
    accepted = {**requirements, **overrides.pop("accepted", {})}
    return {"x402Version": 2, "paymentRequirements": requirements, "paymentPayload": {
        "x402Version": 2, "accepted": accepted,
        "payload": {"voucher": {"payer": payer_addr, "node": node_addr, "maxCumulative": str(cap)},
                    "signature": signature}}}


@pytest.fixture(scope="module")
def actors(devnet):
    node, payer = devnet.new_node(), devnet.new_payer(20 * OPG)
    return node, payer


def test_verify_credit_valid(relayer, devnet, actors):
    node, payer = actors
    ch = ChannelSim(devnet, payer, node)
    v = ch.voucher(5 * OPG)
    res = relayer.post("/verify", credit_request(devnet, payer.address, node.address, 5 * OPG, v.signature))
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["isValid"] is True and body["invalidReason"] is None and body["payer"] == payer.address


@pytest.mark.parametrize("case", [
    "unsupported_scheme", "network_mismatch", "asset_mismatch", "escrow_mismatch", "recipient_mismatch",
    "invalid_signature", "invalid_signature_malleable", "node_not_active", "cap_exceeded",
    "insufficient_balance",
])
def test_verify_credit_invalid_reasons(relayer, devnet, actors, case):
    node, payer = actors
    ch = ChannelSim(devnet, payer, node)
    cap = 5 * OPG
    sig = ch.voucher(cap).signature
    kwargs: dict = {}
    payer_addr, node_addr, price = payer.address, node.address, OPG
    if case == "unsupported_scheme":
        kwargs["accepted"] = {"scheme": "exact"}
    elif case == "network_mismatch":
        kwargs["requirements"] = {"network": "eip155:1"}
    elif case == "asset_mismatch":
        kwargs["requirements"] = {"asset": devnet.escrow.address}
    elif case == "escrow_mismatch":
        kwargs["requirements"] = {"extra": {"escrow": devnet.staking.address}}
    elif case == "recipient_mismatch":
        kwargs["requirements"] = {"payTo": payer.address}
    elif case == "invalid_signature":
        sig = ChannelSim(devnet, payer, node).voucher(cap, key=new_key().key).signature
    elif case == "invalid_signature_malleable":
        sig = malleate(sig)
    elif case == "node_not_active":
        stranger = new_key()
        node_addr = stranger.address
        sig = ChannelSim(devnet, payer, stranger).voucher(cap).signature
        kwargs["requirements"] = {"payTo": stranger.address}
    elif case == "cap_exceeded":
        price = cap + 1
    elif case == "insufficient_balance":
        cap, price = 100 * OPG, 21 * OPG
        sig = ch.voucher(cap).signature
    res = relayer.post("/verify", credit_request(devnet, payer_addr, node_addr, cap, sig, price=price, **kwargs))
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["isValid"] is False
    assert body["invalidReason"] == case.replace("_malleable", ""), body
    if case == "invalid_signature_malleable":
        assert "malleable" in body["invalidMessage"]


def test_verify_counts_charged_and_reserves_accepted_caps(relayer, devnet):
    """The cap must cover what the relayer already charged; the payer's available credits must cover every accepted
    voucher's unpaid cap (cap - spent, over all its channels) plus this voucher's."""
    node, payer = devnet.new_node(), devnet.new_payer(10 * OPG)
    other_node = devnet.new_node()
    ch = ChannelSim(devnet, payer, node, price_cap=8 * OPG)
    res = relayer.post("/settle", ch.next(6 * OPG))  # accepted voucher cap 8: reserves 8 - spent
    assert res.status_code == 200
    v = ch.voucher(10 * OPG)
    body = relayer.post("/verify", credit_request(devnet, payer.address, node.address, 10 * OPG, v.signature,
                                                  price=5 * OPG)).json()
    assert body["invalidReason"] == "cap_exceeded"  # 6 charged + 5 > 10
    # Whether or not the first channel has settled yet: available - reserved = 10 - 8 = 4 - 2 = 2.
    other = ChannelSim(devnet, payer, other_node).voucher(3 * OPG)
    body = relayer.post("/verify", credit_request(devnet, payer.address, other_node.address, 3 * OPG,
                                                  other.signature, price=OPG)).json()
    assert body["invalidReason"] == "insufficient_balance", body
    other = ChannelSim(devnet, payer, other_node).voucher(2 * OPG)
    body = relayer.post("/verify", credit_request(devnet, payer.address, other_node.address, 2 * OPG,
                                                  other.signature, price=OPG)).json()
    assert body["isValid"] is True, body


def authorize(devnet, payer, session, expiry_in: int, allowance: int) -> int:
    expiry = devnet.chain_now() + expiry_in
    transact(devnet.w3, payer.key, devnet.escrow.functions.authorize_signer(session.address, expiry, allowance))
    return expiry


def test_session_signer_voucher_verified_on_chain(relayer, devnet):
    node, payer = devnet.new_node(), devnet.new_payer(10 * OPG)
    session = new_key()
    authorize(devnet, payer, session, 3 * devnet.params.thaw_period, 5 * OPG)
    ch = ChannelSim(devnet, payer, node)
    v = ch.voucher(5 * OPG, key=session.key)
    body = relayer.post("/verify", credit_request(devnet, payer.address, node.address, 5 * OPG, v.signature)).json()
    assert body["isValid"] is True, body
    receipt = ch.receipt(OPG, cumulative=OPG)
    res = relayer.post("/settle", {"receipt": receipt.model_dump(mode="json"), "voucher": v.model_dump(mode="json")})
    assert res.status_code == 200, res.text
    relayer.wait_receipts([res.json()["id"]])
    assert devnet.spent(payer, node) == OPG
    assert devnet.escrow.functions.signer_of(payer.address, session.address).call()[1] == 4 * OPG


def test_attack_session_key_expiring_within_thaw_is_refused(relayer, devnet):
    """A key about to expire (or be revoked) could leave the node's work unsettlable: refused at /verify."""
    node, payer = devnet.new_node(), devnet.new_payer(10 * OPG)
    session = new_key()
    authorize(devnet, payer, session, devnet.params.thaw_period + 5, 5 * OPG)
    devnet.advance(10)  # now less than a thaw period away
    v = ChannelSim(devnet, payer, node).voucher(5 * OPG, key=session.key)
    body = relayer.post("/verify", credit_request(devnet, payer.address, node.address, 5 * OPG, v.signature)).json()
    assert body["isValid"] is False and body["invalidReason"] == "session_key_expiring", body


def test_attack_unauthorized_key_voucher_is_refused(relayer, devnet):
    node, payer = devnet.new_node(), devnet.new_payer(10 * OPG)
    v = ChannelSim(devnet, payer, node).voucher(5 * OPG, key=new_key().key)
    body = relayer.post("/verify", credit_request(devnet, payer.address, node.address, 5 * OPG, v.signature)).json()
    assert body["isValid"] is False and body["invalidReason"] == "invalid_signature", body


def test_attack_session_key_allowance_overcommitted_across_channels_is_refused(relayer, devnet):
    """One key's allowance backs all its channels: a voucher beyond what its other accepted vouchers leave is
    refused, so two nodes cannot both serve against the same allowance."""
    a, b, payer = devnet.new_node(), devnet.new_node(), devnet.new_payer(100 * OPG)
    session = new_key()
    authorize(devnet, payer, session, 3 * devnet.params.thaw_period, 8 * OPG)
    ch_a = ChannelSim(devnet, payer, a)
    va = ch_a.voucher(6 * OPG, key=session.key)
    res = relayer.post("/settle", item(ch_a.receipt(OPG, cumulative=OPG), va))
    assert res.status_code == 200, res.text
    vb = ChannelSim(devnet, payer, b).voucher(5 * OPG, key=session.key)
    body = relayer.post("/verify", credit_request(devnet, payer.address, b.address, 5 * OPG, vb.signature,
                                                  price=OPG)).json()
    assert body["isValid"] is False and body["invalidReason"] == "allowance_exceeded", body
    vb = ChannelSim(devnet, payer, b).voucher(2 * OPG, key=session.key)
    body = relayer.post("/verify", credit_request(devnet, payer.address, b.address, 2 * OPG, vb.signature,
                                                  price=OPG)).json()
    assert body["isValid"] is True, body


def test_attack_withdrawal_request_credits_not_served(relayer, devnet):
    """Credits under a pending withdrawal request are not available to new requests (available_of)."""
    node, payer = devnet.new_node(), devnet.new_payer(10 * OPG)
    transact(devnet.w3, payer.key, devnet.escrow.functions.request_withdrawal(8 * OPG))
    v = ChannelSim(devnet, payer, node).voucher(5 * OPG)
    body = relayer.post("/verify", credit_request(devnet, payer.address, node.address, 5 * OPG, v.signature,
                                                  price=OPG)).json()
    assert body["isValid"] is False and body["invalidReason"] == "insufficient_balance", body
    v = ChannelSim(devnet, payer, node).voucher(2 * OPG)
    body = relayer.post("/verify", credit_request(devnet, payer.address, node.address, 2 * OPG, v.signature,
                                                  price=OPG)).json()
    assert body["isValid"] is True, body


# /verify caches (offchain.relayer.credit.VERIFY_CACHE_TTL): only to accept, never across a settlement it records
VERIFY_CACHE_TTL = 2.0


def verify_credit(relayer, devnet, payer, node, cap, price=OPG) -> dict:
    v = ChannelSim(devnet, payer, node).voucher(cap)
    res = relayer.post("/verify", credit_request(devnet, payer.address, node.address, cap, v.signature, price=price))
    assert res.status_code == 200, res.text
    return res.json()


def test_attack_withdrawal_request_after_cached_verify_reflected_within_ttl(relayer, devnet):
    """A withdrawal request right after a /verify (whose available_of /verify caches briefly) stops new service
    against the thawing credits within the cache TTL (plus the relayer's WithdrawalRequested reaction)."""
    node, payer = devnet.new_node(), devnet.new_payer(10 * OPG)
    assert verify_credit(relayer, devnet, payer, node, 5 * OPG)["isValid"] is True  # available_of 10 cached
    transact(devnet.w3, payer.key, devnet.escrow.functions.request_withdrawal(8 * OPG))
    requested = time.monotonic()
    while True:
        body = verify_credit(relayer, devnet, payer, node, 5 * OPG)
        if not body["isValid"]:
            break
        assert time.monotonic() - requested <= VERIFY_CACHE_TTL + 0.5, "withdrawal request not reflected in time"
        time.sleep(0.05)
    assert body["invalidReason"] == "insufficient_balance", body
    assert time.monotonic() - requested <= VERIFY_CACHE_TTL + 0.5


def test_attack_cached_balance_not_reused_across_own_settlement(relayer, devnet):
    """The relayer's own settlement lowers available_of and, once recorded, the reservation of the settled channel:
    a balance read before it must not be combined with the ledger after it (that would count the settled amount as
    both still available and no longer reserved)."""
    a, b, payer = devnet.new_node(), devnet.new_node(), devnet.new_payer(10 * OPG)
    ch = ChannelSim(devnet, payer, a, price_cap=6 * OPG)
    res = relayer.post("/settle", ch.next(6 * OPG))  # voucher cap 6, charged 6: reserves 6 until paid
    assert res.status_code == 200, res.text
    assert verify_credit(relayer, devnet, payer, b, 4 * OPG)["isValid"] is True  # 10 - 6 >= 4 (cached 10)
    relayer.wait_receipts([res.json()["id"]])  # paid: balance 4 on-chain, the ledger reserves nothing for a
    body = verify_credit(relayer, devnet, payer, b, 5 * OPG)
    assert body["isValid"] is False and body["invalidReason"] == "insufficient_balance", body
    assert verify_credit(relayer, devnet, payer, b, 4 * OPG)["isValid"] is True


def test_refusal_with_cached_values_is_read_again(relayer, devnet):
    """A deposit right after a cached /verify counts at once: refusals are always confirmed with fresh reads."""
    node, payer = devnet.new_node(), devnet.new_payer(10 * OPG, extra_opg=10 * OPG)
    assert verify_credit(relayer, devnet, payer, node, 5 * OPG)["isValid"] is True  # available_of 10 cached
    transact(devnet.w3, payer.key, devnet.opg.functions.approve(devnet.escrow.address, 10 * OPG))
    transact(devnet.w3, payer.key, devnet.escrow.functions.deposit(10 * OPG))
    body = verify_credit(relayer, devnet, payer, node, 15 * OPG)
    assert body["isValid"] is True and body["extra"]["balance"] == str(20 * OPG), body


# exact -----------------------------------------------------------------------------------------------------------
def authorization(devnet, payer, to, value, valid_after=None, valid_before=None, nonce=None, key=None,
                  chain_id=None):
    now = int(time.time())
    auth = {"from": payer.address, "to": to, "value": value,
            "validAfter": now - 60 if valid_after is None else valid_after,
            "validBefore": now + 600 if valid_before is None else valid_before,
            "nonce": nonce or "0x" + secrets.token_hex(32)}
    model = TransferWithAuthorization(owner=auth["from"], to=to, value=value, valid_after=auth["validAfter"],
                                      valid_before=auth["validBefore"], nonce=auth["nonce"])
    signature = model.sign_with(key or payer.key, Domain.token(chain_id or devnet.chain_id, devnet.opg.address))
    payload = {"authorization": {k: str(v) if isinstance(v, int) else v for k, v in auth.items()},
               "signature": signature}
    return payload


def exact_request(devnet, payload, pay_to, amount, **req_overrides):
    requirements = {"scheme": "exact", "network": devnet.network, "asset": devnet.opg.address, "amount": str(amount),
                    "payTo": pay_to, "maxTimeoutSeconds": 60, "extra": {"name": "OpenGradient", "version": "1"}}
    requirements.update(req_overrides)
    return {"x402Version": 2, "paymentRequirements": requirements,
            "paymentPayload": {"x402Version": 2, "accepted": requirements, "payload": payload}}


@pytest.fixture(scope="module")
def exact_payer(devnet):
    payer = new_key()
    devnet.fund(payer, 50 * OPG)
    return payer


def test_exact_verify_and_settle(relayer, devnet, exact_payer):
    merchant = new_key()
    payload = authorization(devnet, exact_payer, merchant.address, 3 * OPG)
    body = exact_request(devnet, payload, merchant.address, 3 * OPG)
    res = relayer.post("/verify", body)
    assert res.status_code == 200 and res.json()["isValid"] is True, res.text
    before = devnet.opg.functions.balanceOf(exact_payer.address).call()
    res = relayer.post("/settle", body)
    assert res.status_code == 200, res.text
    answer = res.json()
    assert answer["success"] is True and answer["network"] == devnet.network and answer["payer"] == exact_payer.address
    tx = devnet.w3.eth.get_transaction_receipt(answer["transaction"])
    assert tx["status"] == 1
    assert devnet.opg.functions.balanceOf(merchant.address).call() == 3 * OPG
    assert devnet.opg.functions.balanceOf(exact_payer.address).call() == before - 3 * OPG
    # The same authorisation again: the same transaction, no second transfer.
    again = relayer.post("/settle", body).json()
    assert again["success"] is True and again["transaction"] == answer["transaction"]
    assert devnet.opg.functions.balanceOf(merchant.address).call() == 3 * OPG
    # Verifying a used authorisation says so.
    assert relayer.post("/verify", body).json()["invalidReason"] == "invalid_exact_evm_nonce_already_used"


@pytest.mark.parametrize("case,reason", [
    ("recipient", "invalid_exact_evm_payload_recipient_mismatch"),
    ("value", "invalid_exact_evm_payload_authorization_value_mismatch"),
    ("expired", "invalid_exact_evm_payload_authorization_valid_before"),
    ("not_yet", "invalid_exact_evm_payload_authorization_valid_after"),
    ("signature", "invalid_exact_evm_payload_signature"),
    ("other_chain", "invalid_exact_evm_payload_signature"),
    ("malleable", "invalid_exact_evm_payload_signature"),
    ("balance", "invalid_exact_evm_insufficient_balance"),
    ("network", "network_mismatch"),
    ("asset", "asset_mismatch"),
    ("domain_name", "invalid_exact_evm_token_name_mismatch"),
])
def test_exact_invalid_reasons(relayer, devnet, exact_payer, case, reason):
    merchant = new_key()
    amount, pay_to, overrides = OPG, merchant.address, {}
    kw: dict = {}
    if case == "recipient":
        pay_to = new_key().address
    elif case == "value":
        amount = 2 * OPG
    elif case == "expired":
        kw["valid_before"] = int(time.time()) - 1
    elif case == "not_yet":
        kw["valid_after"] = int(time.time()) + 600
    elif case == "signature":
        kw["key"] = new_key().key
    elif case == "other_chain":
        kw["chain_id"] = 1
    elif case == "network":
        overrides["network"] = "eip155:1"
    elif case == "asset":
        overrides["asset"] = devnet.escrow.address
    elif case == "domain_name":
        overrides["extra"] = {"name": "USD Coin", "version": "1"}
    value = 10**30 if case == "balance" else OPG
    if case == "balance":
        amount = value
    payload = authorization(devnet, exact_payer, merchant.address, value, **kw)
    if case == "malleable":
        payload["signature"] = malleate(payload["signature"])
    res = relayer.post("/verify", exact_request(devnet, payload, pay_to, amount, **overrides))
    assert res.status_code == 200, res.text
    assert res.json()["isValid"] is False and res.json()["invalidReason"] == reason, res.json()
    settle = relayer.post("/settle", exact_request(devnet, payload, pay_to, amount, **overrides)).json()
    assert settle["success"] is False and settle["errorReason"] == reason and settle["transaction"] == ""
    assert devnet.opg.functions.balanceOf(merchant.address).call() == 0


def test_verify_rejects_malformed_requests(relayer, devnet):
    res = relayer.client.post("/verify", content=b"{not json", headers={"content-type": "application/json"})
    assert res.status_code == 400 and res.json()["error"] == "invalid_json"
    res = relayer.post("/verify", {"x402Version": 2})
    assert res.status_code == 400 and res.json()["field"] == "paymentPayload" and res.json()["reason"]
    body = credit_request(devnet, "0x1234", "0x" + "ab" * 20, 5, "0x" + "00" * 65)
    res = relayer.post("/verify", body)
    assert res.status_code == 400 and res.json()["field"] == "paymentPayload.payload.voucher.payer", res.text
    body = exact_request(devnet, {"authorization": {"from": "0x" + "ab" * 20}, "signature": "0x00"}, "0x" + "ab" * 20, 1)
    res = relayer.post("/verify", body)
    assert res.status_code == 400 and res.json()["field"].startswith("paymentPayload.payload.authorization.")
    body = credit_request(devnet, "0x" + "ab" * 20, "0x" + "ab" * 20, 5, "0x" + "00" * 65,
                          requirements={"scheme": "upto"})
    res = relayer.post("/verify", body)
    assert res.status_code == 400 and res.json()["error"] == "unsupported_scheme"
