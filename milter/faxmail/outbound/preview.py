"""A preview: the rendered pages mailed back to the sender instead of dialled.

The mail itself is notify's (its outbox spools and delivers every mail faxmail sends), but
notify is a higher layer than outbound: the decision hands a `PreviewRequest` to the
`PreviewMailer` the daemon gives it (daemon/runtime.py wires notify/preview.py in).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PreviewRequest:
    to: str  # the authenticated author: never Reply-To, never a mail-supplied address
    numbers: tuple[str, ...]  # as the sender wrote them
    subject: str
    pages: int
    tiff: Path  # the rendered fax; exists only while the mailer runs
    language: str


# Spools the preview mail before returning (OSError: nothing spooled, the mail gets a 4xx).
PreviewMailer = Callable[[PreviewRequest], None]
