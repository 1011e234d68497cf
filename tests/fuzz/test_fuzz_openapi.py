"""Every daemon (relayer, inference node, verifier) fuzzed from its own OpenAPI document with schemathesis:
schema-valid and schema-violating requests to every operation, and every undeclared method. Each answer is checked:
never a 5xx, the status code documented, the content type and body as documented, schema-violating input refused,
405 with ``Allow`` for an undeclared method. Nothing a refused request sent may change what a daemon stores.

Bounded: ``FUZZ_EXAMPLES`` examples per operation and mode (default 25; ``OPG_FUZZ_EXAMPLES`` raises it), a fixed
seed per run (``OPG_FUZZ_SEED``, default 19) so a failure reproduces.

Not enabled, and why:
- ``positive_data_acceptance``: a schema-valid payment, receipt or verdict still needs a real signature by a funded,
  registered key, which random data never has; such requests must be refused (400), and are.
- ``max_response_time``: ``GET /feed/receipts?wait=`` long-polls by design (up to 30 s).
- ``ignored_auth``: the APIs use signatures in the body, not security schemes.
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from fuzz_kit import snapshot
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import checks as st_checks
from schemathesis.generation import GenerationMode

FUZZ_EXAMPLES = int(os.environ.get("OPG_FUZZ_EXAMPLES", "25"))
FUZZ_SEED = int(os.environ.get("OPG_FUZZ_SEED", "19"))
CHECKS = [
    st_checks.not_a_server_error,
    st_checks.status_code_conformance,
    st_checks.content_type_conformance,
    st_checks.response_schema_conformance,
    st_checks.response_headers_conformance,
    st_checks.negative_data_rejection,
    st_checks.missing_required_header,
    st_checks.use_after_free,
    st_checks.ensure_resource_availability,
]
# Operations whose success changes state by design (a well-formed challenge request mints a nonce, /verify with a
# valid payload reads the chain): their stores are compared only for what a refusal may not touch.
SKIP = {("relayer", "GET", "/metrics"), ("node", "GET", "/metrics"), ("verifier", "GET", "/metrics")}


def operations(system, name):
    proc = system.daemons[name]
    schema = schemathesis.openapi.from_url(f"{proc.url}/openapi.json")
    for result in schema.get_all_operations():
        op = result.ok()
        if (name, op.method.upper(), op.path) in SKIP:
            continue
        yield op


def fuzz_operation(proc, op, mode: GenerationMode) -> None:
    params = {p.name for p in op.query} if hasattr(op, "query") else set()
    # the long poll's wait (up to 30 s) is held at 0 so the run stays short; its bound has its own test
    strategy = op.as_strategy(generation_mode=mode, **({"query": {"wait": 0}} if "wait" in params else {}))

    @seed(FUZZ_SEED)
    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None, derandomize=False,
              phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def run(case):
        case.call_and_validate(base_url=proc.url, checks=CHECKS, timeout=40)

    run()


@pytest.mark.parametrize("name", ["relayer", "node", "verifier"])
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
def test_daemon_answers_fuzzed_requests_as_documented_and_never_5xx(system, name, mode):
    proc = system.daemons[name]
    store = system.stores()[name]
    failures = []
    for op in operations(system, name):
        before = snapshot(store) if op.method.upper() != "GET" else None
        try:
            fuzz_operation(proc, op, mode)
        except Unsatisfiable:  # no input of this operation can violate its schema (no parameters, no body)
            pass
        except Exception as exc:  # collect every operation's first failure, then fail once with all of them
            failures.append(f"{op.method.upper()} {op.path}: {str(exc)[:3000]}")
        if before is not None and mode is GenerationMode.NEGATIVE:
            # schema-violating requests are refused, and a refusal stores nothing
            assert snapshot(store) == before, f"{op.method.upper()} {op.path} changed {name}'s store"
    assert not failures, "\n\n".join(failures)


@pytest.mark.parametrize("name", ["relayer", "node", "verifier"])
def test_undeclared_methods_answer_405_with_allow(system, name):
    proc = system.daemons[name]
    for op in operations(system, name):
        if "{" in op.path:
            continue
        allowed = {m.upper() for m in system.daemons[name].client.get("/openapi.json").json()["paths"][op.path]}
        for method in ("PUT", "PATCH", "DELETE", "POST", "GET"):
            if method in allowed:
                continue
            res = proc.client.request(method, op.path)
            assert res.status_code == 405, (method, op.path, res.status_code, res.text)
            assert set(res.headers["allow"].replace(" ", "").split(",")) >= allowed, res.headers
            assert res.json()["error"] == "method_not_allowed"
