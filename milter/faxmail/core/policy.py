"""The policy the admin edits: who may fax where, how often, and how faxes are made.

Every key is documented in README.md ("The policy"). Validation is pydantic's; errors name the key
path and line (yamlfile.py). The embedded default allows nothing until the admin edits it.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from faxmail.core.contentpolicy import BodyPolicy, CoverPolicy, check_cover_template
from faxmail.core.queuepolicy import (
    CHANNEL_PATTERN,
    DialLine,
    Lines,
    QuietWindow,
    Retries,
    SendLater,
    check_channel,
)

Proof = Literal["dkim", "sasl", "network"]
NumberType = Literal[
    "premium_rate",
    "shared_cost",
    "toll_free",
    "voip",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
    "mobile",
    "unknown",
]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_ADDRESS = re.compile(r"^([^@\s]+@|@)[A-Za-z0-9.-]+$")
_PREFIX = re.compile(r"^\+[0-9]{1,15}$")


class Strict(BaseModel):
    # Unknown keys are typos the admin wants to hear about.
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_rule(rule: str) -> str:
    """A destination rule: an E.164 prefix ("+8133") or a regular expression ("re:^\\+8150")."""
    if rule.startswith("re:"):
        try:
            re.compile(rule[3:])
        except re.error as exc:
            raise ValueError(f"bad regular expression {rule[3:]!r}: {exc}") from exc
    elif not _PREFIX.match(rule):
        raise ValueError(f"{rule!r} is neither an E.164 prefix like '+8133' nor 're:<regex>'")
    return rule


Rule = Annotated[str, Field(min_length=2)]


class DestinationRules(Strict):
    allow: tuple[Rule, ...] = ()  # empty: any number not denied
    deny: tuple[Rule, ...] = ()
    international: bool | None = None  # None: inherit

    @field_validator("allow", "deny")
    @classmethod
    def _rules(cls, rules: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_check_rule(r) for r in rules)


class Destinations(DestinationRules):
    region: str = "JP"  # how national numbers ("03-1234-5678") are read
    international: bool | None = False
    deny_types: tuple[NumberType, ...] = ("premium_rate", "shared_cost", "uan", "personal_number")
    # Emergency and other short numbers are always refused: a fax machine must never dial 110/119.

    @field_validator("region")
    @classmethod
    def _region(cls, region: str) -> str:
        import phonenumbers

        if region.upper() not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"unknown region {region!r} (use a two-letter code such as JP)")
        return region.upper()


class Limits(Strict):
    per_hour: int | None = Field(default=None, ge=0)
    per_day: int | None = Field(default=None, ge=0)
    max_pages: int | None = Field(default=None, ge=1)


class DefaultLimits(Limits):
    per_hour: int | None = Field(default=20, ge=0)
    per_day: int | None = Field(default=100, ge=0)
    max_pages: int | None = Field(default=50, ge=1)
    max_message_bytes: int = Field(default=20_000_000, ge=1000)


class Sender(Strict):
    address: str | None = None  # "alice@example.jp" or "@example.jp" (the From: address)
    sasl_user: str | None = None  # SASL login name ({auth_authen})
    networks: tuple[Network, ...] = ()  # client networks that vouch for this sender
    proof: tuple[Proof, ...] = ("dkim",)  # any one of these suffices
    destinations: DestinationRules = DestinationRules()
    limits: Limits = Limits()
    language: Literal["ja", "en"] | None = None  # of the result mail and the cover sheet
    # On the cover sheet: the sender's name when From: has no display name, and the company
    name: str | None = Field(default=None, max_length=100)
    company: str | None = Field(default=None, max_length=100)
    # None: authentication.unsigned_recipients decides (see there)
    unsigned_recipients: bool | None = None

    @field_validator("address")
    @classmethod
    def _address(cls, address: str | None) -> str | None:
        if address is not None and not _ADDRESS.match(address):
            raise ValueError(f"{address!r} is not an address or '@domain'")
        return address.lower() if address else None

    @model_validator(mode="after")
    def _consistent(self) -> Sender:
        if self.address is None and self.sasl_user is None:
            raise ValueError("a sender needs an address, a sasl_user, or both")
        if not self.proof:
            raise ValueError("proof must list at least one of dkim, sasl, network")
        if "sasl" in self.proof and self.sasl_user is None:
            raise ValueError("proof 'sasl' needs sasl_user")
        if "network" in self.proof and not self.networks:
            raise ValueError("proof 'network' needs networks")
        if self.address is None and "sasl" not in self.proof:
            raise ValueError("a sender without address must use proof 'sasl'")
        return self


class FaxAddress(Strict):
    local_part: str = Field(default="fax", pattern=r"^[A-Za-z0-9._-]+$")
    delimiter: str = Field(default="+", pattern=r"^[+\-_.=]$")
    domains: tuple[str, ...] = ()  # empty: fax addresses are recognised at no domain

    @field_validator("domains")
    @classmethod
    def _lower(cls, domains: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(d.lower().rstrip(".") for d in domains)


class Authentication(Strict):
    alignment: Literal["relaxed", "strict"] = "relaxed"
    sasl_requires_dkim: bool = False
    min_key_bits: int = Field(default=1024, ge=512)
    # Is the envelope sender checked at RCPT time (it may differ from From:, e.g. for bounces)?
    rcpt_sender_check: bool = True
    # Accept a DKIM signature that leaves the fax address's To:/Cc: unsigned (Microsoft 365
    # signs neither), if the signed Date: is this recent and its signed Message-ID is faxed
    # in one SMTP transaction only: README "Signers that leave To:/Cc: unsigned".
    unsigned_recipients: bool = False
    unsigned_recipients_max_age_minutes: float = Field(default=30, gt=0, le=1440)


class Fax(Strict):
    paper: Literal["a4", "letter"] = "a4"
    resolution: Literal["fine", "standard"] = "fine"
    # adaptive: each page's own paper and ink levels; fixed: the two thresholds below
    greys: Literal["adaptive", "fixed"] = "adaptive"
    whiten_threshold: float | None = Field(default=0.8, gt=0, le=1)
    blacken_threshold: float | None = Field(default=0.3, ge=0, lt=1)  # dark grey ink → black
    photo: bool = False
    # Ghostscript gets render_timeout_s plus render_timeout_per_page_s per page, then is killed.
    render_timeout_s: float = Field(default=20, gt=0, le=600)
    render_timeout_per_page_s: float = Field(default=5, ge=0, le=60)
    # One LibreOffice conversion of an Office file or text attachment, then it is killed.
    office_timeout_s: float = Field(default=60, gt=0, le=600)
    channel: str = Field(default="PJSIP/{number}@trunk", pattern=CHANNEL_PATTERN)
    # Asterisk's limit for both is 79 characters (AST_MAX_CONTEXT / AST_MAX_EXTENSION).
    context: str = Field(default="faxmail-send", pattern=r"^[A-Za-z0-9_+-]{1,79}$")
    extension: str = Field(default="send", pattern=r"^[A-Za-z0-9_+-]{1,79}$")
    max_retries: int = Field(default=2, ge=0, le=20)
    retry_time: int = Field(default=300, ge=10, le=86400)
    wait_time: int = Field(default=45, ge=5, le=600)
    caller_id: str | None = Field(default=None, pattern=r"^\+?[0-9]{1,20}$")
    # Printed atop each page by the receiving machine (T.30 allows 20 characters for the id).
    header_info: str | None = Field(
        default=None, max_length=100, pattern=r"^[A-Za-z0-9._-]+( [A-Za-z0-9._-]+)*$"
    )
    local_station_id: str | None = Field(default=None, pattern=r"^\+?[0-9]+( [0-9]+)*$")
    duplicate_window_hours: float = Field(default=24, ge=0)
    after_queueing: Literal["discard", "archive"] = "discard"
    archive_address: str | None = None
    # The mail's own text as pages, a cover sheet, a preview mailed back (README "The mail
    # body, the cover sheet and the preview"); validated in contentpolicy.py.
    body: BodyPolicy = "never"  # as before: a mail that forgot its attachment is refused
    cover: CoverPolicy = "none"
    cover_template: Annotated[Path | None, AfterValidator(check_cover_template)] = None
    preview: bool = True  # fax+preview+<number>@...: the rendered pages mailed back, not dialled

    @field_validator("channel")
    @classmethod
    def _channel(cls, channel: str) -> str:
        return check_channel(channel)

    @model_validator(mode="after")
    def _thresholds(self) -> Fax:
        if self.blacken_threshold is not None and self.blacken_threshold >= (
            self.whiten_threshold or 1.0
        ):
            raise ValueError("blacken_threshold must be below whiten_threshold")
        return self


_MAILBOX = re.compile(r"^[^@\s<>(),;:\"]+@[A-Za-z0-9.-]+\.[A-Za-z0-9-]+$")
_MAILBOX_WITH_NAME = re.compile(r"^(?:[^<>\r\n]{0,80}<([^<>\s]+)>|([^<>\s]+))$")
_DID = re.compile(r"^\+?[0-9]{1,20}$")


def _check_mailbox(address: str) -> str:
    if not _MAILBOX.match(address):
        raise ValueError(f"{address!r} is not a mail address like fax@example.jp")
    return address


Mailbox = Annotated[str, AfterValidator(_check_mailbox)]


class Notify(Strict):
    """Result mails of sent faxes (faxmail-notify, called by Asterisk)."""

    # From: of result and received-fax mails, e.g. "FAX <fax@example.jp>"; also the envelope
    # sender. None: faxmail@<this host's FQDN>, or @<first fax domain> (core/mailfrom.py).
    from_address: str | None = None
    attach_pdf: bool = True  # the sent document, as PDF, in the result mail
    # An answered call whose fax failed is never retried by Asterisk; this many more calls
    # are queued by faxmail (0: off, as in the seed). The result mail reports every attempt.
    fax_retries: int = Field(default=0, ge=0, le=5)
    admin_cc: Literal["always", "failed", "never"] = "always"  # when admin_cc gets a copy
    # The sent TIFF is kept this long after the job ended, so that `faxmail resend` can send it
    # again (pruned by `faxmail-notify retry`); 0: deleted with the result mail.
    keep_sent_tiff_days: float = Field(default=7, ge=0, le=366)

    @field_validator("from_address")
    @classmethod
    def _from(cls, value: str | None) -> str | None:
        if value is None:
            return None
        match = _MAILBOX_WITH_NAME.match(value.strip())
        if not match or not _MAILBOX.match(match.group(1) or match.group(2)):
            raise ValueError(f"{value!r} is not 'fax@example.jp' or 'Name <fax@example.jp>'")
        return value.strip()


class Inbound(Strict):
    """Received faxes: who gets them, by the number that was dialled (DID)."""

    # DID → mailboxes. Keys are read like fax numbers (destinations.region), so "0312345678"
    # and "+81312345678" are the same route.
    routes: dict[str, tuple[Mailbox, ...]] = Field(default_factory=dict)
    default: tuple[Mailbox, ...] = ()  # for a DID without route (and when none is given)
    preview_width: int = Field(default=400, ge=100, le=1728)  # PNG of page 1; pixels
    keep_tiff: bool = False  # False: the received TIFF is deleted once the mail is handed over

    @field_validator("routes")
    @classmethod
    def _routes(cls, routes: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        for did, addresses in routes.items():
            if not _DID.match(did):
                raise ValueError(f"route {did!r}: a DID is digits, optionally with a leading +")
            if not addresses:
                raise ValueError(f"route {did!r} has no addresses")
        return routes


class Policy(Strict):
    fax_address: FaxAddress = FaxAddress()
    senders: tuple[Sender, ...] = ()
    destinations: Destinations = Destinations()
    limits: DefaultLimits = DefaultLimits()
    authentication: Authentication = Authentication()
    fax: Fax = Fax()
    admin_cc: str | None = None
    language: Literal["ja", "en"] = "ja"
    notify: Notify = Notify()
    inbound: Inbound = Inbound()
    # The outbound queue (queuepolicy.py): which line, when to call again, when to wait.
    lines: Lines = ()
    retry: Retries = Retries()
    quiet_hours: tuple[QuietWindow, ...] = ()
    send_later: SendLater = SendLater()

    def dial_lines(self) -> tuple[DialLine, ...]:
        """The lines calls go out on: `lines`, or else fax.channel as one line, one channel."""
        return self.lines or (DialLine(name="default", channel=self.fax.channel, channels=1),)


DEFAULT_POLICY_YAML = """\
# faxmail policy: who may fax where. This embedded default allows nobody.
# Copy it to the file named by `policy:` in the daemon settings and edit it.
fax_address:
  local_part: fax          # fax+<number>@<domain>
  delimiter: "+"
  domains: []              # e.g. [example.jp]
senders: []                # e.g. - {address: "@example.jp", proof: [dkim]}
destinations:
  region: JP
  international: false
limits:
  per_hour: 20
  per_day: 100
  max_pages: 50
  max_message_bytes: 20000000
"""
