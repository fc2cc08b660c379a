"""The notify spool: every mail waits here, on disk, until the mail system has taken it.

One directory per mail, named by what it is about (`result-<job>`, `in-<call>`, `mail-<random>`):

    <name>/meta.json     who gets it, what to clean up afterwards, the last error (entry.py)
    <name>/message.eml   the message, built once (a retry sends the same bytes, same Message-ID;
                         rebuilt only if notify.from_address changed before anyone got it)

A directory appears whole (built as `.tmp-*`, fsynced, renamed) and goes away in two steps:
renamed to `.done-<name>` once handed over, then removed. Deterministic names make creation
idempotent: a second `result-<job>` cannot be created while the first exists.

Locks (flock, released by the kernel if a process dies): each entry's directory is locked by
whoever delivers it, without waiting — a busy entry is somebody else's and is skipped. The
spool-wide `.lock` is held only for short check-then-act steps (see deliver.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from faxmail.core.durable import fsync_dir
from faxmail.notify.entry import MailMeta

META, MESSAGE = "meta.json", "message.eml"


@dataclass
class Entry:
    """A claimed entry: its directory (renamed when retired) and its meta, as last saved."""

    path: Path
    meta: MailMeta

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def message(self) -> Path:
        return self.path / MESSAGE


@dataclass(frozen=True)
class Retired:
    """A delivered entry still on disk: its directory and the files it has yet to delete."""

    path: Path
    remove_after: tuple[str, ...]


def _write_file(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically and durably (temporary name, fsync, rename)."""
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    fsync_dir(path.parent)


class NotifySpool:
    def __init__(self, root: Path) -> None:
        self.root = root
        # 0700: the spool holds received faxes.
        root.mkdir(mode=0o700, parents=True, exist_ok=True)

    def names(self) -> list[str]:
        """Entries waiting for delivery, oldest first."""
        found = []
        for path in self.root.iterdir():
            if not path.name.startswith(".") and path.is_dir():
                found.append((path.stat().st_mtime, path.name))
        return [name for _, name in sorted(found)]

    def exists(self, name: str) -> bool:
        return (self.root / name / META).exists()

    def create(self, name: str, meta: MailMeta, message: bytes | None = None) -> bool:
        """Create entry `name` whole; False (and nothing changed) when it exists already."""
        temporary = self.root / f".tmp-{name}-{secrets.token_hex(4)}"
        temporary.mkdir(mode=0o700)
        try:
            _write_file(temporary / META, meta.to_json())
            if message is not None:
                _write_file(temporary / MESSAGE, message)
            try:
                os.rename(temporary, self.root / name)
            except OSError:  # ENOTEMPTY/EEXIST: it exists
                if self.exists(name):
                    return False
                raise
        finally:
            shutil.rmtree(temporary, ignore_errors=True)
        fsync_dir(self.root)
        return True

    @contextlib.contextmanager
    def claim(self, name: str) -> Iterator[Entry | None]:
        """Lock entry `name` for delivery; None if another process has it or it is gone."""
        try:
            descriptor = os.open(self.root / name, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            yield None
            return
        try:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield None
                return
            # Delivered and renamed away between our open() and flock(): not ours to send.
            try:
                raw = (self.root / name / META).read_bytes()
            except FileNotFoundError:
                yield None
                return
            yield Entry(self.root / name, MailMeta.from_json(raw))  # ValueError: corrupt
        finally:
            os.close(descriptor)  # also releases the lock

    def read(self, name: str) -> MailMeta | None:
        """Entry `name`'s meta without claiming it; None when it is gone or unreadable."""
        try:
            return MailMeta.from_json((self.root / name / META).read_bytes())
        except (OSError, ValueError):
            return None

    def save_meta(self, entry: Entry) -> None:
        _write_file(entry.path / META, entry.meta.to_json())

    def save_message(self, entry: Entry, message: bytes) -> None:
        _write_file(entry.message, message)

    def retire(self, entry: Entry) -> Path:
        """Take a delivered entry out of the spool (one rename); return where it went."""
        done = self.root / f".done-{entry.name}"
        os.rename(entry.path, done)
        fsync_dir(self.root)
        entry.path = done
        return done

    def retired(self) -> list[Retired]:
        """Delivered entries whose clean-up was interrupted (an unreadable one deletes no file)."""
        found = []
        for path in self.root.glob(".done-*"):
            try:
                remove_after = MailMeta.from_json((path / META).read_bytes()).remove_after
            except (OSError, ValueError):
                remove_after = ()
            found.append(Retired(path, remove_after))
        return found

    def sweep_temporary(self) -> None:
        """Remove half-made entries of crashed runs (a live one is younger than a minute)."""
        for path in self.root.glob(".tmp-*"):
            with contextlib.suppress(OSError):
                if time.time() - path.stat().st_mtime > 60:
                    shutil.rmtree(path, ignore_errors=True)

    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        """The spool-wide lock, for short check-then-act steps across processes."""
        descriptor = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)
