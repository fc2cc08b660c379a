"""A preview on the status page: a row in state "previewed", not counted as an outgoing fax
in the chart, no thumbnail (no TIFF is kept), not in any line's queue."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import yaml

from faxmail.admin.context import open_admin
from faxmail.outbound.preview import preview_job
from faxmail.store.model import JobState, RateLimits
from faxmail.store.sqlite import SqliteStore
from faxmail.web.views import status_page
from test_store import BASE

PREVIEW_ID = "ab" * 8


def test_a_preview_is_shown_as_one(tmp_path: Path) -> None:
    state, spool = tmp_path / "state", tmp_path / "spool"
    (spool / "fax").mkdir(parents=True)
    store = SqliteStore(state / "faxmail.sqlite")
    try:
        made = dataclasses.replace(BASE, id=PREVIEW_ID, created=time.time())
        assert store.admit(preview_job(made), RateLimits(None, None), 0) == "admitted"
    finally:
        store.close()
    settings = tmp_path / "settings.yaml"
    settings.write_text(
        yaml.safe_dump(
            {"state_dir": str(state), "asterisk": {"spool_dir": str(spool), "user": None}}
        )
    )
    admin = open_admin(settings)
    try:
        page = status_page(admin)
    finally:
        admin.close()
    (row,) = page.jobs
    assert (row.id, row.state, row.attempts, row.thumbnail) == (
        PREVIEW_ID,
        JobState.PREVIEWED,
        0,
        False,
    )
    assert row.last_result == "preview: pages mailed back, never dialled"
    assert sum(d.outgoing for d in page.days) == 0  # not an outgoing fax
    assert all(not line.dialling and not line.waiting for line in page.lines)
