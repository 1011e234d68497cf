"""The verifier's decisions without a chain: sampling, the judging rules, payload and dispute checks, the store's
one-verdict rule, settings."""

from __future__ import annotations

import secrets

import pytest
from eth_account import Account

from offchain.backends import CheatingBackend, load_backend
from offchain.daemon.settings import ConfigError, load_settings
from offchain.inference import ChatMessage, Generation, GenParams, Pricing, canonical_request, input_hash, output_hash
from offchain.messages import Domain, Receipt, SignedReceipt
from offchain.sdk.wire import parse_receipt, receipt_json
from offchain.verifier.config import VerifierSettings
from offchain.verifier.judge import CannotJudge, judge
from offchain.verifier.payloads import base_url, dispute_problem
from offchain.verifier.sampling import Sampler, is_sampled, sampling_secret, threshold
from offchain.verifier.store import VerifierStore

DOMAIN = Domain.staking(31337, "0x" + "42" * 20)
PRICING = Pricing(base=1000, per_prompt_token=10, per_output_token=100)
BUILTIN = load_backend("builtin")


def rid() -> str:
    return "0x" + secrets.token_hex(32)


def served(prompt: str, backend=BUILTIN, max_tokens: int = 64, amount: int | None = None, node_key: str | None = None,
           output: str | None = None, truncate_to: int | None = None) -> tuple[SignedReceipt, dict]:
    """What a node serving ``prompt`` with ``backend`` would sign and release."""
    node = Account.from_key(node_key) if node_key else Account.create()
    messages = [ChatMessage(role="user", content=prompt)]
    params = GenParams(max_tokens=max_tokens)
    run = params.model_copy(update={"max_tokens": truncate_to}) if truncate_to else params
    gen = backend.generate(messages, run)
    text = gen.text if output is None else output
    request = canonical_request(backend.name, messages, params)
    cost = PRICING.cost(gen.prompt_tokens, gen.output_tokens)
    receipt = Receipt(request_id=rid(), payer=Account.create().address, node=node.address, model_id=backend.model_id,
                      input_hash=input_hash(request), output_hash=output_hash(text),
                      amount=cost if amount is None else amount, cumulative=10**18, timestamp=1_700_000_000)
    signed = SignedReceipt(**receipt.model_dump(), signature=receipt.sign_with(node.key, DOMAIN))
    payload = {"request": request, "output": text, "pricing": PRICING.wire(),
               "usage": {"promptTokens": gen.prompt_tokens, "outputTokens": gen.output_tokens},
               "finishReason": "length" if truncate_to else gen.finish_reason}
    return signed, payload


def bare(signed: SignedReceipt) -> Receipt:
    return Receipt(**signed.model_dump(exclude={"signature"}))


# Sampling ----------------------------------------------------------------------------------------------------------
def test_sampling_is_deterministic_per_key_and_receipt():
    key = Account.create().key
    ids = [rid() for _ in range(200)]
    first = [Sampler(key, 0.3)(i) for i in ids]
    assert first == [Sampler(bytes(key), 0.3)(i) for i in ids]  # a restarted verifier draws the same
    other = [Sampler(Account.create().key, 0.3)(i) for i in ids]
    assert first != other  # another verifier's draw is independent


def test_sampling_rate_bounds_and_frequency():
    secret = sampling_secret(Account.create().key)
    ids = [rid() for _ in range(4000)]
    assert all(is_sampled(secret, i, 1.0) for i in ids[:200])
    assert not any(is_sampled(secret, i, 0.0) for i in ids[:200])
    share = sum(is_sampled(secret, i, 0.25) for i in ids) / len(ids)
    assert 0.21 < share < 0.29
    assert threshold(0.5) == 2**255
    with pytest.raises(ValueError):
        threshold(1.5)


def test_sampling_secret_is_not_derivable_from_the_address():
    acct = Account.create()
    # The secret depends on the private key: nothing public (address, public key) yields it.
    assert sampling_secret(acct.key) != sampling_secret(bytes.fromhex(acct.address[2:]))
    assert len(sampling_secret(acct.key)) == 32


# Judging -----------------------------------------------------------------------------------------------------------
def test_honest_answer_is_valid():
    signed, payload = served("What is a settlement batch?")
    j = judge(bare(signed), payload, BUILTIN)
    assert j.valid and j.deterministic and j.expected_cost == signed.amount, j.reason


def test_wrong_answer_is_fraud():
    cheat = CheatingBackend(BUILTIN, 1.0)
    signed, payload = served("Name a colour.", backend=cheat)
    j = judge(bare(signed), payload, BUILTIN)
    assert not j.valid and "outputHash" in j.reason


def test_overcharge_is_fraud_and_undercharge_is_fine():
    signed, payload = served("Count to three.")
    cost = judge(bare(signed), payload, BUILTIN).expected_cost
    over, payload_over = served("Count to three.", amount=cost + 1)
    j = judge(bare(over), payload_over, BUILTIN)
    assert not j.valid and "exceeds the cost" in j.reason
    under, payload_under = served("Count to three.", amount=cost - 1)
    assert judge(bare(under), payload_under, BUILTIN).valid


def test_payload_that_is_not_the_receipts_is_invalid():
    signed, payload = served("Hello there")
    other = dict(payload, request=dict(payload["request"], model="another"))
    assert "inputHash" in judge(bare(signed), other, BUILTIN).reason
    swapped = dict(payload, output=payload["output"] + " extra")
    assert "outputHash" in judge(bare(signed), swapped, BUILTIN).reason
    assert not judge(bare(signed), {"output": payload["output"]}, BUILTIN).valid


def test_answer_cut_short_is_reproduced_from_its_token_count():
    signed, payload = served("Tell me a long story about proofs", max_tokens=64, truncate_to=3)
    assert payload["usage"]["outputTokens"] == 3
    assert judge(bare(signed), payload, BUILTIN).valid


def test_payers_cut_short_answer_without_usage_is_reproduced():
    signed, payload = served("Tell me a long story about proofs", max_tokens=64, truncate_to=5)
    payers = {"request": payload["request"], "output": payload["output"], "pricing": PRICING.wire()}
    j = judge(bare(signed), payers, BUILTIN)
    assert j.valid and j.rerun.output_tokens == 5, j.reason


def test_without_pricing_a_deterministic_receipt_is_judged_on_its_output():
    signed, payload = served("A question")
    payload.pop("pricing")
    assert judge(bare(signed), payload, BUILTIN).valid
    cheat, cheat_payload = served("A question", backend=CheatingBackend(BUILTIN, 1.0))
    cheat_payload.pop("pricing")
    assert not judge(bare(cheat), cheat_payload, BUILTIN).valid


class Wobbly:
    """A non-deterministic stand-in (like a proxy): other text each run, about as many tokens."""

    name = "gpu-proxy"
    descriptor = {"backend": "proxy", "upstream_model": "x", "deterministic": False}
    model_id = "0x" + "ab" * 32
    deterministic = False
    context_length = None

    def __init__(self, output_tokens: int = 10, finish: str = "stop"):
        self.output_tokens, self.finish = output_tokens, finish

    def count_prompt_tokens(self, messages):
        return 7

    def generate(self, messages, params, on_token=None):
        n = min(self.output_tokens, params.max_tokens)
        return Generation(text=secrets.token_hex(4), prompt_tokens=7, output_tokens=n,
                          finish_reason="length" if n == params.max_tokens else self.finish)


def test_non_deterministic_model_is_judged_on_the_amount_only():
    wobbly = Wobbly(output_tokens=10)
    signed, payload = served("Hi", backend=wobbly, max_tokens=100, amount=PRICING.cost(7, 12))
    payload["usage"]["outputTokens"] = 12  # the node's run was a little longer than the verifier's
    j = judge(bare(signed), payload, wobbly, tolerance=2.0)
    assert j.valid and not j.deterministic, j.reason  # other text, but 12 <= 2 x 10 tokens billed
    payload["usage"]["outputTokens"] = 11
    assert "own reported usage" in judge(bare(signed), payload, wobbly, tolerance=2.0).reason
    greedy, payload = served("Hi", backend=wobbly, max_tokens=100, amount=PRICING.cost(7, 21))
    assert not judge(bare(greedy), payload, wobbly, tolerance=2.0).valid
    capped = Wobbly(output_tokens=1000)  # the re-run hit max_tokens: anything up to the quote is fine
    full, payload = served("Hi", backend=capped, max_tokens=100, amount=PRICING.cap(7, 100))
    assert judge(bare(full), payload, capped).valid


def test_non_deterministic_model_without_pricing_cannot_be_judged():
    wobbly = Wobbly()
    signed, payload = served("Hi", backend=wobbly)
    payload.pop("pricing")
    with pytest.raises(CannotJudge):
        judge(bare(signed), payload, wobbly)


# Receipts and disputes ---------------------------------------------------------------------------------------------
def test_receipts_parse_from_camel_and_snake_case():
    signed, _ = served("x")
    assert parse_receipt(receipt_json(signed)) == signed
    assert parse_receipt(signed.model_dump(mode="json")) == signed
    assert receipt_json(signed)["amount"] == str(signed.amount)
    with pytest.raises(ValueError):
        parse_receipt({"requestId": "0x00"})


def test_dispute_payload_must_be_signed_by_the_node_and_hash_to_the_receipt():
    signed, payload = served("Dispute me")
    assert dispute_problem(signed, payload["request"], payload["output"], DOMAIN) is None
    assert "outputHash" in dispute_problem(signed, payload["request"], "other", DOMAIN)
    forged = SignedReceipt(**signed.model_dump(exclude={"signature"}),
                           signature=bare(signed).sign_with(Account.create().key, DOMAIN))
    assert "signed" in dispute_problem(forged, payload["request"], payload["output"], DOMAIN)
    other_domain = Domain.staking(1, "0x" + "42" * 20)
    replayed = SignedReceipt(**signed.model_dump(exclude={"signature"}),
                             signature=bare(signed).sign_with(Account.create().key, other_domain))
    assert dispute_problem(replayed, payload["request"], payload["output"], DOMAIN)


def test_registered_endpoint_becomes_the_base_url():
    assert base_url("http://n:8000/") == "http://n:8000"
    assert base_url("http://n:8000/v1") == "http://n:8000"
    assert base_url(" https://n.example/api ") == "https://n.example/api"


# Store and settings ------------------------------------------------------------------------------------------------
def test_a_receipt_gets_one_verdict_ever(tmp_path):
    store = VerifierStore(tmp_path / "v.sqlite3")
    store.bind(31337, DOMAIN.verifying_contract, Account.create().address)
    signed, _ = served("once")
    it = {"id": rid(), "receipt_hash": "0x" + bare(signed).struct_hash().hex(), "node": signed.node,
          "model_id": signed.model_id, "receipt": receipt_json(signed)}
    assert store.queue_check(it, "sample") and not store.queue_check(it, "flag")
    assert store.decide(it["id"], False, "fraud", "0x" + "11" * 65, 0.1, flag=True)
    assert not store.decide(it["id"], True, "changed my mind", "0x" + "22" * 65, 0.1, flag=False)
    assert not store.withheld(it["id"], "withheld: late", "0x" + "33" * 65)  # a decided check stays decided
    row = store.check(it["id"])
    assert row.valid == 0 and row.source == "sample" and row.flag_state == "pending"
    store.close()
    reopened = VerifierStore(tmp_path / "v.sqlite3")
    assert reopened.check(it["id"]).signature == "0x" + "11" * 65  # durable across restarts


def test_withheld_payload_is_a_report_not_a_verdict_and_a_payers_payload_reopens_it(tmp_path):
    store = VerifierStore(tmp_path / "v.sqlite3")
    store.bind(31337, DOMAIN.verifying_contract, Account.create().address)
    signed, payload = served("withheld")
    it = {"id": rid(), "receipt_hash": "0x" + bare(signed).struct_hash().hex(), "node": signed.node,
          "model_id": signed.model_id, "receipt": receipt_json(signed)}
    store.queue_check(it, "sample")
    assert store.withheld(it["id"], "withheld: no payload within 2 s", "0x" + "44" * 65)
    row = store.check(it["id"])
    assert row.status == "withheld" and row.valid is None and row.signature is None
    assert row.flag_state is None and row.report_signature == "0x" + "44" * 65
    [out] = store.unposted()  # only the report is to be sent, no verdict
    assert out.valid is None and out.withheld == 1 and out.reported == 0
    store.mark_reported(it["id"], 1)
    assert store.unposted() == []
    # The payer's dispute brings its own copy: the check is judged after all, on that payload.
    assert not store.queue_check(it, "dispute", payload={"request": payload["request"], "output": payload["output"]})
    row = store.check(it["id"])
    assert row.status == "queued" and row.payload is not None
    assert store.decide(it["id"], False, "fraud", "0x" + "55" * 65, 0.1, flag=False)
    assert store.check(it["id"]).withheld == 1


def test_store_is_bound_to_one_verifier(tmp_path):
    from offchain.storage import StoreMismatch

    store = VerifierStore(tmp_path / "v.sqlite3")
    store.bind(31337, DOMAIN.verifying_contract, "0x" + "01" * 20)
    with pytest.raises(StoreMismatch):
        store.bind(31337, DOMAIN.verifying_contract, "0x" + "02" * 20)


def test_settings_from_env_and_flags(monkeypatch):
    monkeypatch.setenv("OPG_VERIFIER_SAMPLE_RATE", "0.5")
    monkeypatch.setenv("OPG_VERIFIER_BACKENDS", " builtin , smollm2 ")
    s = load_settings(VerifierSettings, {"payload_deadline": "3"}, section="verifier")
    assert s.sample_rate == 0.5 and s.backend_specs == ["builtin", "smollm2"] and s.payload_deadline == 3
    assert s.port == 8404 and s.heartbeat and s.flag_fraud and "lazy" not in VerifierSettings.model_fields
    with pytest.raises(ConfigError, match="sample_rate"):
        load_settings(VerifierSettings, {"sample_rate": "2"})
    with pytest.raises(ConfigError, match="relayer_url"):
        load_settings(VerifierSettings, {"relayer_url": "ftp://x"})


def test_cli_refuses_bad_configuration_with_one_line(capsys):
    from offchain.cli import main

    assert main(["verifier", "run", "--sample-rate", "7"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("opg verifier: error: invalid setting sample_rate")


def test_verifier_backends_take_options_as_the_nodes_do():
    from offchain.verifier.service import load_backends

    fast, = load_backends(["builtin?name=fast&context_length=64"])
    assert (fast.name, fast.context_length) == ("fast", 64)
    with pytest.raises(ConfigError, match=r"^cannot load backend 'builtin\?colour=red': .*colour"):
        load_backends(["builtin?colour=red"])


def test_verifier_backends_refuse_a_test_nodes_cheat_options():
    from offchain.verifier.service import load_backends

    with pytest.raises(ConfigError, match=r"^cannot load backend 'builtin\?cheat_rate=1': cheat_rate is a test node's "
                                          r"option, not a verifier's$"):
        load_backends(["builtin?cheat_rate=1"])
