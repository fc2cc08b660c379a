"""Asterisk's reports that came while the job store could not be reached, kept for `retry`.

With PostgreSQL down (or any `StoreUnavailable`), a call's end reported by the dialplan would
otherwise be lost: notify runs once per report and Asterisk does not ask twice. The report's
command line — already checked against its alphabets by the parser — is written whole as one
JSON file in `<notify spool>/.held-events/` (a dot name: the outbox's entries never include
it), and `faxmail-notify retry` (the systemd timer) hands each back to the same handlers,
oldest first, once the store answers. The saved words are parsed again, never given to a shell.

A report the store failed half-way through is held too: the handlers' claims (a round's
requeue, the job's one result mail) are taken once, so a second run of it queues no second
call and sends no second mail; at most an attempt is listed twice.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from faxmail.core.durable import fsync_dir
from faxmail.store.errors import StoreUnavailable

log = logging.getLogger("faxmail_notify.held")

HELD_DIR = ".held-events"
# The commands that report a call or a received fax (their effect is in the store).
HELD_COMMANDS = ("answered", "unanswered", "sent", "received")


def hold(spool_root: Path, argv: Sequence[str]) -> Path:
    """Keep the report `argv` (faxmail-notify's own arguments) for `replay`; its file."""
    folder = spool_root / HELD_DIR
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    name = f"{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(3)}.json"
    temporary = folder / f".tmp-{name}"
    with temporary.open("w", encoding="utf-8") as out:
        json.dump({"argv": list(argv)}, out)
        out.flush()
        os.fsync(out.fileno())
    final = folder / name
    temporary.rename(final)
    fsync_dir(folder)
    return final


def held(spool_root: Path) -> list[Path]:
    """The held reports, oldest first."""
    folder = spool_root / HELD_DIR
    return sorted(folder.glob("[0-9]*.json")) if folder.is_dir() else []


def replay(spool_root: Path, handle: Callable[[list[str]], None]) -> int:
    """Hand each held report to `handle` (its argv), oldest first, and drop it once handled.

    Stops at the first StoreUnavailable: the rest waits, in order, for the next retry.
    A report `handle` refuses with another error is logged and dropped (it would fail forever).
    Returns how many were handled.
    """
    done = 0
    for path in held(spool_root):
        try:
            argv = json.loads(path.read_text(encoding="utf-8"))["argv"]
            if not (isinstance(argv, list) and all(isinstance(word, str) for word in argv)):
                raise ValueError("not a list of words")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.error("held report %s unreadable, dropped: %s", path.name, exc)
            path.unlink(missing_ok=True)
            continue
        try:
            handle(argv)
        except StoreUnavailable as exc:
            log.warning("held reports wait: the job store still fails: %s", exc)
            break
        except Exception:  # one bad report must not hold back the others (logged)
            log.exception("held report %s failed; dropped", path.name)
        else:
            done += 1
            log.info("held report %s handled: %s", path.name, " ".join(argv[:3]))
        path.unlink(missing_ok=True)
    return done
