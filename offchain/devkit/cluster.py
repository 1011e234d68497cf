"""Several relayer processes on one throwaway PostgreSQL database, the faults a failover test injects into them, and
the reconciliation of a relayer's store with the chain.

- ``RelayerCluster``: two or three ``ClusterRelayer`` processes (``opg relayer run``) on one ``PostgresCluster``
  database, with the same relayer key, each its own port, ``--instance`` name and database role (named after the
  instance: its backends and its right to log in can be told apart) and a short ``--lease-ttl``; a
  ``RoundRobinFront`` (one loopback address forwarding to the relayers in turn, the next one when a relayer does not
  answer or answers 5xx) that the nodes use as their relayer; and helpers to find the leader (``/healthz``'s
  ``lease``), SIGKILL, SIGSTOP/SIGCONT and restart one, and cut one from the database while it runs
  (``cut_database``: its role refused logins and its backends terminated, for a while).
- Faults at exact steps: each relayer runs this module as its plug-in (``OPG_RELAYER_PLUGINS``, see
  ``offchain.daemon.plugins``); ``ClusterRelayer.arm(fault)`` writes the fault's name into the relayer's fault file,
  and the plug-in exits the process hard (``os._exit(137)``) at that step: ``EXIT_AFTER_SIGN`` (a batch transaction
  signed and recorded in the journal, not broadcast), ``EXIT_AFTER_BROADCAST`` (the node has the transaction, the
  relayer has not seen it mined: turn the chain's automine off first), ``EXIT_MID_WRITE`` (inside the group commit
  that records a mined batch as confirmed, before its COMMIT: the database rolls the whole group back); and
  ``STOP_BEFORE_RECORD``: the process stops itself (SIGSTOP) with a batch transaction signed, just before its
  write-ahead record, so that woken (``RelayerCluster.resume``) after another relayer took the lease it records with
  a stale epoch at once (the record's fence must refuse it).
- ``reconcile``: the relayer account's transactions on the chain against the store's journal (``transactions``) and
  batches, the escrow's ``BatchSettled`` logs against the confirmed batches, and each channel's ``spent`` against
  the highest accepted receipt; a list of problems, empty when they agree. It reads any relayer store (SQLite file or
  PostgreSQL URL), so the chain-fault tests use it as well.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from web3 import Web3

from ..sdk.contracts import BatchSettled
from ..storage.database import Database
from .devnet import Devnet, RelayerProc, wait_until
from .postgres import PostgresCluster

__all__ = ["EXIT_AFTER_BROADCAST", "EXIT_AFTER_SIGN", "EXIT_MID_WRITE", "FAULT_EXIT_CODE", "STOP_BEFORE_RECORD",
           "ClusterRelayer", "Lease", "Reconciliation", "RelayerCluster", "RoundRobinFront", "in_parallel", "install",
           "reconcile"]

log = logging.getLogger("opg.devkit.cluster")

FAULT_EXIT_CODE = 137
FAULT_FILE_ENV, FAULT_RPC_ENV = "OPG_FAULT_FILE", "OPG_FAULT_RPC_URL"
EXIT_AFTER_SIGN, EXIT_AFTER_BROADCAST, EXIT_MID_WRITE = "exit-after-sign", "exit-after-broadcast", "exit-mid-write"
STOP_BEFORE_RECORD = "stop-before-record"
PLUGIN = __name__  # the module each cluster relayer installs as its plug-in


# The fault plug-in (runs inside a relayer process) ------------------------------------------------------------------
def _armed(fault: str) -> bool:
    path = os.environ.get(FAULT_FILE_ENV)
    try:
        return bool(path) and Path(path).read_text().strip() == fault
    except FileNotFoundError:
        return False


def _exit(step: str) -> None:
    log.warning("fault plug-in: exiting hard %s", step)
    logging.shutdown()
    os._exit(FAULT_EXIT_CODE)


def _exit_once_broadcast(tx_hash: str) -> None:
    """Exit as soon as the chain's node knows ``tx_hash`` (the relayer's broadcast returned or is returning)."""
    rpc = httpx.Client(base_url=os.environ[FAULT_RPC_ENV], timeout=5)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        answer = rpc.post("", json={"jsonrpc": "2.0", "id": 1, "method": "eth_getTransactionByHash",
                                    "params": [tx_hash]}).json()
        if answer.get("result"):
            _exit(f"after broadcasting {tx_hash}")
        time.sleep(0.005)
    log.error("fault plug-in: %s never reached the node", tx_hash)


def _on_tx_recorded(tx: Any) -> None:
    if tx.kind != "batch":
        return
    if _armed(EXIT_AFTER_SIGN):
        _exit(f"after signing batch {tx.ref} ({tx.tx_hash}, nonce {tx.nonce}), before its broadcast")
    if _armed(EXIT_AFTER_BROADCAST):
        threading.Thread(target=_exit_once_broadcast, args=(tx.tx_hash,), daemon=True).start()


def install(events: Any) -> None:
    """The plug-in entry point (``offchain.daemon.plugins``): subscribe to the steps a fault may be armed at."""
    from ..relayer.store import Store
    from ..storage.journal import SqlTxJournal

    events.tx_recorded.subscribe(_on_tx_recorded)
    record = SqlTxJournal.record

    def stop_then_record(journal: SqlTxJournal, tx: Any, epoch: Any = None) -> None:
        if tx.kind == "batch" and _armed(STOP_BEFORE_RECORD):
            Path(os.environ[FAULT_FILE_ENV]).unlink(missing_ok=True)  # once: woken, it records
            log.warning("fault plug-in: stopping (SIGSTOP) before recording batch %s (%s, nonce %d)", tx.ref,
                        tx.tx_hash, tx.nonce)
            # Thread-directed: a process-directed SIGSTOP may be taken by another thread while this one runs on.
            signal.pthread_kill(threading.get_ident(), signal.SIGSTOP)
        record(journal, tx, epoch)

    SqlTxJournal.record = stop_then_record  # type: ignore[method-assign]
    confirm = Store.__dict__["job_batch_confirmed"].__func__

    def job_batch_confirmed(cls: type, conn: Any, *args: Any) -> Any:
        result = confirm(cls, conn, *args)
        if _armed(EXIT_MID_WRITE):  # in the writer's open transaction, maybe with other jobs of the group
            _exit(f"in the middle of the group commit confirming batch {args[1]}")
        return result

    Store.job_batch_confirmed = classmethod(job_batch_confirmed)  # type: ignore[method-assign]


# One relayer of the cluster ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Lease:
    """``/healthz``'s ``lease``: this instance's role, who holds the lease, and its fencing epoch."""

    role: str  # "leader" | "follower"
    instance: str
    holder: str | None
    epoch: int


class ClusterRelayer(RelayerProc):
    """One relayer process of a ``RelayerCluster``: its instance name, lease TTL and fault file."""

    def __init__(self, devnet: Devnet, database: str, workdir: Path, instance: str, dev_account: int,
                 lease_ttl: float, batch_age: float):
        self.instance = instance
        self.fault_file = workdir / f"{instance}.fault"
        env = {"OPG_RELAYER_PLUGINS": PLUGIN, FAULT_FILE_ENV: str(self.fault_file), FAULT_RPC_ENV: devnet.url}
        # the kit passes --store <file> first; the later --store (the database) wins; the file is never made
        super().__init__(devnet, workdir / f"{instance}.sqlite3", dev_account, "--store", database,
                         "--instance", instance, "--lease-ttl", str(lease_ttl), env=env, batch_age=batch_age)
        self.name = instance
        self.paused = False

    def __repr__(self) -> str:
        return f"ClusterRelayer({self.instance}, {self.url})"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def lease(self) -> Lease | None:
        """Its lease as ``/healthz`` says (None: dead, paused or not answering)."""
        if not self.alive or self.paused:
            return None
        try:
            data = self.client.get("/healthz", timeout=2).json()["lease"]
        except (httpx.HTTPError, ValueError, KeyError):
            return None
        return Lease(role=data["role"], instance=data["instance"], holder=data.get("holder"),
                     epoch=int(data["epoch"]))

    # Faults --------------------------------------------------------------------------------------------------------
    def arm(self, fault: str) -> None:
        """Exit hard (or stop) at ``fault``'s step (EXIT_AFTER_SIGN, EXIT_AFTER_BROADCAST, EXIT_MID_WRITE,
        STOP_BEFORE_RECORD), next time there."""
        self.fault_file.write_text(fault)

    def disarm(self) -> None:
        self.fault_file.unlink(missing_ok=True)

    def start(self, timeout: float = 60) -> ClusterRelayer:
        self.disarm()
        self.paused = False
        super().start(timeout)
        return self

    def pause(self) -> None:
        """SIGSTOP: the process keeps its sockets and believes what it believed; it just stops running."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)
        self.paused = False

    @property
    def stopped(self) -> bool:
        """Whether the process is stopped (SIGSTOP, e.g. by its STOP_BEFORE_RECORD fault)."""
        if not self.alive:
            return False
        return Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"

    def metric(self, name: str) -> float:
        """A metric's value from ``/metrics`` (the first sample of that name)."""
        for line in self.client.get("/metrics").text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        raise KeyError(name)



# The front: one address for the nodes, the relayers behind it --------------------------------------------------------
@dataclass(frozen=True)
class Answer:
    """One answer a relayer gave through the front (status None: no answer, the connection failed)."""

    backend: str
    method: str
    path: str
    status: int | None


class RoundRobinFront:
    """A loopback HTTP front forwarding each request to the next relayer in turn; a relayer that does not answer, or
    answers 5xx, is skipped for the next one (as a load balancer's health check would). Every answer is kept in
    ``answers`` so a test can check what the survivors said."""

    def __init__(self, backends: list[str], timeout: float = 5.0):
        self.backends = list(backends)
        self.answers: list[Answer] = []
        self.down: set[str] = set()  # backends left out of the rotation (a paused process: it would only time out)
        self._turn = 0
        self._lock = threading.Lock()
        self._clients = {b: httpx.Client(base_url=b, timeout=httpx.Timeout(timeout, connect=1.0)) for b in backends}
        front = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("host", "content-length", "connection", "transfer-encoding")}
                status, content, ctype = front.forward(self.command, self.path, body, headers)
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = do_PUT = do_DELETE = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="front", daemon=True)
        self._thread.start()

    def _order(self) -> list[str]:
        with self._lock:
            start = self._turn % len(self.backends)
            self._turn += 1
        order = self.backends[start:] + self.backends[:start]
        return [b for b in order if b not in self.down] or order

    def forward(self, method: str, path: str, body: bytes, headers: dict) -> tuple[int, bytes, str]:
        last: tuple[int, bytes, str] = (502, b'{"error":"no relayer answered"}', "application/json")
        for backend in self._order():
            try:
                res = self._clients[backend].request(method, path, content=body, headers=headers)
            except httpx.TransportError:
                self.answers.append(Answer(backend, method, path, None))
                continue
            self.answers.append(Answer(backend, method, path, res.status_code))
            last = (res.status_code, res.content, res.headers.get("content-type", "application/json"))
            if res.status_code < 500:
                return last
        return last

    def failures(self, backends: list[str], since: int = 0) -> list[Answer]:
        """The 5xx answers (and failed connections) of ``backends`` among ``answers[since:]``."""
        return [a for a in self.answers[since:] if a.backend in backends and (a.status is None or a.status >= 500)]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        for client in self._clients.values():
            client.close()


# The cluster --------------------------------------------------------------------------------------------------------
class RelayerCluster:
    """``size`` relayers (instances ``relayer-a``, ``relayer-b``, ...) on one fresh database of a private PostgreSQL
    server, all on the relayer key ``dev_account``, behind one ``RoundRobinFront``; see the module docstring."""

    def __init__(self, devnet: Devnet, workdir: Path, size: int = 3, dev_account: int = 4, lease_ttl: float = 1.0,
                 batch_age: float = 0.3):
        self.devnet, self.lease_ttl = devnet, lease_ttl
        self.postgres = PostgresCluster().start()
        self.database = self.postgres.database()  # as the postgres superuser (the test's own reads)
        self.members = [ClusterRelayer(devnet, self._role(name), workdir, name, dev_account, lease_ttl, batch_age)
                        for name in (f"relayer-{chr(ord('a') + i)}" for i in range(size))]
        self.front = RoundRobinFront([m.url for m in self.members])
        self.address = self.members[0].address

    def start(self) -> RelayerCluster:
        """The first relayer alone (it migrates the empty database), then the others together (a caller with more
        processes to start does the same with its own: ``in_parallel``)."""
        self.members[0].start()
        in_parallel(ClusterRelayer.start, self.members[1:])
        return self

    def stop(self) -> None:
        for m in self.members:
            if m.paused:
                self.resume(m)
        in_parallel(ClusterRelayer.stop, self.members)
        self.front.stop()
        self.postgres.stop()

    def _role(self, instance: str) -> str:
        """A login role named after the instance (so its backends and its right to connect can be told apart); the
        database's URL as that role."""
        import psycopg

        with psycopg.connect(self.postgres.url, autocommit=True) as conn:
            conn.execute(f'CREATE ROLE "{instance}" LOGIN SUPERUSER')
        return self.database.replace("postgresql://postgres@", f"postgresql://{instance}@", 1)

    def member(self, instance: str) -> ClusterRelayer:
        return next(m for m in self.members if m.instance == instance)

    # The lease -------------------------------------------------------------------------------------------------------
    def leases(self) -> dict[str, Lease]:
        """What each live, running member says of the lease."""
        out = {}
        for m in self.members:
            lease = m.lease()
            if lease is not None:
                out[m.instance] = lease
        return out

    def leader(self, timeout: float = 30, newer_than: int = -1,
               among: list[ClusterRelayer] | None = None) -> tuple[ClusterRelayer, Lease]:
        """The member that is leader with an epoch above ``newer_than`` and that every other answering member of
        ``among`` (default: all) names as holder; waits up to ``timeout`` s for one."""
        among = among or self.members

        def settled() -> tuple[ClusterRelayer, Lease] | None:
            leases = {m.instance: m.lease() for m in among}
            leaders = [(m, ls) for m in among if (ls := leases[m.instance]) and ls.role == "leader"
                       and ls.epoch > newer_than]
            if len(leaders) != 1:
                return None
            m, lease = leaders[0]
            if all(ls is None or ls.holder == m.instance for ls in leases.values()):
                return m, lease
            return None

        return wait_until(settled, timeout=timeout, interval=0.02, what=f"one leader with epoch > {newer_than}")

    def followers(self, leader: ClusterRelayer) -> list[ClusterRelayer]:
        return [m for m in self.members if m is not leader]

    # Faults ----------------------------------------------------------------------------------------------------------
    def kill(self, member: ClusterRelayer) -> None:
        """SIGKILL (no clean-up of any kind)."""
        member.kill9()

    def pause(self, member: ClusterRelayer) -> None:
        """SIGSTOP ``member``; the front leaves it out of the rotation (as a failed health check would)."""
        self.front.down.add(member.url)
        member.pause()

    def wait_stopped(self, member: ClusterRelayer, timeout: float = 30) -> None:
        """Wait for an armed member to stop itself (STOP_BEFORE_RECORD); the front leaves it out."""
        wait_until(lambda: member.stopped, timeout=timeout, interval=0.02, what=f"{member.instance} stopped")
        self.front.down.add(member.url)
        member.paused = True

    def resume(self, member: ClusterRelayer) -> None:
        member.resume()
        self.front.down.discard(member.url)

    def wait_exit(self, member: ClusterRelayer, timeout: float = 30) -> int:
        """Wait for an armed member to hit its fault; its exit code."""
        code = member.wait_exit(timeout)
        member.disarm()
        return code

    def cut_database(self, member: ClusterRelayer, seconds: float, keep_writer: bool = False) -> int:
        """Cut ``member`` from the database for ``seconds`` s while its process runs on: its role may not log in
        (``NOLOGIN``) and its backends are terminated (again and again, for connections under way); then it may log
        in again. The number of backends terminated.

        ``keep_writer``: spare the store's group-commit writer (the role's longest-lived ``opg-writer`` connection:
        opened when the store opens and never replaced; the relayer exits when it is lost), so the process stays
        alive and able to write while it loses everything else: its lease connection, readers and listener (a
        zombie that may still try to record a transaction)."""
        import psycopg

        cut = 0
        deadline = time.monotonic() + seconds
        with psycopg.connect(self.postgres.url, autocommit=True) as conn:
            writer = None
            if keep_writer:
                row = conn.execute("SELECT pid FROM pg_stat_activity WHERE usename = %s AND application_name ="
                                   " 'opg-writer' ORDER BY backend_start LIMIT 1", (member.instance,)).fetchone()
                writer = row[0] if row else None
            conn.execute(f'ALTER ROLE "{member.instance}" NOLOGIN')
            try:
                while time.monotonic() < deadline:
                    rows = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s"
                                        " AND pid IS DISTINCT FROM %s", (member.instance, writer)).fetchall()
                    cut += sum(1 for (ok,) in rows if ok)
                    time.sleep(0.02)
            finally:
                conn.execute(f'ALTER ROLE "{member.instance}" LOGIN')
        return cut

    def reconcile(self, from_block: int = 0, quiescent: bool = True) -> Reconciliation:
        return reconcile(self.devnet.w3, self.devnet.escrow, self.address, self.database, from_block, quiescent)


# Reconciliation: the store against the chain -----------------------------------------------------------------------
@dataclass(frozen=True)
class ChainTx:
    """A transaction the relayer account sent, as mined."""

    tx_hash: str
    nonce: int
    block: int
    status: int


@dataclass
class Reconciliation:
    """What ``reconcile`` found: the account's mined transactions, the journal rows, and every disagreement."""

    chain: list[ChainTx]
    journal: list[dict]
    spent: dict[tuple[str, str], int]
    problems: list[str] = field(default_factory=list)

    def assert_ok(self) -> None:
        assert not self.problems, "store and chain disagree:\n  " + "\n  ".join(self.problems)

    def epochs(self) -> dict[str, Any]:
        """Each mined transaction's journal epoch (None: the journal has no epoch column)."""
        by_hash = {r["tx_hash"]: r for r in self.journal}
        return {t.tx_hash: by_hash.get(t.tx_hash, {}).get("epoch") for t in self.chain}


def _account_txs(w3: Web3, account: str, from_block: int) -> list[ChainTx]:
    out = []
    for number in range(from_block, w3.eth.block_number + 1):
        block = w3.eth.get_block(number, full_transactions=True)
        for tx in block["transactions"]:
            if tx["from"] == account:
                receipt = w3.eth.get_transaction_receipt(tx["hash"])
                out.append(ChainTx("0x" + bytes(tx["hash"]).hex(), int(tx["nonce"]), number, int(receipt["status"])))
    return sorted(out, key=lambda t: t.nonce)


def reconcile(w3: Web3, escrow: Any, account: str, store: str | Path, from_block: int = 0,
              quiescent: bool = True) -> Reconciliation:
    """Compare relayer ``account``'s transactions and the settlement by ``escrow`` (a web3 contract) with the relayer
    store at ``store``.

    ``from_block``: only what happened from that block on (a test's scenario after earlier ones): the nonces from
    the account's count before it, batches mined from it, ``spent`` as it grew since.

    Problems found (each a line of ``Reconciliation.problems``):
    - the account's mined nonces are not contiguous (from its count before ``from_block``), or (``quiescent``) a
      transaction of it still waits in the mempool;
    - a mined transaction the journal never recorded (sent outside the write-ahead record), or a journal row
      (``quiescent``) not marked done;
    - with a journal ``epoch`` column: a mined transaction whose epoch is below an earlier nonce's (a deposed
      leader's transaction mined after its successor's);
    - a batch with two mined successful transactions, a ``BatchSettled`` transaction no confirmed batch names, a
      confirmed batch whose transaction is not a mined successful one of the account;
    - a channel whose ``spent`` grew by other than what the account's ``BatchSettled`` logs paid it (settled twice),
      or differs from the highest cumulative of its settled receipts, or (``quiescent``) that still has pending
      receipts.
    """
    db = Database.at(store)
    try:
        journal = [dict(zip(r.keys(), r, strict=True)) for r in db.read("SELECT * FROM transactions ORDER BY nonce")]
        batches = [dict(zip(r.keys(), r, strict=True))
                   for r in db.read("SELECT id, status, tx_hash, block_number FROM batches")]
        receipts = db.read("SELECT payer, node, status, cumulative FROM receipts")
    finally:
        db.close()
    chain = _account_txs(w3, account, from_block)
    problems: list[str] = []
    first = w3.eth.get_transaction_count(account, from_block - 1) if from_block > 0 else 0
    nonces = [t.nonce for t in chain]
    if nonces != list(range(first, first + len(nonces))):
        problems.append(f"the account's mined nonces are not contiguous from {first}: {nonces}")
    pending = w3.eth.get_transaction_count(account, "pending")
    if quiescent and pending != first + len(nonces):
        problems.append(f"{pending - first - len(nonces)} transaction(s) of the account still wait in the mempool")
    rows = {r["tx_hash"]: r for r in journal}
    for t in chain:
        if t.tx_hash not in rows:
            problems.append(f"mined transaction {t.tx_hash} (nonce {t.nonce}) is not in the journal")
        elif rows[t.tx_hash]["nonce"] != t.nonce:
            problems.append(f"journal says nonce {rows[t.tx_hash]['nonce']} for {t.tx_hash}, mined at {t.nonce}")
    if quiescent:
        problems += [f"journal row {r['tx_hash']} ({r['kind']} {r['ref']}, nonce {r['nonce']}) is not done"
                     for r in journal if r.get("done_at") is None]
    if journal and "epoch" in journal[0]:
        high = None
        for t in chain:
            epoch = rows.get(t.tx_hash, {}).get("epoch")
            if epoch is not None and high is not None and epoch < high:
                problems.append(f"{t.tx_hash} (nonce {t.nonce}) of epoch {epoch} mined after epoch {high}'s")
            high = epoch if high is None or (epoch is not None and epoch > high) else high
    # Batches: one successful transaction each, and BatchSettled only from confirmed batches.
    ok = {t.tx_hash for t in chain if t.status == 1}
    mined_by_batch: dict[str, list[str]] = {}
    for r in journal:
        if r["kind"] == "batch" and r["tx_hash"] in ok:
            mined_by_batch.setdefault(r["ref"], []).append(r["tx_hash"])
    problems += [f"batch {ref} mined twice: {hashes}" for ref, hashes in mined_by_batch.items() if len(hashes) > 1]
    confirmed = {b["tx_hash"]: b["id"] for b in batches if b["status"] == "confirmed"}
    problems += [f"confirmed batch {b['id']}'s transaction {b['tx_hash']} is not a successful one of the account"
                 for b in batches if b["status"] == "confirmed" and b["block_number"] >= from_block
                 and b["tx_hash"] not in ok]
    paid: dict[tuple[str, str], int] = {}
    for event in escrow.events.BatchSettled().get_logs(from_block=from_block):
        settled = BatchSettled.from_event(event)
        if settled.submitter != account:
            continue
        if settled.tx_hash not in confirmed:
            problems.append(f"BatchSettled in {settled.tx_hash}, which no confirmed batch names")
        for claim in settled.claims:
            key = (claim.payer.lower(), claim.node.lower())
            paid[key] = paid.get(key, 0) + claim.amount
    # Channels: spent = what BatchSettled paid = the highest settled receipt.
    highest: dict[tuple[str, str], int] = {}
    waiting: dict[tuple[str, str], int] = {}
    for r in receipts:
        key = (r["payer"].lower(), r["node"].lower())
        if r["status"] == "settled":
            highest[key] = max(highest.get(key, 0), int(r["cumulative"]))
        elif r["status"] == "pending":
            waiting[key] = waiting.get(key, 0) + 1
    spent = {}
    for key in sorted(set(highest) | set(paid) | set(waiting)):
        spent_of = escrow.functions.spent(*map(Web3.to_checksum_address, key))
        spent[key] = int(spent_of.call())
        grew = spent[key] - (int(spent_of.call(block_identifier=from_block - 1)) if from_block > 0 else 0)
        if grew != paid.get(key, 0):
            problems.append(f"channel {key}: spent grew by {grew}, BatchSettled paid {paid.get(key, 0)}")
        if spent[key] != highest.get(key, 0):
            problems.append(f"channel {key}: spent {spent[key]} != highest settled receipt {highest.get(key, 0)}")
        if quiescent and waiting.get(key):
            problems.append(f"channel {key}: {waiting[key]} receipt(s) still pending")
    return Reconciliation(chain=chain, journal=journal, spent=spent, problems=problems)


def in_parallel(fn: Callable[[Any], Any], items: list[Any]) -> None:
    """``fn(item)`` for each item in its own thread (daemons take seconds to start or stop); the first error is
    raised in the caller's thread once all are done."""
    errors: list[BaseException] = []

    def run(item: Any) -> None:
        try:
            fn(item)
        except BaseException as exc:  # noqa: BLE001  (re-raised below)
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in items]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
