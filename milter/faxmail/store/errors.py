"""The job store's own errors, the same whichever database is behind it.

Callers catch these, never a driver's exception: `StoreUnavailable` is a temporary fault (the
SMTP answer is a 4xx and the sender retries; notify keeps its spool and retries later),
`StoreSchemaOutdated` a store that must be migrated first (an admin's job, never implicit).
"""

from __future__ import annotations

MIGRATE_COMMAND = "faxmail store migrate"


class StoreUnavailable(Exception):
    """The store cannot be used right now (database down, locked, disk full, I/O error).

    `full`: the database's disk is full (the SMTP answer says so: 452 4.3.1).
    """

    def __init__(self, message: str, *, full: bool = False) -> None:
        super().__init__(message)
        self.full = full


class StoreSchemaOutdated(Exception):
    """The database has no faxmail schema, or an older one: refuse to start until migrated."""

    def __init__(self, location: str, found: int | None, wanted: int) -> None:
        have = "no faxmail schema" if found is None else f"schema version {found}"
        super().__init__(
            f"the job store {location} has {have}, this faxmail needs version {wanted}: "
            f"run `{MIGRATE_COMMAND}` (with the daemon's --settings) first"
        )
        self.found = found
        self.wanted = wanted
