"""What every job command (`faxmail jobs|show|cancel|resend|stats`) starts from: the settings,
the job store they name, the policy, and who is asking.

Exit codes: 0 done; 1 not found or refused, with a sentence saying why; 78 the settings, the
policy or the job store cannot be used.

Run as root, the commands first become Asterisk's user (settings `asterisk.user`), as the
daemon runs: whatever they write — call files, the notify spool, SQLite's -wal/-shm files next
to the store — must stay Asterisk's, or the daemon and faxmail-notify could no longer use it.
"""

from __future__ import annotations

import getpass
import os
import pwd
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from faxmail.core.exitcodes import EX_CONFIG, EX_REFUSED
from faxmail.core.policy import Policy
from faxmail.core.settings import Settings, load_settings
from faxmail.core.yamlfile import ConfigError, load_yaml
from faxmail.store.choose import open_store, sqlite_path
from faxmail.store.errors import StoreSchemaOutdated, StoreUnavailable
from faxmail.store.interface import AdminStore, JobQueries
from faxmail.store.model import Job

DEFAULT_SETTINGS = Path("/etc/faxmail/settings.yaml")

_JOB_REF = re.compile(r"[0-9a-f]{4,16}")
_SINCE = re.compile(r"(\d+)\s*([mhdw])")
_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class AdminError(Exception):
    """The command cannot do what was asked; `code` is its exit status."""

    def __init__(self, message: str, code: int = EX_REFUSED) -> None:
        super().__init__(message)
        self.code = code


def config_error(exc: ConfigError) -> AdminError:
    problems = "; ".join(str(p) for p in exc.problems)
    return AdminError(f"{exc.source}: {problems}", EX_CONFIG)


@dataclass
class Admin:
    settings: Settings
    settings_source: str
    store: AdminStore
    actor: str  # who asked: recorded with cancel and resend
    _policy: Policy | None = field(default=None, repr=False)

    @property
    def query(self) -> JobQueries:
        return self.store.queries

    def policy(self) -> Policy:
        """The policy the daemon would use now (settings `policy`, else the embedded one)."""
        if self._policy is None:
            try:
                path = self.settings.policy
                self._policy = Policy() if path is None else load_yaml(path, Policy)
            except ConfigError as exc:
                raise config_error(exc) from exc
            except OSError as exc:
                raise AdminError(f"cannot read the policy: {exc}", EX_CONFIG) from exc
        return self._policy

    def job(self, reference: str) -> Job:
        """The job `reference` names: its id, or a unique start of it (at least 4 digits)."""
        reference = reference.strip().lower()
        if not _JOB_REF.fullmatch(reference):
            raise AdminError(f"{reference!r:.40} is not a job id (16 hex digits, or their start)")
        found = self.store.get(reference) if len(reference) == 16 else None
        if found is not None:
            return found
        ids = self.query.ids_starting(reference)
        if not ids:
            raise AdminError(f"no job {reference} in {self.store.location}")
        if len(ids) > 1:
            raise AdminError(f"{reference} is the start of several jobs: {', '.join(ids)}")
        job = self.store.get(ids[0])
        assert job is not None
        return job

    def close(self) -> None:
        self.store.close()


def open_admin(settings_path: Path | None) -> Admin:
    """Raises AdminError (exit 78) for unusable settings or a missing job store."""
    actor = _actor()
    if settings_path is None and DEFAULT_SETTINGS.exists():
        settings_path = DEFAULT_SETTINGS
    source = str(settings_path) if settings_path else "the embedded default settings"
    try:
        settings = load_settings(settings_path)
    except ConfigError as exc:
        raise config_error(exc) from exc
    except OSError as exc:
        raise AdminError(f"cannot read the settings: {exc}", EX_CONFIG) from exc
    became = _become_spool_owner(settings)
    database = sqlite_path(settings)
    as_user = f" (as {became}, the settings' asterisk.user)" if became else ""
    try:
        if database is not None and not database.is_file():
            raise AdminError(
                f"there is no job store at {database} (state_dir of {source}); "
                "pass the daemon's settings with --settings",
                EX_CONFIG,
            )
        store = open_store(settings)
    except (OSError, StoreUnavailable, StoreSchemaOutdated) as exc:
        raise AdminError(f"cannot open the job store{as_user}: {exc}", EX_CONFIG) from exc
    return Admin(settings, source, store, actor)


def _actor() -> str:
    """The admin's name, also through sudo."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = str(os.getuid())
    sudo = os.environ.get("SUDO_USER")
    return f"{sudo} (as {name})" if sudo and sudo != name else name


def _become_spool_owner(settings: Settings) -> str | None:
    """As root: become asterisk.user (see the module's docstring); the user, or None."""
    user = settings.asterisk.user
    if os.geteuid() != 0 or user is None:
        return None
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return None  # the daemon would refuse to queue; reading needs nobody in particular
    try:
        os.setgroups(os.getgrouplist(user, entry.pw_gid))
        os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)
    except OSError as exc:
        raise AdminError(f"cannot become {user} (asterisk.user): {exc}", EX_CONFIG) from exc
    return user


def parse_since(text: str, now: float | None = None) -> float:
    """`30m`, `12h`, `2d`, `1w` ago, or a local date `2024-05-01` / time `2024-05-01 14:00`."""
    now = time.time() if now is None else now
    text = text.strip()
    match = _SINCE.fullmatch(text)
    if match:
        return now - int(match.group(1)) * _UNITS[match.group(2)]
    for fmt in ("%Y-%m-%d", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S"):
        try:
            return time.mktime(time.strptime(text, fmt))
        except ValueError:
            continue
    raise ValueError(f"{text!r} is neither a span like 2d, 12h, 30m, 1w nor a date like 2024-05-01")
