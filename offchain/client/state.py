"""The payer's local state directory (default ``~/.opg``; ``--state-dir`` / ``OPG_CLIENT_STATE_DIR``).

Layout (all JSON, written atomically; secrets mode 0600)::

    <root>/channels/<chainId>/<escrow>/<payer>-<node>.json   channel view: charged, highest cap signed, in flight,
                                                            over-charge block (+ a .lock file for flock)
    <root>/channels/<chainId>/<escrow>/<payer>-<node>.block  the over-charge block alone, fsynced, replaced by
                                                            rename (never written in place): it wins on load
    <root>/sessions/<chainId>/<escrow>/<payer>.json         session key (private key, expiry, allowance), 0600
    <root>/requests/<receiptId>.json                        each answered request: request as sent, answer text,
                                                            signed receipt, payment response, checks

Several processes may share one state directory: every change of a channel happens under an exclusive ``flock`` of
its lock file (and a thread lock), so caps in flight in one process count in another's next voucher.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

DEFAULT_STATE_DIR = Path("~/.opg")
# how long, and how many, requests that left the in-flight set are remembered (ChannelState.recent): enough for the
# requests ending while a 402 is on its way (well under a second); forgetting one only makes the client stricter
RECENT_KEEP = 30.0  # s
RECENT_MAX = 32


def _atomic_write(path: Path, data: Any, private: bool = False, durable: bool = True) -> None:
    """Write ``data`` to a temporary file and rename it over ``path`` (readers see the old or the new file, never a
    mix). ``durable``: fsync the data first, so it survives a crash or power loss once this returns."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            if durable:
                os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def _overwrite(path: Path, data: Any) -> None:
    """Write ``data`` over ``path`` in place (call under the file's exclusive lock), not fsynced: no rename over an
    existing file, which ext4 (``auto_da_alloc``) flushes to disk as if fsynced. Readers take the shared lock
    (:func:`_read_locked`). Tear-proof against an interruption between the write and the truncation: a shorter text
    is padded with spaces to the old length first, so the file parses at every step. A crash in the middle of the
    write itself (power cut) leaves a torn file, read as absent: the channel is recovered from the relayer and its
    over-charge block from its own ``.block`` file."""
    raw = (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        old = os.fstat(fd).st_size
        padded = raw + b" " * (old - len(raw)) if old > len(raw) else raw
        if os.pwrite(fd, padded, 0) != len(padded):
            raise OSError(f"short write of {path}")
        if old > len(raw):
            os.ftruncate(fd, len(raw))
    finally:
        os.close(fd)


def _save_block(path: Path, state: ChannelState) -> None:
    """The over-charge block of ``state`` to its own file, fsynced and renamed into place (directory fsynced)."""
    _atomic_write(path, _block_of(state), durable=True)
    dirfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dirfd)
    finally:
        os.close(dirfd)


def _block_of(state: ChannelState) -> dict:
    return {"blocked": state.blocked, "blocked_receipt": state.blocked_receipt, "blocked_at": state.blocked_at}


def _merge_block(state: ChannelState, block: dict | None) -> ChannelState:
    """The ``.block`` file, when there is one, is the truth about the over-charge block (a torn or lost channel file
    never forgets it)."""
    if block is not None:
        state.blocked, state.blocked_receipt = block.get("blocked"), block.get("blocked_receipt")
        state.blocked_at = block.get("blocked_at")
    return state


def _read_locked(path: Path) -> dict | None:
    """``path`` read under a shared ``flock`` of its lock file (never half of a write in place)."""
    lock = path.with_suffix(".lock")
    if not lock.exists():
        return _read(path)
    with open(lock, "a") as lockfile:
        fcntl.flock(lockfile, fcntl.LOCK_SH)
        try:
            return _read(path)
        finally:
            fcntl.flock(lockfile, fcntl.LOCK_UN)


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError:
        return None  # a torn or foreign file: treated as absent (channels are recovered from the relayer)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class InFlight:
    """A request of this payer on the channel that holds a signed voucher and has no receipt yet."""

    cap: int  # the quote (the most it may cost)
    max_cumulative: int  # the voucher signed for it
    pid: int
    deadline: float  # wall time after which it counts as ended without a receipt
    started: float


@dataclass
class ChannelState:
    """What this payer knows about one (payer, node) channel. Amounts in wei."""

    chain_id: int
    escrow: str
    payer: str
    node: str
    charged: int = 0  # highest cumulative of a receipt this client verified (or recovered from the relayer)
    max_signed: int = 0  # highest maxCumulative this client signed
    received: int = 0  # sum of the amounts of the receipts this client verified
    receipts: int = 0
    # caps of requests that ended without a receipt seen (what the node may have billed for them), with when each ended
    unreceipted: list[list[float]] = field(default_factory=list)  # [[cap, ended_at], ...]
    inflight: dict[str, InFlight] = field(default_factory=dict)
    # requests that left the in-flight set lately, with what a node's quote issued while they were in flight may
    # count for them beyond what this client now counts (cap - amount billed; the cap if nothing was billed)
    recent: list[list] = field(default_factory=list)  # [[slack, reserved_at, ended_at, token], ...]
    blocked: str | None = None  # why this client refuses to sign for the node (over-charge), persisted
    blocked_receipt: str | None = None
    blocked_at: float | None = None
    recovered_from: str | None = None  # "relayer" when the view was rebuilt from GET /channels
    last_receipt: str | None = None
    updated_at: float = 0.0

    def to_json(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in fields(self)}  # shallow: asdict deep-copies every list
        for k in ("charged", "max_signed", "received"):
            data[k] = str(data[k])
        data["unreceipted"] = [[str(int(cap)), ended] for cap, ended in self.unreceipted]
        data["recent"] = [[str(int(slack)), reserved, ended, token] for slack, reserved, ended, token in self.recent]
        data["inflight"] = {t: {**asdict(f), "cap": str(f.cap), "max_cumulative": str(f.max_cumulative)}
                            for t, f in self.inflight.items()}
        return data

    @classmethod
    def from_json(cls, data: dict) -> ChannelState:
        data = dict(data)
        for k in ("charged", "max_signed", "received"):
            data[k] = int(data.get(k, 0))
        data["unreceipted"] = [[int(cap), float(ended)] for cap, ended in (data.get("unreceipted") or [])]
        data["recent"] = [[int(r[0]), float(r[1]), float(r[2]), str(r[3]) if len(r) > 3 else ""]
                          for r in (data.get("recent") or [])]
        data["inflight"] = {t: InFlight(cap=int(f["cap"]), max_cumulative=int(f["max_cumulative"]), pid=int(f["pid"]),
                                        deadline=float(f["deadline"]), started=float(f.get("started", 0)))
                            for t, f in (data.get("inflight") or {}).items()}
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

    def in_flight_caps(self, exclude: str | None = None) -> int:
        return sum(f.cap for t, f in self.inflight.items() if t != exclude)

    @property
    def unreceipted_total(self) -> int:
        return int(sum(cap for cap, _ in self.unreceipted))

    def add_unreceipted(self, cap: int, now: float | None = None) -> None:
        if cap > 0:
            self.unreceipted.append([cap, time.time() if now is None else now])

    def add_recent(self, token: str, slack: int, reserved_at: float, now: float | None = None) -> None:
        """The request ``token``, reserved at ``reserved_at``, left the in-flight set now; a quote the node issued
        while it was in flight may count ``slack`` wei more for it than this client now does."""
        now = time.time() if now is None else now
        self.recent = [r for r in self.recent if r[2] >= now - RECENT_KEEP][-(RECENT_MAX - 1):]
        if slack > 0:
            self.recent.append([int(slack), float(reserved_at), now, token])

    def recent_slack(self, sent_at: float, received_at: float, exclude: str | None = None) -> int:
        """What a node's quote, issued between ``sent_at`` (the request that drew it left) and ``received_at`` (its
        answer arrived), may count for requests in flight on the node then that have left this client's in-flight
        set since: each was reserved (its paid request sent) before ``received_at`` and ended after ``sent_at``
        (a node ends a request before its receipt leaves). ``exclude``: the request the quote answers."""
        return int(sum(slack for slack, reserved, ended, token in self.recent
                       if reserved <= received_at and ended >= sent_at and token != exclude))

    def consume_unreceipted(self, amount: int) -> None:
        """``amount`` of what the unreceipted requests may have cost is now accounted for (oldest first)."""
        remaining = []
        for cap, ended in self.unreceipted:
            take = min(int(cap), amount)
            amount -= take
            if int(cap) - take > 0:
                remaining.append([int(cap) - take, ended])
        self.unreceipted = remaining

    def resolve_unreceipted(self, before: float) -> None:
        """Requests that ended before ``before`` were billed (or not) before a later receipt's ``cumulative``."""
        self.unreceipted = [[cap, ended] for cap, ended in self.unreceipted if ended >= before]

    def expire_inflight(self, now: float | None = None) -> None:
        """Requests past their deadline or whose process died count as ended without a receipt."""
        now = time.time() if now is None else now
        for token, flight in list(self.inflight.items()):
            if flight.deadline < now or not _pid_alive(flight.pid):
                del self.inflight[token]
                self.add_unreceipted(flight.cap, now)


class ClientState:
    """The state directory. Thread-safe; several processes may share it (channel changes hold a file lock)."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root if root is not None else DEFAULT_STATE_DIR).expanduser()
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    # Channels ------------------------------------------------------------------------------------------------
    def channel_path(self, chain_id: int, escrow: str, payer: str, node: str) -> Path:
        return self.root / "channels" / str(chain_id) / escrow.lower() / f"{payer.lower()}-{node.lower()}.json"

    def load_channel(self, chain_id: int, escrow: str, payer: str, node: str) -> ChannelState | None:
        """The channel's view, None if this state has none; a torn channel file with an over-charge block on record
        reads as a fresh view that keeps the block."""
        path = self.channel_path(chain_id, escrow, payer, node)
        data, block = _read_locked(path), _read(path.with_suffix(".block"))
        if data:
            return _merge_block(ChannelState.from_json(data), block)
        if block is not None and block.get("blocked"):
            return _merge_block(ChannelState(chain_id=chain_id, escrow=escrow, payer=payer, node=node), block)
        return None

    @contextmanager
    def channel(self, chain_id: int, escrow: str, payer: str, node: str,
                durable: bool = True) -> Iterator[tuple[ChannelState, bool]]:
        """Lock the channel (thread and file), yield ``(state, existed)``; the state is saved on a clean exit
        (fsynced unless ``durable`` is False: for changes a crash may lose, as the state before them is the more
        cautious one, e.g. a cap leaving the in-flight set; a change of the over-charge block is always fsynced)."""
        path = self.channel_path(chain_id, escrow, payer, node)
        with self._guard:
            lock = self._locks.setdefault(str(path), threading.Lock())
        with lock:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path.with_suffix(".lock"), "a") as lockfile:
                fcntl.flock(lockfile, fcntl.LOCK_EX)
                try:
                    data = _read(path)  # None when absent or torn: the caller recovers the view from the relayer
                    state = _merge_block(ChannelState.from_json(data) if data
                                         else ChannelState(chain_id=chain_id, escrow=escrow, payer=payer, node=node),
                                         _read(path.with_suffix(".block")))
                    block = _block_of(state)
                    yield state, data is not None
                    state.updated_at = time.time()
                    if _block_of(state) != block:
                        _save_block(path.with_suffix(".block"), state)
                    if durable or _block_of(state) != block:
                        _atomic_write(path, state.to_json(), durable=True)
                    else:
                        _overwrite(path, state.to_json())
                finally:
                    fcntl.flock(lockfile, fcntl.LOCK_UN)

    def channels(self, chain_id: int, escrow: str, payer: str) -> list[ChannelState]:
        folder = self.root / "channels" / str(chain_id) / escrow.lower()
        out = []
        for path in sorted(folder.glob(f"{payer.lower()}-*.json")):
            data = _read_locked(path)
            if data:
                out.append(_merge_block(ChannelState.from_json(data), _read(path.with_suffix(".block"))))
        return out

    # Session keys --------------------------------------------------------------------------------------------
    def session_path(self, chain_id: int, escrow: str, payer: str) -> Path:
        return self.root / "sessions" / str(chain_id) / escrow.lower() / f"{payer.lower()}.json"

    def save_session(self, chain_id: int, escrow: str, payer: str, session: dict) -> Path:
        path = self.session_path(chain_id, escrow, payer)
        _atomic_write(path, session, private=True)
        return path

    def load_session(self, chain_id: int, escrow: str, payer: str) -> dict | None:
        return _read(self.session_path(chain_id, escrow, payer))

    def sessions(self, chain_id: int, escrow: str) -> list[dict]:
        folder = self.root / "sessions" / str(chain_id) / escrow.lower()
        return [s for p in sorted(folder.glob("0x*.json")) if (s := _read(p))]

    def delete_session(self, chain_id: int, escrow: str, payer: str) -> None:
        self.session_path(chain_id, escrow, payer).unlink(missing_ok=True)

    # Answered requests ---------------------------------------------------------------------------------------
    def request_path(self, receipt_id: str) -> Path:
        rid = receipt_id.lower()
        if not (rid.startswith("0x") and len(rid) == 66 and all(c in "0123456789abcdef" for c in rid[2:])):
            raise ValueError(f"not a receipt id (0x + 64 hex digits): {receipt_id!r}")
        return self.root / "requests" / f"{rid}.json"

    def save_request(self, record: dict, durable: bool = True) -> Path:
        path = self.request_path(record["receiptId"])
        _atomic_write(path, record, private=True, durable=durable)
        return path

    def load_request(self, receipt_id: str) -> dict | None:
        """The stored record of an answered request (see docs/client.md), or None if this state has none."""
        try:
            return _read(self.request_path(receipt_id))
        except ValueError:
            return None

    def requests(self, limit: int = 20) -> list[dict]:
        """The most recent answered requests, newest first."""
        folder = self.root / "requests"
        paths = sorted(folder.glob("0x*.json"), key=lambda p: p.stat().st_mtime, reverse=True)[:limit]
        return [r for p in paths if (r := _read(p))]
