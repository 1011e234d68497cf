"""Helpers shared by the test modules (plain functions; fixtures live in conftest.py)."""


def called_addresses(chain, tx) -> set[str]:
    """Every address a transaction called (anvil's callTracer), lower-case."""
    root = chain.provider.make_request("debug_traceTransaction", [tx.txn_hash, {"tracer": "callTracer"}])
    out, todo = set(), [root]
    while todo:
        frame = todo.pop()
        out.add(frame["to"].lower())
        todo.extend(frame.get("calls", []))
    return out
