"""A real verifier process killed hard (``os._exit(137)`` from the fault plug-in ``offchain.devkit.faults``) at each
step of a verdict: signed (before it is stored), posted (the relayer took it; not yet recorded), a withholding report
sent (not yet recorded), its fraud flag mined (not yet recorded), its flag transaction recorded (before its
broadcast). After each it restarts on the same store, and a reconciliation
(``offchain.devkit.reconcile_stores.reconcile_verifier``) compares its store with the relayer's verdicts and reports
and with the chain's flags: no verdict lost, none signed twice or with different content, every flag it sent
recorded as sent, nothing left pending.

One devnet, relayer, verifier and three nodes (honest, cheating on every answer, withholding its payloads) serve
every step. A second verifier is registered and live but never runs, so the first one's vote alone is no quorum: the
cheating node's receipts stay flagged and unproven, and each step's flag is this verifier's to send."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from verifier_kit import live, node_proc, pay_chat, start_all, stop_all, verifier_proc, wait_check

from offchain.devkit.devnet import OPG, Actor, DaemonProc
from offchain.devkit.faults import FAULT_EXIT_CODE, fault_env
from offchain.devkit.reconcile_stores import reconcile_verifier, until_consistent
from offchain.storage import Database

# (the event the verifier dies at, the node whose receipt it is checking, a recorded transaction's kind)
STEPS = [("verdict_signed", "honest", None), ("verdict_posted", "honest", None),
         ("report_sent", "withholder", None), ("flag_sent", "cheater", None), ("tx_recorded", "cheater", "flag")]


@dataclass
class World:
    verifier: DaemonProc
    actor: Actor
    store: Path
    nodes: dict[str, DaemonProc]
    payer: Actor


@pytest.fixture(scope="module")
def world(devnet, relayer, workdir):
    actor, silent = devnet.new_verifier(), devnet.new_verifier()  # equal weights: one vote is half, no quorum
    live(devnet, [actor, silent])
    nodes = {"honest": node_proc(devnet, relayer, devnet.new_node(), workdir, name="honest"),
             "cheater": node_proc(devnet, relayer, devnet.new_node(), workdir, name="cheater",
                                  backend="builtin?cheat_rate=1"),
             "withholder": node_proc(devnet, relayer, devnet.new_node(), workdir, name="withholder",
                                     endpoint="http://127.0.0.1:9")}
    verifier = verifier_proc(devnet, relayer, actor, workdir, sample_rate=1.0, deadline=1.0)
    store = Path(verifier.args[verifier.args.index("--store") + 1])
    try:
        start_all(list(nodes.values()))
        yield World(verifier, actor, store, nodes, devnet.new_payer(50 * OPG))
    finally:
        stop_all(verifier, *nodes.values())


def problems(devnet, relayer, world: World) -> list[str]:
    return reconcile_verifier(Database.sqlite(world.store), Database.sqlite(relayer.store), world.actor.address,
                              devnet.staking)


@pytest.mark.parametrize(("step", "node", "kind"), STEPS)
def test_a_verifier_killed_at_each_step_loses_no_verdict_and_signs_none_twice(step, node, kind, devnet, relayer,
                                                                            world):
    v = world.verifier
    v.env.update(fault_env("verifier", step, kind=kind))
    v.start()
    served = pay_chat(devnet, world.nodes[node].url, world.payer, f"The verifier dies at {step}", max_tokens=12)
    assert v.process.wait(timeout=60) == FAULT_EXIT_CODE, v.logs()[-3000:]
    v.stop()

    for key in fault_env("verifier", step, kind=kind):
        v.env.pop(key)
    v.start()  # the same store
    decided = wait_check(v, served["receiptId"])
    assert decided["status"] == {"honest": "done", "cheater": "done", "withholder": "withheld"}[node], decided
    assert until_consistent(lambda: problems(devnet, relayer, world)) == []
    v.stop()
