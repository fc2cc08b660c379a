"""The pymilter edge: turn callbacks into typed values, ask the Gateway, answer Postfix.

The only module that imports Milter. It decides nothing itself. Every callback it implements is
answered (no @noreply): on a TCP socket, no-reply packets stall each mail 40 ms behind Nagle.
"""

from __future__ import annotations

import logging
import tempfile
import threading
from dataclasses import dataclass, field
from typing import Any

import Milter

from faxmail.core.replies import LOCAL_ERROR, MESSAGE_TOO_BIG, Refusal, Reply
from faxmail.core.session import Session, parse_ip
from faxmail.outbound.authresults import authentication_results
from faxmail.outbound.decision import Gateway, Queued
from faxmail.outbound.recipient import FaxRecipient

log = logging.getLogger("faxmail.milter")
trace = logging.getLogger(
    "faxmail.protocol"
)  # one debug line per callback: proves what Postfix sent

SPOOL_IN_MEMORY = 1024 * 1024  # bigger bodies go to a temporary file

# pymilter's answers, typed
CONTINUE: int = Milter.CONTINUE
ACCEPT: int = Milter.ACCEPT
REJECT: int = Milter.REJECT
TEMPFAIL: int = Milter.TEMPFAIL
DISCARD: int = Milter.DISCARD


@dataclass
class Counters:
    """Callbacks seen since start; logged at shutdown, read by tests through the log."""

    messages: int = 0
    fax_messages: int = 0
    headers: int = 0
    bodies: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, **deltas: int) -> None:
        with self.lock:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)

    def __str__(self) -> str:
        return (
            f"messages={self.messages} fax_messages={self.fax_messages} "
            f"header_callbacks={self.headers} body_callbacks={self.bodies}"
        )


COUNTERS = Counters()


@Milter.header_leading_space  # keep header bytes as sent: DKIM "simple" needs them exact
class FaxMilter(Milter.Base):  # type: ignore[misc]
    gateway: Gateway  # set by the daemon before serving
    authserv_id: str = "localhost"

    def __init__(self) -> None:
        self.client_ip: str | None = None
        self._reset()

    def _reset(self) -> None:
        self.session: Session | None = None
        self.fax_rcpts: list[FaxRecipient] = []
        self.other_rcpts = 0
        self.content: tempfile.SpooledTemporaryFile[bytes] | None = None
        self.size = 0

    def _answer(self, reply: Reply) -> int:
        self.setreply(reply.code, reply.enhanced, reply.text)
        return TEMPFAIL if reply.temporary else REJECT

    # --- callbacks, in protocol order ----------------------------------------------------
    def connect(self, hostname: str, family: int, hostaddr: Any) -> int:
        trace.debug("connect %s", hostname)
        self.client_ip = hostaddr[0] if isinstance(hostaddr, tuple) and hostaddr else None
        return CONTINUE

    def envfrom(self, mail_from: str, *params: str) -> int:
        trace.debug("envfrom")
        self._close_body()
        self._reset()
        COUNTERS.add(messages=1)
        self.session = Session(
            envelope_sender=_unbracket(mail_from),
            client_ip=parse_ip(self.client_ip),
            sasl_user=self.getsymval("{auth_authen}") or None,
        )
        return CONTINUE

    def envrcpt(self, to: str, *params: str) -> int:
        trace.debug("envrcpt")
        assert self.session is not None
        try:
            recipient = self.gateway.check_recipient(self.session, to)
        except Refusal as refusal:
            log.info(
                "reject rcpt=%s from=%s client=%s sasl=%s: %s",
                _unbracket(to),
                self.session.envelope_sender,
                self.client_ip,
                self.session.sasl_user,
                refusal.reply,
            )
            return self._answer(refusal.reply)
        except Exception:
            log.exception("rcpt=%s: internal error; answering %s", _unbracket(to), LOCAL_ERROR)
            return self._answer(LOCAL_ERROR)
        if recipient is None:
            self.other_rcpts += 1
        else:
            self.fax_rcpts.append(recipient)
        return CONTINUE

    def data(self) -> int:
        trace.debug("data")
        if not self.fax_rcpts:
            return ACCEPT  # ordinary mail: Postfix sends us no headers and no body
        COUNTERS.add(fax_messages=1)
        # The whole mail (header lines, empty line, body) as it arrives; read back in pieces.
        self.content = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115 - closed in close()/abort()
        return CONTINUE

    @Milter.decode("bytes")  # type: ignore[untyped-decorator]
    def header(self, name: str, value: bytes) -> int:
        COUNTERS.add(headers=1)
        trace.debug("header")
        line = (
            name.encode("ascii", "replace")
            + b":"
            + value.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
            + b"\r\n"
        )
        return self._spool(line)

    def eoh(self) -> int:
        trace.debug("eoh")
        return self._spool(b"\r\n")  # the empty line between header and body

    def body(self, chunk: bytes) -> int:
        COUNTERS.add(bodies=1)
        trace.debug("body")
        return self._spool(chunk)

    def _spool(self, data: bytes) -> int:
        """Append to the spooled mail, counting bytes as they arrive (clients need not declare
        SIZE): past the limit the mail is refused before it fills the disk."""
        self.size += len(data)
        limit = self.gateway.policy.limits.max_message_bytes
        if self.size > limit:
            return self._answer(MESSAGE_TOO_BIG.format(limit=limit))
        assert self.content is not None
        self.content.write(data)
        return CONTINUE

    def eom(self) -> int:
        trace.debug("eom")
        assert self.session is not None and self.content is not None
        session = Session(
            self.session.envelope_sender,
            self.session.client_ip,
            self.session.sasl_user,
            self.getsymval("i"),
        )
        try:
            with self.gateway.memory_slot(self.size):
                queued = self.gateway.decide(session, self.fax_rcpts, self.content)
        except Refusal as refusal:
            log.info(
                "reject queue_id=%s from=%s rcpts=%s: %s",
                session.queue_id,
                session.envelope_sender,
                ",".join(r.address for r in self.fax_rcpts),
                refusal.reply,
            )
            return self._answer(refusal.reply)
        except Exception:
            log.exception(
                "queue_id=%s: internal error; answering %s", session.queue_id, LOCAL_ERROR
            )
            return self._answer(LOCAL_ERROR)
        finally:
            self._close_body()  # the spooled mail is no longer needed
        return self._deliver(session, queued)

    def _deliver(self, session: Session, queued: Queued) -> int:
        """The fax is queued: take the fax recipients off the mail (or drop it)."""
        # pages counts the cover sheet and text pages faxmail drew ("added"), if any
        added = f" added={','.join(queued.added)}" if queued.added else ""
        for address, job_id in queued.jobs.items():
            log.info(
                "queued queue_id=%s job=%s from=%s proof=%s number=%s pages=%d%s",
                session.queue_id,
                job_id,
                queued.identity.author,
                queued.identity.proof,
                address,
                queued.pages,
                added,
            )
        for address in queued.previews:
            log.info(
                "preview queue_id=%s from=%s proof=%s number=%s pages=%d: mailed back, not dialled",
                session.queue_id,
                queued.identity.author,
                queued.identity.proof,
                address,
                queued.pages,
            )
        fax = queued.fax  # as decided, even if the policy was edited meanwhile
        if self.other_rcpts == 0 and fax.after_queueing == "discard":
            return DISCARD  # nobody else is to receive it
        # The leading space is ours to write: we negotiated header_leading_space.
        results = authentication_results(self.authserv_id, queued.identity)
        self.addheader("Authentication-Results", " " + results, 0)  # on top (RFC 8601)
        if queued.jobs:
            self.addheader("X-Faxmail-Job", " " + ", ".join(sorted(set(queued.jobs.values()))))
        if fax.after_queueing == "archive" and fax.archive_address:
            self.addrcpt(f"<{fax.archive_address}>")
        for recipient in self.fax_rcpts:
            self.delrcpt(f"<{recipient.address}>")
        return ACCEPT

    def abort(self) -> int:
        trace.debug("abort")
        self._close_body()
        self._reset()
        return CONTINUE

    def close(self) -> int:
        self._close_body()
        return CONTINUE

    def _close_body(self) -> None:
        if getattr(self, "content", None) is not None:
            assert self.content is not None
            self.content.close()
            self.content = None


def _unbracket(address: str) -> str:
    address = address.strip()
    return address[1:-1] if address.startswith("<") and address.endswith(">") else address
