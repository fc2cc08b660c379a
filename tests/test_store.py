"""The job store: rate limits and duplicates, shared by threads, surviving a restart."""

from __future__ import annotations

import ast
import dataclasses
import sqlite3
import threading
import time
from enum import StrEnum
from pathlib import Path

from faxmail.store.model import (
    COUNTED_STATES,
    AttemptOutcome,
    Duplicate,
    EventKind,
    Job,
    JobState,
    RateExceeded,
    RateLimits,
)
from faxmail.store.sqlite import SqliteStore
from infra.storekinds import OpenStore

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


def test_rate_limit_counts_across_restart(open_store: OpenStore) -> None:
    limits = RateLimits(per_hour=2, per_day=None)
    store = open_store()
    assert store.admit(job(1), limits, 3600) == "admitted"
    assert store.admit(job(2), limits, 3600) == "admitted"
    store.close()
    store = open_store()
    assert store.admit(job(3), limits, 3600) == RateExceeded(2, "hour")
    assert store.rate_exceeded("ALICE@example.jp", limits, time.time()) == RateExceeded(2, "hour")
    store.set_state("j1", "abandoned", "test")  # abandoned jobs were never faxed: not counted
    assert store.admit(job(3), limits, 3600) == "admitted"


def test_duplicate_within_window(open_store: OpenStore) -> None:
    store = open_store()
    limits = RateLimits(None, None)
    assert store.admit(job(1, message_id="<same@x>"), limits, 3600) == "admitted"
    assert store.admit(job(2, message_id="<same@x>"), limits, 3600) == Duplicate("j1")
    assert store.admit(job(3, message_id="<same@x>", digest="other"), limits, 3600) == "admitted"
    assert [kind for _, kind, _ in store.events("j1")] == ["accepted", "duplicate"]


def test_threads_never_exceed_the_limit(open_store: OpenStore) -> None:
    store = open_store()
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


# --- the vocabulary: enums whose values are the stored strings -------------------------------

MILTER = Path(__file__).resolve().parent.parent / "milter" / "faxmail"


def unknown_words(path: Path) -> list[str]:
    """The states, event kinds and outcomes stored at `path` that no enum member has as value."""
    db = sqlite3.connect(path)
    try:
        found = [
            *(("jobs.state", s, JobState) for (s,) in db.execute("SELECT state FROM jobs")),
            *(("events.kind", k, EventKind) for (k,) in db.execute("SELECT kind FROM events")),
            *(
                ("events.detail.state", s, JobState)
                for (s,) in db.execute("SELECT json_extract(detail, '$.state') FROM events")
                if s is not None
            ),
            *(
                ("attempts.outcome", o, AttemptOutcome)
                for (o,) in db.execute("SELECT outcome FROM attempts")
            ),
            *(
                ("results.outcome", o, JobState)
                for (o,) in db.execute("SELECT outcome FROM results")
            ),
        ]
    finally:
        db.close()
    return sorted(
        {f"{column} {value!r}" for column, value, enum in found if value not in _values(enum)}
    )


def _values(enum: type[StrEnum]) -> set[str]:
    return {member.value for member in enum}


def test_the_enums_hold_exactly_the_stored_strings() -> None:
    """Changing a value changes the data in every store and the admin's output: pinned here."""
    assert [s.value for s in JobState] == [
        "queueing", "queued", "sending", "sent", "failed", "cancelled", "abandoned", "previewed"
    ]  # fmt: skip
    assert [o.value for o in AttemptOutcome] == ["answered", "unanswered", "success", "failed"]
    assert {k.value for k in EventKind} == {
        "accepted", "duplicate", "spooled", "spool-error", "repaired", "attempt-answered",
        "attempt-unanswered", "attempt-success", "attempt-failed", "requeued", "dialling",
            "undialled", "fax-sent",
        "fax-failed", "unanswered", "no-report", "cancelled", "result-already-claimed",
        "result-mailed", "resend-of", "resent", "lease-expired", "previewed",
    }  # fmt: skip
    assert "cancelled" not in COUNTED_STATES and "abandoned" not in COUNTED_STATES


def test_every_string_the_store_writes_is_an_enum_member(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    store = SqliteStore(path)
    try:
        limits = RateLimits(None, None)
        assert store.admit(job(1), limits, 3600) == "admitted"
        assert store.admit(job(2, message_id="<m1@x>"), limits, 3600) == Duplicate("j1")
        store.set_state("j1", JobState.QUEUED, EventKind.SPOOLED)
        for n, outcome in enumerate(AttemptOutcome, 1):
            store.record_attempt("j1", 1, n, outcome, JobState.SENDING, reason="17")
        assert store.claim_requeue("j1", 1)
        assert store.claim_result("j1", JobState.SENT, EventKind.FAX_SENT, pages=1)
        assert not store.claim_result("j1", JobState.FAILED, EventKind.FAX_FAILED)
        store.result_delivered("j1")
        store.add_event("j1", EventKind.RESENT, as_job="j3")
        assert [e.kind for e in store.queries.events(["j1"])["j1"]][-2:] == [
            EventKind.RESULT_MAILED,
            EventKind.RESENT,
        ]
        got = store.get("j1")
        assert got is not None and type(got.state) is JobState
        assert all(type(a.outcome) is AttemptOutcome for a in store.attempts("j1"))
    finally:
        store.close()
    assert unknown_words(path) == []
    # and the check itself finds a stranger
    db = sqlite3.connect(path)
    db.execute("UPDATE jobs SET state = 'lost'")
    db.commit()
    db.close()
    assert unknown_words(path) == ["jobs.state 'lost'"]


_STORE_WRITERS = {"set_state", "add_event", "claim_result", "record_attempt", "in_state"}


def test_callers_name_states_and_events_by_their_enum_members() -> None:
    """No bare "queued" or "fax-sent" goes to the store: a typo would be a new state."""
    bare = []
    for module in sorted(MILTER.rglob("*.py")):
        for node in ast.walk(ast.parse(module.read_text(), str(module))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            if node.func.attr not in _STORE_WRITERS:
                continue
            values = [*node.args, *(k.value for k in node.keywords if k.arg == "only_from")]
            for value in values:
                literals = value.elts if isinstance(value, ast.Tuple) else [value]
                bare += [
                    f"{module.relative_to(MILTER)}:{node.lineno} {lit.value!r}"
                    for lit in literals
                    if isinstance(lit, ast.Constant) and isinstance(lit.value, str)
                ]
    assert bare == []
