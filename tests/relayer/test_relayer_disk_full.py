"""The relayer's SQLite store on a disk that fills up (a real 16 MiB tmpfs, filled by another file): under its reserve
(``--store-reserve-mb``, ``offchain/daemon/disk.py``) the relayer refuses new receipts with 503 ``store_full`` and a
reason, keeps answering everything else, settles every receipt it had accepted, and accepts again as soon as space is
freed, without a restart. A reconciliation of its store with the chain (``devkit.cluster.reconcile``) then finds
every accepted receipt settled exactly once."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from offchain.daemon.disk import FREE_SPACE_TTL
from offchain.devkit.cluster import reconcile
from offchain.devkit.devnet import OPG, ChannelSim, RelayerProc, wait_until

MIB = 2**20
RESERVE_MB = 4


@pytest.fixture()
def small_disk(tmp_path) -> Iterator[Path]:
    """A 16 MiB tmpfs (the tests run as root; elsewhere this test cannot make a disk fill up and is skipped)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def free(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill(path: Path, leave: int) -> Path:
    """Another file takes the disk's space but ``leave`` bytes."""
    filler = path / "filler"
    with open(filler, "ab") as f:
        f.write(bytes(max(0, free(path) - leave)))
        f.flush()
        os.fsync(f.fileno())
    return filler


def submit(relayer: RelayerProc, channels: list[ChannelSim], count: int = 20) -> list[str]:
    res = relayer.post("/settle", {"receipts": [ch.next(OPG // 100) for ch in channels for _ in range(count)]})
    assert res.status_code == 200 and res.json()["refused"] == 0, res.text
    return [r["id"] for r in res.json()["results"]]


def offer(relayer: RelayerProc, channels: list[ChannelSim]) -> httpx.Response:
    """One receipt per channel; a refused offer leaves the channels as they were (their node offers them again)."""
    before = [ch.cumulative for ch in channels]
    res = relayer.post("/settle", {"receipts": [ch.next(OPG // 100) for ch in channels]})
    if res.status_code != 200:
        for ch, cumulative in zip(channels, before, strict=True):
            ch.cumulative = cumulative
    return res


def test_full_disk_refuses_new_receipts_with_503_settles_the_accepted_ones_and_recovers(devnet, small_disk):
    node = devnet.new_node()
    channels = [ChannelSim(devnet, devnet.new_payer(20 * OPG), node) for _ in range(2)]
    relayer = RelayerProc(devnet, small_disk / "relayer.sqlite3", 9, "--store-reserve-mb", str(RESERVE_MB)).start()
    try:
        accepted = submit(relayer, channels)
        filler = fill(small_disk, leave=RESERVE_MB * MIB // 2)
        time.sleep(FREE_SPACE_TTL + 0.1)  # the relayer's last reading of the free space is out of date
        refused = offer(relayer, channels)
        assert refused.status_code == 503, refused.text
        body = refused.json()
        assert body["error"] == "store_full" and "reserve" in body["reason"] and "retry later" in body["reason"], body
        for path in ("/healthz", "/batches", "/feed/receipts", f"/receipts/{accepted[0]}"):
            assert relayer.get(path).status_code == 200, path
        relayer.wait_receipts(accepted)  # what it had accepted settles on the reserve
        assert offer(relayer, channels).status_code == 503
        filler.unlink()  # space returns: accepted again, no restart
        res = wait_until(lambda: (r := offer(relayer, channels)).status_code == 200 and r, timeout=10,
                         what="receipts accepted again")
        assert res.json()["refused"] == 0, res.text
        relayer.wait_receipts(accepted + [r["id"] for r in res.json()["results"]])
        assert relayer.process.poll() is None  # never exited
        for ch in channels:
            assert devnet.spent(ch.payer, ch.node) == ch.cumulative
        reconcile(devnet.w3, devnet.escrow, relayer.address, relayer.store).assert_ok()
    finally:
        relayer.stop()


def test_without_a_reserve_a_failed_commit_exits_and_a_restart_loses_nothing_acknowledged(devnet, small_disk):
    """``--store-reserve-mb 0``: the disk fills up under a large submission, its commit fails, the relayer exits (70)
    rather than answer it; nothing it acknowledged is lost, and restarted once space returns it settles the
    acknowledged receipts and the resubmitted ones exactly once."""
    node = devnet.new_node()
    channels = [ChannelSim(devnet, devnet.new_payer(20 * OPG), node) for _ in range(2)]
    relayer = RelayerProc(devnet, small_disk / "relayer.sqlite3", 7, "--store-reserve-mb", "0").start()
    try:
        accepted = submit(relayer, channels)
        relayer.wait_receipts(accepted)
        filler = fill(small_disk, leave=64 * 1024)
        before = [ch.cumulative for ch in channels]
        with pytest.raises(httpx.TransportError):  # never answered: the process exits on the failed commit
            for _ in range(50):
                submit(relayer, channels, count=250)
        assert relayer.wait_exit() == 70
        assert "store commit failed" in relayer.logs()
        relayer.stop()
        for ch, cumulative in zip(channels, before, strict=True):  # unanswered: their node offers them again
            ch.cumulative = cumulative
        filler.unlink()
        relayer.start()
        for view in relayer.wait_receipts(accepted):
            assert view["status"] == "settled"
        again = submit(relayer, channels)
        relayer.wait_receipts(again)
        for ch in channels:
            assert devnet.spent(ch.payer, ch.node) == ch.cumulative
        reconcile(devnet.w3, devnet.escrow, relayer.address, relayer.store).assert_ok()
    finally:
        relayer.stop()
