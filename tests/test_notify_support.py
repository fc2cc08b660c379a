"""Shared pieces of the faxmail-notify tests (no tests here): a notify installation in a temp
dir — settings, policy, job store, Asterisk spool, inbox — and fax TIFFs like spandsp writes.

faxmail-notify always runs as a process: through the shipped dialplan's System() lines
(`NotifyEnv.dialplan`, via /bin/sh) or with an explicit argv (`NotifyEnv.notify`).
"""

from __future__ import annotations

import email
import email.message
import email.policy
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from faxmail.asterisk.spool import Spool
from faxmail.core.policy import Policy
from faxmail.core.settings import load_settings
from faxmail.core.yamlfile import load_yaml
from faxmail.outbound.dispatch import Dispatcher
from faxmail.store.sqlite import Job, RateLimits, SqliteStore
from infra.pdfs import make_pdf
from test_notify_dialplan import Dialplan, Ran

BIN = Path(sys.executable).parent
NOTIFY = BIN / "faxmail-notify"

POLICY = """\
language: ja
admin_cc: null
notify:
  from_address: "FAX Gateway <fax-gw@example.jp>"
  keep_sent_tiff_days: 0
inbound:
  routes:
    "0312345678": [sales@example.jp, boss@other.example]
  default: [fax-inbox@example.jp]
"""

RESOLUTIONS = {"fine": "204x196", "standard": "204x98"}


def _run(argv: Sequence[str]) -> None:
    subprocess.run(list(argv), check=True, capture_output=True, timeout=120)


def fax_tiff(path: Path, resolutions: Sequence[str] = ("fine",), text: str = "Fax page") -> Path:
    """A TIFF as spandsp's ReceiveFAX writes it: CCITT G3 2-D, LSB-first bit order, one strip
    per page, 1728 px wide; one text page per entry of `resolutions` ("fine" or "standard")."""
    with tempfile.TemporaryDirectory(prefix="fxm-tiff-") as tmp:
        pages = []
        for number, resolution in enumerate(resolutions, 1):
            pdf = Path(tmp) / f"{number}.pdf"
            pdf.write_bytes(make_pdf(1, f"{text} {number}"))
            page = Path(tmp) / f"{number}.tif"
            _run(
                ["gs", "-q", "-dSAFER", "-dBATCH", "-dNOPAUSE", "-sDEVICE=tiffg32d",
                 f"-r{RESOLUTIONS[resolution]}", "-sPAPERSIZE=a4", "-dFIXEDMEDIA",
                 "-dPDFFitPage", f"-sOutputFile={page}", str(pdf)]
            )  # fmt: skip
            pages.append(str(page))
        _run(["tiffcp", "-c", "g3:2d:fill", "-f", "lsb2msb", "-r", "100000", *pages, str(path)])
    return path


def sent_tiff(path: Path, pages: int = 1) -> Path:
    """A TIFF as faxmail-milter renders it (Ghostscript tiffg4, 204x196, A4)."""
    with tempfile.TemporaryDirectory(prefix="fxm-tiff-") as tmp:
        pdf = Path(tmp) / "doc.pdf"
        pdf.write_bytes(make_pdf(pages, "Sent page"))
        _run(
            ["gs", "-q", "-dSAFER", "-dBATCH", "-dNOPAUSE", "-sDEVICE=tiffg4", "-r204x196",
             "-sPAPERSIZE=a4", "-dFIXEDMEDIA", "-dPDFFitPage", f"-sOutputFile={path}", str(pdf)]
        )  # fmt: skip
    return path


class NotifyEnv:
    """A faxmail-notify installation under `root`, handing mail to SMTP at `smtp_port`."""

    def __init__(self, root: Path, smtp_port: int, policy: str = POLICY) -> None:
        self.root = root
        self.asterisk = root / "asterisk"
        self.outgoing = self.asterisk / "outgoing"
        self.faxes = self.asterisk / "fax"
        self.inbox = self.asterisk / "fax-in"
        for folder in (self.outgoing, self.asterisk / "faxmail-staging", self.faxes, self.inbox):
            folder.mkdir(parents=True)
        self.state = root / "state"
        self.log_file = root / "notify.log"
        self.policy_path = root / "policy.yaml"
        self.settings_path = root / "settings.yaml"
        self.settings: dict[str, Any] = {
            "state_dir": str(self.state),
            "policy": str(self.policy_path),
            "log_level": "debug",
            "asterisk": {"spool_dir": str(self.asterisk), "user": None},
            "mail": {"transport": "smtp", "host": "127.0.0.1", "port": smtp_port},
            "notify": {"inbox_dir": str(self.inbox), "log_file": str(self.log_file)},
        }
        self.write_policy(policy)
        self.write_settings()
        self.dialplan = Dialplan(
            {
                "FAXMAIL_NOTIFY": str(NOTIFY),
                "FAXMAIL_SETTINGS": str(self.settings_path),
                "FAXMAIL_INBOX": str(self.inbox),
            }
        )

    @property
    def spool(self) -> Path:
        return self.state / "notify-spool"

    def write_policy(self, text: str) -> None:
        self.policy_path.write_text(text)

    def write_settings(self, **mail: Any) -> None:
        self.settings["mail"].update(mail)
        self.settings_path.write_text(yaml.safe_dump(self.settings, allow_unicode=True))

    def log(self) -> str:
        return self.log_file.read_text() if self.log_file.exists() else ""

    # --- the job store, as the milter leaves it -------------------------------------------

    def add_job(self, job_id: str = "0123456789abcdef", pages: int = 1, **changes: Any) -> Job:
        tiff = sent_tiff(self.faxes / f"{job_id}.tif", pages)
        values: dict[str, Any] = {
            "id": job_id,
            "created": time.time(),
            "state": "queueing",
            "sender": "alice@example.jp",
            "envelope_sender": "alice@example.jp",
            "author": "alice@example.jp",
            "reply_to": None,
            "subject": "見積書の送付 / quotation",
            "number_given": "03-1234-5678",
            "number_e164": "+81312345678",
            "number_dialled": "0312345678",
            "pages": pages,
            "digest": job_id,
            "message_id": f"<{job_id}@example.jp>",
            "proof": "dkim",
            "dkim_domain": "example.jp",
            "language": "ja",
            "tiff": str(tiff),
            "render_seconds": 0.1,
            "tiff_bytes": tiff.stat().st_size,
        }
        values.update(changes)
        job = Job(**values)
        store = SqliteStore(self.state / "faxmail.sqlite")
        try:
            assert store.admit(job, RateLimits(None, None), 0) == "admitted"
            store.set_state(job.id, "queued", "spooled")
        finally:
            store.close()
        return job

    def query(self, sql: str, *args: object) -> list[tuple[Any, ...]]:
        db = sqlite3.connect(self.state / "faxmail.sqlite")
        try:
            return db.execute(sql, args).fetchall()
        finally:
            db.close()

    def job_state(self, job_id: str) -> str:
        return str(self.query("SELECT state FROM jobs WHERE id = ?", job_id)[0][0])

    def dispatch(self, at: float) -> Path:
        """Run the milter's dispatcher once at time `at`; the one call file it placed."""
        settings = load_settings(self.settings_path)
        policy = load_yaml(self.policy_path, Policy)
        store = SqliteStore(self.state / "faxmail.sqlite")
        try:
            spool = Spool.from_settings(settings.asterisk)
            Dispatcher(
                spool, store, lambda: policy, "test", lambda: datetime.fromtimestamp(at, UTC)
            ).tick()
        finally:
            store.close()
        (callfile,) = self.outgoing.glob("*.call")
        return callfile

    # --- running notify ---------------------------------------------------------------------

    def notify(self, *argv: str, env: dict[str, str] | None = None) -> Ran:
        """faxmail-notify with this argv, no shell in between (`env`: added variables)."""
        result = subprocess.run(
            [str(NOTIFY), f"--settings={self.settings_path}", *argv],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env={**os.environ, **(env or {})},
        )
        return Ran(" ".join(argv), result.returncode, result.stderr)

    def spooled(self) -> list[str]:
        if not self.spool.is_dir():
            return []
        return sorted(p.name for p in self.spool.iterdir() if not p.name.startswith("."))


def parse(raw: bytes) -> email.message.EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    return message


def body_text(message: email.message.EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def attachments(message: email.message.EmailMessage) -> dict[str, bytes]:
    found = {}
    for part in message.iter_attachments():
        assert isinstance(part, email.message.EmailMessage)
        found[part.get_filename() or "?"] = part.get_payload(decode=True)
    return found  # type: ignore[return-value]
