"""A preview's job row, in both stores: counted by the rate limits like a fax, never a duplicate
of one (either way round), never queued, dialled or given a result mail."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from faxmail.core.replies import Refusal
from faxmail.outbound.preview import abandon_previews, admit_previews, preview_job
from faxmail.store.model import Duplicate, EventKind, JobFilter, JobState, RateExceeded, RateLimits
from faxmail.store.sqlite import SqliteStore
from infra.storekinds import OpenStore
from test_store import job, unknown_words


def test_a_preview_counts_against_the_rate_limit(open_store: OpenStore) -> None:
    store = open_store()
    limits = RateLimits(per_hour=2, per_day=None)
    assert store.admit(preview_job(job(1)), limits, 3600) == "admitted"
    assert store.admit(job(2), limits, 3600) == "admitted"
    assert store.admit(preview_job(job(3)), limits, 3600) == RateExceeded(2, "hour")
    assert store.admit(job(4), limits, 3600) == RateExceeded(2, "hour")
    assert store.rate_exceeded("alice@example.jp", limits, job(5).created) == RateExceeded(
        2, "hour"
    )
    daily = RateLimits(per_hour=None, per_day=2)
    assert store.admit(job(6), daily, 3600) == RateExceeded(2, "day")


def test_a_preview_is_no_duplicate_either_way(open_store: OpenStore) -> None:
    store = open_store()
    limits = RateLimits(None, None)
    same = {"message_id": "<same@x>"}
    assert store.admit(preview_job(job(1, **same)), limits, 3600) == "admitted"
    assert store.admit(job(2, **same), limits, 3600) == "admitted"  # the real fax is dialled
    assert store.admit(preview_job(job(3, **same)), limits, 3600) == "admitted"
    assert store.admit(job(4, **same), limits, 3600) == Duplicate("j2")  # a resent fax still is
    assert [kind for _, kind, _ in store.events("j1")] == [EventKind.PREVIEWED]
    assert [kind for _, kind, _ in store.events("j3")] == [EventKind.PREVIEWED]


def test_a_preview_is_never_queued_nor_given_a_result(open_store: OpenStore) -> None:
    store = open_store()
    assert store.admit(preview_job(job(1)), RateLimits(None, None), 3600) == "admitted"
    got = store.get("j1")
    assert got is not None and got.state == JobState.PREVIEWED and got.tiff == ""
    assert store.dispatch_rows() == [] and store.dispatch_row("j1") is None
    assert store.pending_results() == [] and store.queries.results(["j1"]) == {}
    assert [j.id for j in store.in_state(JobState.PREVIEWED)] == ["j1"]
    assert store.in_state(JobState.QUEUEING) == []  # nothing for the start-up repair
    listed = store.queries.jobs(JobFilter(states=(JobState.PREVIEWED,)))
    assert [j.id for j in listed] == ["j1"]


def test_threads_previewing_and_faxing_never_exceed_the_limit(open_store: OpenStore) -> None:
    store = open_store()
    limits = RateLimits(per_hour=5, per_day=None)
    results: list[object] = []

    def worker(n: int) -> None:
        made = job(n)
        results.append(store.admit(preview_job(made) if n % 2 else made, limits, 3600))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("admitted") == 5


def test_previews_over_the_limit_take_back_what_they_admitted(open_store: OpenStore) -> None:
    store = open_store()
    limits = RateLimits(per_hour=2, per_day=None)
    assert store.admit(job(1), limits, 3600) == "admitted"
    with pytest.raises(Refusal) as refused:
        admit_previews(store, [preview_job(job(2)), preview_job(job(3))], limits)
    assert refused.value.reply.code == "450"
    assert "has sent 2 faxes in the last hour" in refused.value.reply.text
    taken_back = store.get("j2")
    assert taken_back is not None and taken_back.state == JobState.ABANDONED
    assert store.get("j3") is None
    assert admit_previews(store, [preview_job(job(4))], limits) == ["j4"]


def test_a_preview_writes_only_enum_members(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite")
    try:
        limits = RateLimits(per_hour=1, per_day=None)
        assert admit_previews(store, [preview_job(job(1))], limits) == ["j1"]
        with pytest.raises(Refusal):
            admit_previews(store, [preview_job(job(2))], limits)
        abandon_previews(store, ["j1"], "mail not spooled")
    finally:
        store.close()
    assert unknown_words(tmp_path / "s.sqlite") == []
