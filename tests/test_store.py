"""The job store: rate limits and duplicates, shared by threads, surviving a restart."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

from faxmail.store.sqlite import Duplicate, Job, RateExceeded, RateLimits, SqliteStore

BASE = Job(
    id="j0",
    created=0.0,
    state="queueing",
    sender="alice@example.jp",
    envelope_sender="a@x",
    author="alice@example.jp",
    reply_to=None,
    subject="件名",
    number_given="03-1234-5678",
    number_e164="+81312345678",
    number_dialled="0312345678",
    pages=1,
    digest="d0",
    message_id="<m0@x>",
    proof="dkim",
    dkim_domain="example.jp",
    language="ja",
    tiff="/x/j0.tif",
    render_seconds=0.1,
    tiff_bytes=100,
)


def job(n: int, **changes: object) -> Job:
    values: dict[str, object] = {"id": f"j{n}", "created": time.time(), "message_id": f"<m{n}@x>"}
    values.update(changes)
    return dataclasses.replace(BASE, **values)  # type: ignore[arg-type]


def test_rate_limit_counts_across_restart(tmp_path: Path) -> None:
    limits = RateLimits(per_hour=2, per_day=None)
    store = SqliteStore(tmp_path / "s.sqlite")
    assert store.admit(job(1), limits, 3600) == "admitted"
    assert store.admit(job(2), limits, 3600) == "admitted"
    store.close()
    store = SqliteStore(tmp_path / "s.sqlite")
    assert store.admit(job(3), limits, 3600) == RateExceeded(2, "hour")
    assert store.rate_exceeded("ALICE@example.jp", limits, time.time()) == RateExceeded(2, "hour")
    store.set_state("j1", "abandoned", "test")  # abandoned jobs were never faxed: not counted
    assert store.admit(job(3), limits, 3600) == "admitted"


def test_duplicate_within_window(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite")
    limits = RateLimits(None, None)
    assert store.admit(job(1, message_id="<same@x>"), limits, 3600) == "admitted"
    assert store.admit(job(2, message_id="<same@x>"), limits, 3600) == Duplicate("j1")
    assert store.admit(job(3, message_id="<same@x>", digest="other"), limits, 3600) == "admitted"
    assert [kind for _, kind, _ in store.events("j1")] == ["accepted", "duplicate"]


def test_threads_never_exceed_the_limit(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite")
    limits = RateLimits(per_hour=5, per_day=None)
    results: list[object] = []

    def worker(n: int) -> None:
        results.append(store.admit(job(n), limits, 3600))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("admitted") == 5
