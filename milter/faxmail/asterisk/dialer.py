"""How a call reaches the Asterisk that dials it: the dial interface and its two kinds.

The dispatcher places a call in three steps (outbound/dispatch.py says why in this order):
`stage` (everything that can fail locally, before the claim), its claim in the store, `dial`
(the moment Asterisk may call). A dialer is one Asterisk host:

- `CallFileDialer`: this host's spool. `stage` writes the call file whole in faxmail-staging/,
  `dial` renames it into outgoing/ (pbx_spool dials it), `discard` removes it.
- `AmiDialer`: a remote Asterisk. `stage` turns the call file's values into an AMI Originate
  (checked, nothing sent), `dial` logs in and sends it (a connection per call, asterisk/ami.py).
  The remote has no access to this host's files: the call tells the dialplan to fetch the TIFF
  from the job store first (FAXMAIL_FETCH=yes, FAXFILE a path in that host's fax_dir).

A `DialError` says whether the call surely did not reach Asterisk (the claim can be given
back) and whether the host is down (its lines are left out for a while).
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from faxmail.asterisk.ami import (
    AmiConnection,
    AmiError,
    new_action_id,
    originate,
    originate_headers,
)
from faxmail.asterisk.callfile import CallFile, render_callfile
from faxmail.asterisk.spool import Spool, callfile_name, publish, spool_callfile, tiff_name
from faxmail.core.asteriskhosts import LOCAL, AmiHost
from faxmail.core.settings import Settings

log = logging.getLogger("faxmail.dispatch")


class DialError(Exception):
    """The call was not handed over. `host_down`: the host cannot take calls now (leave it
    out for a while); `maybe_placed`: it was sent but not confirmed, so it may ring."""

    def __init__(self, message: str, *, host_down: bool, maybe_placed: bool = False) -> None:
        super().__init__(message)
        self.host_down = host_down
        self.maybe_placed = maybe_placed


@dataclass(frozen=True)
class StagedCall:
    """A call ready to hand over: its checked values, and its staged file if it has one."""

    job_id: str
    round: int
    callfile: CallFile
    path: Path | None = None


class Dialer(Protocol):
    @property
    def host(self) -> str:
        """The name lines use (`lines[].host`)."""
        ...

    @property
    def down_for_s(self) -> float:
        """How long the host is left out after it failed."""
        ...

    def stage(self, job_id: str, round_: int, call: CallFile) -> StagedCall:
        """Everything that may fail before the claim; OSError or ValueError when it does."""
        ...

    def dial(self, staged: StagedCall) -> None:
        """Hand the call to Asterisk; DialError when it was not (surely) handed over."""
        ...

    def discard(self, staged: StagedCall) -> None:
        """The call will not be dialled (its claim was lost or given back)."""
        ...


@dataclass
class CallFileDialer:
    """This host's Asterisk: a call file renamed into its outgoing/ (asterisk/spool.py)."""

    spool: Spool
    host: str = LOCAL
    down_for_s: float = 0.0  # a spool fault is this host's, not Asterisk being down

    def stage(self, job_id: str, round_: int, call: CallFile) -> StagedCall:
        staged = spool_callfile(
            render_callfile(call),
            staging_dir=self.spool.staging,
            outgoing_dir=self.spool.staging,
            name=callfile_name(job_id, round_),
            owner=self.spool.owner,
        )
        return StagedCall(job_id, round_, call, staged)

    def dial(self, staged: StagedCall) -> None:
        assert staged.path is not None  # stage() made it
        try:
            unsynced = publish(staged.path, self.spool.queued_callfile(staged.job_id, staged.round))
        except OSError as exc:
            raise DialError(str(exc), host_down=False) from exc
        if unsynced is not None:
            log.error(
                "job %s: call file queued, but its folder could not be synced: %s",
                staged.job_id,
                unsynced,
            )

    def discard(self, staged: StagedCall) -> None:
        if staged.path is not None:
            staged.path.unlink(missing_ok=True)


def remote_call(call: CallFile, job_id: str, fax_dir: Path) -> CallFile:
    """The call as a remote Asterisk gets it: the TIFF fetched from the store into its own
    fax_dir first, and attempt 1 (an AMI call has no AST_OUTGOING_ATTEMPT; a call file of
    faxmail's makes exactly one attempt)."""
    return replace(
        call,
        variables={
            **call.variables,
            "FAXFILE": str(fax_dir / tiff_name(job_id)),
            "FAXMAIL_FETCH": "yes",
            "AST_OUTGOING_ATTEMPT": "1",
        },
    )


@dataclass
class AmiDialer:
    """A remote Asterisk, through AMI Originate (asterisk/ami.py)."""

    host: str
    config: AmiHost

    @property
    def down_for_s(self) -> float:
        return self.config.down_for_s

    def stage(self, job_id: str, round_: int, call: CallFile) -> StagedCall:
        remote = remote_call(call, job_id, self.config.fax_dir)
        originate_headers(remote)  # ValueError now, before the claim, for a value AMI refuses
        return StagedCall(job_id, round_, remote)

    def dial(self, staged: StagedCall) -> None:
        secret = self._secret()
        action_id = new_action_id(f"faxmail-{staged.job_id}-r{staged.round}")
        try:
            with AmiConnection.open(
                self.config.address,
                self.config.username,
                secret,
                timeout=self.config.timeout_s,
                name=self.host,
                tls=tls_context(self.host, self.config),
            ) as connection:
                originate(connection, staged.callfile, action_id)
        except AmiError as exc:
            raise DialError(str(exc), host_down=True, maybe_placed=exc.maybe_done) from exc
        except ValueError as exc:  # the secret holds a character AMI cannot carry
            raise DialError(
                f"asterisk_hosts.{self.host}.secret_file: {exc}", host_down=True
            ) from exc
        log.info("host %s: Originate queued, ActionID %s", self.host, action_id)

    def discard(self, staged: StagedCall) -> None:
        pass  # nothing was written anywhere

    def _secret(self) -> str:
        try:
            # Bytes, not text: universal newlines would cut the line at a lone CR, silently.
            first = self.config.secret_file.read_bytes().split(b"\n", 1)[0]
            return first.removesuffix(b"\r").decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise DialError(
                f"cannot read asterisk_hosts.{self.host}.secret_file: {exc}", host_down=True
            ) from exc


def tls_context(host: str, config: AmiHost) -> ssl.SSLContext | None:
    """The TLS settings of AMI host `host` (None: plain TCP); DialError if its CA file is
    unusable (naming the key)."""
    if not config.tls:
        return None
    try:
        return ssl.create_default_context(cafile=str(config.ca_file) if config.ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise DialError(f"asterisk_hosts.{host}.ca_file: {exc}", host_down=True) from exc


def build_dialers(settings: Settings, spool: Spool) -> dict[str, Dialer]:
    """`local` (this host's spool) and one AmiDialer per entry of the settings' asterisk_hosts."""
    dialers: dict[str, Dialer] = {LOCAL: CallFileDialer(spool)}
    for name, config in settings.asterisk_hosts.items():
        dialers[name] = AmiDialer(name, config)
    return dialers


def unknown_hosts(lines: Mapping[str, str], dialers: Mapping[str, Dialer]) -> list[str]:
    """Problems for lines (name → host) whose host the settings do not have."""
    return [
        f"line {line}: host {host!r} (lines[].host) is not in the settings' asterisk_hosts"
        for line, host in lines.items()
        if host not in dialers
    ]
