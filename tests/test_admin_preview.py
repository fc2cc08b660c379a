"""A preview in the admin's commands: listed and shown as a preview (not as a fax sent or
failed), counted apart in `stats`, neither cancelled nor resent, never dialled."""

from __future__ import annotations

import pytest

from infra.mail import Attachment, build_message
from infra.pdfs import make_pdf
from test_admin import ALICE, Site, site  # noqa: F401 - the fixture

pytestmark = pytest.mark.postfix

PREVIEW = "fax+preview+0312345678@example.jp"


def test_a_preview_is_listed_as_one_and_never_dialled(site: Site) -> None:  # noqa: F811
    message = build_message(
        from_addr=ALICE,
        to=[PREVIEW],
        subject="check the layout",
        attachments=[Attachment(make_pdf(2), filename="doc.pdf")],
    )
    result = site.postfix.send(ALICE, [PREVIEW], site.signer.sign(message))
    assert result.data is not None and result.data.code == 250, result
    ((job_id, state),) = site.rows("SELECT id, state FROM jobs")
    assert state == "previewed"
    assert site.dispatched() == []

    listed = site.faxmail("jobs")
    assert listed.returncode == 0, listed.stderr
    (line,) = [row for row in listed.stdout.splitlines() if row.startswith(job_id)]
    assert "previewed" in line and "preview: pages mailed back, never dialled" in line
    assert [j["id"] for j in site.json("jobs", "--state", "previewed")["jobs"]] == [job_id]
    assert site.json("jobs", "--state", "sent,failed,queued")["jobs"] == []

    shown = site.faxmail("show", job_id)
    assert shown.returncode == 0, shown.stderr
    for fact in (
        f"job {job_id}: previewed (preview: pages mailed back, never dialled)",
        "mailed back to the sender as a preview",
        "none: a preview is never dialled",
        "previewed",
    ):
        assert fact in shown.stdout, f"{fact!r} not in:\n{shown.stdout}"
    detail = site.json("show", job_id)
    assert detail["result_mail"] is None and detail["attempts"] == []  # no result mail of its own
    assert [e["kind"] for e in detail["events"]] == ["previewed"]

    stats = site.json("stats")
    assert stats["total"]["faxes"] == 0 and stats["total"]["previews"] == 1
    assert stats["total"]["sent"] == 0 and stats["total"]["failed"] == 0
    text = site.faxmail("stats").stdout
    assert "none; 1 preview(s) mailed back, never dialled" in text

    cancelled = site.faxmail("cancel", job_id)
    assert cancelled.returncode == 1 and "was a preview" in cancelled.stderr
    resent = site.faxmail("resend", job_id)
    assert resent.returncode != 0 and "was a preview" in resent.stderr
    assert site.state(job_id) == "previewed" and site.dispatched() == []
