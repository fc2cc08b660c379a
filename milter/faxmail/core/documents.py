"""The value passed from attachment extraction to rendering."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

# Office files and text attachments, converted to PDF by LibreOffice (render/office.py) first.
OfficeKind = Literal["docx", "doc", "xlsx", "xls", "odt", "ods", "odp", "rtf", "pptx", "txt"]
OFFICE_KINDS: frozenset[str] = frozenset(get_args(OfficeKind))
DocumentKind = Literal["pdf", "tiff", "png", "jpeg"] | OfficeKind


@dataclass(frozen=True)
class Document:
    """One attachment to fax, already written to disk by us.

    `path` lies in the job's private work dir under a name we chose (never the attachment's
    own name, which is untrusted). `label` names the attachment in replies and logs, e.g.
    "attachment 2 (report.pdf)", and is already printable-safe.
    """

    kind: DocumentKind
    path: Path
    label: str
