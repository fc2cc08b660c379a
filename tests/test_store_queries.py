"""The admin's named queries (`JobQueries`) against each store kind, filled through its writers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from faxmail.store.interface import AdminStore
from faxmail.store.model import AttemptOutcome, EventKind, JobFilter, JobState, RateLimits
from infra.storekinds import OpenStore
from test_store import job

NONE = RateLimits(None, None)


@pytest.fixture
def store(open_store: OpenStore) -> Iterator[AdminStore]:
    yield open_store()


def _fill(store: AdminStore) -> None:
    """j1 sent (alice), j2 queued (bob, absorbed a resent mail), j3 abandoned (carol_x)."""
    for n, sender, number in (
        (1, "alice@example.jp", "+81312345678"),
        (2, "bob@example.jp", "+81612345678"),
        (3, "carol_x@other.jp", "+81312340000"),
    ):
        dialled = "0" + number[3:]
        fax = job(n, created=1000.0 + n, sender=sender, number_e164=number, number_dialled=dialled)
        assert store.admit(fax, NONE, 0) == "admitted"
    store.set_state("j1", JobState.QUEUED, EventKind.SPOOLED)
    store.claim_result("j1", JobState.SENT, EventKind.FAX_SENT)
    store.set_state("j2", JobState.QUEUED, EventKind.SPOOLED)
    store.set_state("j3", JobState.ABANDONED, EventKind.SPOOL_ERROR, error="disk full")
    resent = job(4, created=2000.0, message_id="<m2@x>", number_e164="+81612345678")
    assert store.admit(resent, NONE, 3600) != "admitted"  # a duplicate of j2


def _ids(store: AdminStore, **wanted: object) -> list[str]:
    return [j.id for j in store.queries.jobs(JobFilter(**wanted))]  # type: ignore[arg-type]


def test_jobs_by_state_sender_number_and_time(store: AdminStore) -> None:
    _fill(store)
    assert _ids(store) == ["j3", "j2", "j1"]  # newest first
    assert _ids(store, limit=2) == ["j3", "j2"]
    assert _ids(store, states=(JobState.SENT, JobState.ABANDONED)) == ["j3", "j1"]
    assert _ids(store, duplicates=True) == ["j2"]
    assert _ids(store, states=(JobState.SENT,), duplicates=True) == ["j2", "j1"]
    assert _ids(store, sender="Alice@Example.JP") == ["j1"]
    assert _ids(store, sender="@example.jp") == ["j2", "j1"]
    assert _ids(store, sender="@other.jp") == _ids(store, sender="carol_x@other.jp") == ["j3"]
    assert _ids(store, sender="@_ther.jp") == []  # LIKE's _ and % are literal
    assert _ids(store, number_e164="+81612345678") == ["j2"]
    assert _ids(store, number_digits="31234") == ["j3", "j1"]
    assert _ids(store, number_digits="%") == []
    assert _ids(store, since=1002.0) == ["j3", "j2"]
    (sent,) = store.queries.jobs(JobFilter(states=(JobState.SENT,)))
    assert sent == store.get("j1") and sent.state is JobState.SENT


def test_ids_starting(store: AdminStore) -> None:
    for job_id in ("ab12", "ab34", "ac00"):
        assert store.admit(job(0, id=job_id, message_id=job_id), NONE, 0) == "admitted"
    assert store.queries.ids_starting("ab") == ["ab12", "ab34"]
    assert store.queries.ids_starting("ab", limit=1) == ["ab12"]
    assert store.queries.ids_starting("ad") == []


def test_attempts_results_and_events_of_many_jobs(store: AdminStore) -> None:
    _fill(store)
    store.record_attempt("j2", 1, 1, AttemptOutcome.UNANSWERED, reason="17")
    store.record_attempt("j2", 1, 2, AttemptOutcome.ANSWERED, JobState.SENDING)
    many = ["j1", "j2", "j3", *(f"none{n}" for n in range(1200))]  # more than one IN (...)
    attempts = store.queries.attempts(many)
    assert len(attempts) == len(many) and attempts["j1"] == [] and attempts["none7"] == []
    assert [(a.attempt, a.outcome, a.detail) for a in attempts["j2"]] == [
        (1, AttemptOutcome.UNANSWERED, {"reason": "17"}),
        (2, AttemptOutcome.ANSWERED, {}),
    ]
    results = store.queries.results(many)
    assert list(results) == ["j1"] and results["j1"].outcome is JobState.SENT
    assert results["j1"].delivered is None
    events = store.queries.events(many)
    assert [e.kind for e in events["j2"]] == [
        EventKind.ACCEPTED,
        EventKind.SPOOLED,
        EventKind.DUPLICATE,
        EventKind.ATTEMPT_UNANSWERED,
        EventKind.ATTEMPT_ANSWERED,
    ]
    assert events["j3"][-1].detail == {"state": "abandoned", "error": "disk full"}
    linked = store.queries.events(many, [EventKind.DUPLICATE, EventKind.FAX_SENT])
    assert {job_id: [e.kind for e in found] for job_id, found in linked.items() if found} == {
        "j1": [EventKind.FAX_SENT],
        "j2": [EventKind.DUPLICATE],
    }


def test_inbound_newest_first(store: AdminStore) -> None:
    store.add_inbound("in1", did="0312345678", pages=2)
    store.add_inbound("in2", did="0312345679")
    store.add_inbound("in1", did="again")  # a repeated call keeps the first record
    store.inbound_delivered("in1")
    found = store.queries.inbound()
    assert [(f.id, f.detail) for f in found] == [
        ("in2", {"did": "0312345679"}),
        ("in1", {"did": "0312345678", "pages": 2}),
    ]
    assert found[0].delivered is None and found[1].delivered is not None
    assert [f.id for f in store.queries.inbound(limit=1)] == ["in2"]
    assert store.queries.inbound(since=found[0].received + 1) == []
