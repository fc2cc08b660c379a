"""HTTP Basic login against settings `web.users`.

Basic sends the password with every request (the page and each thumbnail), so a header that
once matched is remembered by its SHA-256 for a while instead of paying scrypt again; a wrong
one always pays it, for an unknown name too (so a guesser cannot tell names from timing).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import time
from collections.abc import Callable, Mapping

from faxmail.web.passwords import BadHash, PasswordHash, make_hash

REMEMBER_S = 300.0
_REMEMBERED_MAX = 256


class LoginConfigError(ValueError):
    """A `web.users` entry that cannot be used; the message names the key."""


class Logins:
    def __init__(
        self, users: Mapping[str, str], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._users: dict[str, PasswordHash] = {}
        for name, text in users.items():
            try:
                self._users[name] = PasswordHash.parse(text)
            except BadHash as exc:
                raise LoginConfigError(f"web.users.{name}: {exc}") from exc
        # An unknown name costs what a known one does (the largest configured cost).
        cost = max((h.n for h in self._users.values()), default=2**10)
        self._decoy = PasswordHash.parse(make_hash("decoy", n=cost))
        self._remembered: dict[bytes, tuple[str, float]] = {}
        self._clock = clock

    def __bool__(self) -> bool:
        return bool(self._users)

    def user(self, authorization: str | None) -> str | None:
        """The login an `Authorization: Basic ...` header proves, or None."""
        if not authorization:
            return None
        digest = hashlib.sha256(authorization.encode("utf-8", "replace")).digest()
        now = self._clock()
        known = self._remembered.get(digest)
        if known is not None and known[1] > now:
            return known[0]
        credentials = _basic(authorization)
        if credentials is None:
            return None
        name, password = credentials
        expected = self._users.get(name)
        if expected is None:
            self._decoy.matches(password)
            return None
        if not expected.matches(password):
            return None
        if len(self._remembered) >= _REMEMBERED_MAX:
            self._remembered.clear()
        self._remembered[digest] = (name, now + REMEMBER_S)
        return name

    def claimed_name(self, authorization: str | None) -> str | None:
        """The name a header claims (for the log line of a refusal), checked or not."""
        credentials = _basic(authorization or "")
        return None if credentials is None else credentials[0]


def _basic(authorization: str) -> tuple[str, str] | None:
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "basic" or not token:
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    name, colon, password = decoded.partition(":")
    return (name, password) if colon else None


class Throttle:
    """At most `limit` refused logins per client address in `window_s`; past that the client
    is answered 429 until its window ends, without spending scrypt on its guesses."""

    def __init__(
        self, limit: int = 10, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit, self.window_s, self._clock = limit, window_s, clock
        self._refused: dict[str, tuple[int, float]] = {}  # client → (count, window's start)

    def blocked(self, client: str) -> bool:
        count, start = self._refused.get(client, (0, 0.0))
        if self._clock() - start >= self.window_s:
            self._refused.pop(client, None)
            return False
        return count >= self.limit

    def refused(self, client: str) -> None:
        now = self._clock()
        count, start = self._refused.get(client, (0, now))
        if now - start >= self.window_s:
            count, start = 0, now
        if len(self._refused) >= 10_000:  # many addresses: forget, rather than grow
            self._refused.clear()
        self._refused[client] = (count + 1, start)
