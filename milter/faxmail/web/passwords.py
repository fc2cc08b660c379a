"""The status page's logins: scrypt hashes in settings `web.users`, checked in constant time.

A hash reads `scrypt:N:r:p$salt$key` (base64), the form `faxmail web passwd` prints: the cost
travels with the hash, so raising it later leaves the old lines working.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

# About 0.1 s and 32 MiB per check on a small server: slow for a guesser, fine for a login.
COST_N = 2**15
BLOCK_R = 8
PARALLEL_P = 1
_MAXMEM = 256 * 1024 * 1024


class BadHash(ValueError):
    """A `web.users` value that is not a hash `faxmail web passwd` could have made."""


@dataclass(frozen=True)
class PasswordHash:
    n: int
    r: int
    p: int
    salt: bytes
    key: bytes

    @classmethod
    def parse(cls, text: str) -> PasswordHash:
        try:
            params, salt, key = text.split("$")
            scheme, n, r, p = params.split(":")
            parsed = cls(int(n), int(r), int(p), _unb64(salt), _unb64(key))
        except ValueError as exc:
            raise BadHash("not of the form scrypt:N:r:p$salt$key") from exc
        if scheme != "scrypt" or parsed.n < 2 or parsed.n & (parsed.n - 1) or not parsed.key:
            raise BadHash("not of the form scrypt:N:r:p$salt$key (N a power of 2)")
        if 128 * parsed.r * parsed.n > _MAXMEM:
            raise BadHash(f"its cost needs more than {_MAXMEM // 2**20} MiB")
        return parsed

    def matches(self, password: str) -> bool:
        derived = _scrypt(password, self.salt, self.n, self.r, self.p, len(self.key))
        return hmac.compare_digest(derived, self.key)

    def __str__(self) -> str:
        return f"scrypt:{self.n}:{self.r}:{self.p}${_b64(self.salt)}${_b64(self.key)}"


def make_hash(password: str, *, n: int = COST_N) -> str:
    salt = secrets.token_bytes(16)
    key = _scrypt(password, salt, n, BLOCK_R, PARALLEL_P, 32)
    return str(PasswordHash(n, BLOCK_R, PARALLEL_P, salt, key))


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=length)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)
