"""The policy's words for what a fax holds beyond its attachments: the body, the cover sheet."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from faxmail.core.covertemplate import TemplateError, parse_template

# never: only attachments are faxed (a mail without one is refused, as before);
# when_no_attachment: a mail without attachment has its text faxed; always: the text first.
BodyPolicy = Literal["never", "when_no_attachment", "always"]
CoverPolicy = Literal["none", "always"]
MAX_TEMPLATE_BYTES = 16_384


def read_cover_template(path: Path) -> str:
    """The template file's text; ValueError (named by the caller's key) when unusable."""
    try:
        data = path.read_bytes()[: MAX_TEMPLATE_BYTES + 1]
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if len(data) > MAX_TEMPLATE_BYTES:
        raise ValueError(f"{path} is larger than {MAX_TEMPLATE_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not UTF-8 text: {exc}") from exc


def check_cover_template(path: Path | None) -> Path | None:
    """Validator of fax.cover_template: the file exists and is a template we can use."""
    if path is None:
        return None
    try:
        parse_template(read_cover_template(path))
    except TemplateError as exc:
        raise ValueError(f"{path}: {exc}") from exc
    return path
