"""Send later, through the real Postfix and daemon: a Subject tag holds the job in faxmail's
queue until its time; a request that cannot be honoured is refused with its 550.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from infra.constants import BASE_POLICY, FAX
from infra.dkimkeys import Signer
from infra.faxstate import callfiles, final_reply, job_rows
from infra.mail import Attachment, build_message
from infra.milterproc import MilterProcess
from infra.pdfs import make_pdf
from infra.postfix import PostfixInstance
from infra.protocols import MakePostfix, StartMilter

pytestmark = pytest.mark.postfix

_PDF = make_pdf(1)


def send(postfix: PostfixInstance, signer: Signer, subject: str) -> str:
    message = build_message(
        from_addr="alice@example.jp",
        to=[FAX],
        subject=subject,
        attachments=[Attachment(_PDF, filename="a.pdf")],
    )
    return final_reply(postfix.send("alice@example.jp", [FAX], signer.sign(message)))


def not_before(milter: MilterProcess) -> list[float]:
    db = sqlite3.connect(Path(milter.settings["state_dir"]) / "faxmail.sqlite")
    try:
        return [float(at) for (at,) in db.execute("SELECT not_before FROM dispatch")]
    finally:
        db.close()


def test_subject_tag_holds_the_job_until_its_time_or_is_refused(
    start_milter: StartMilter, make_postfix: MakePostfix, dkim_keys: dict[str, Signer]
) -> None:
    milter = start_milter(None, BASE_POLICY + "send_later: {max_ahead_hours: 48}\n")
    postfix = make_postfix(milter)
    signer = dkim_keys["example.jp"]
    later = (datetime.now().astimezone() + timedelta(hours=3)).replace(second=0, microsecond=0)
    tag = f"[at {later:%Y-%m-%d %H:%M}]"
    reply = send(postfix, signer, f"order {tag}")
    assert reply.startswith("250"), reply
    assert [state for _, state in job_rows(milter)] == ["queued"]
    assert not_before(milter) == [later.timestamp()]
    assert callfiles(milter) == []  # it waits in faxmail's queue, not in Asterisk's
    # Too far ahead, past, or not a time: refused, never faxed at once.
    far = (datetime.now() + timedelta(days=5)).strftime("%Y-%m-%d %H:%M")
    for subject, why in (
        (f"order [at {far}]", "more than 48 hours ahead"),
        ("order [at 2020-01-01 09:00]", "already past"),
        ("order [at 25:00]", "is not a time"),
    ):
        reply = send(postfix, signer, subject)
        assert reply.startswith("550 5.5.4 the fax cannot be sent at the time"), reply
        assert why in reply, reply
    assert len(job_rows(milter)) == 1
