"""A small synchronous client of the Asterisk Manager Interface: login, Originate, logoff.

Why not panoramisk (the maintained AMI client): it is asyncio-only, and the dispatcher is one
thread that places a call and goes on; an event loop per call (or a second thread to host one)
would be more code than the four messages faxmail needs. Why a connection per call: a call is
placed every few seconds at most, and a fresh connection can only find the host as it is now
(a long-lived one would need keep-alives and reconnects to notice a host that went away).

The protocol is lines of "Key: value" ended by CRLF, a message ended by an empty line. A value
holding CR or LF would start a header or a message of the sender's choosing, so every value is
checked against an allow-list (`_VALUE`) before anything is sent, and a name against `_KEY`;
the Originate's values come from a `CallFile`, itself checked against call-file allow-lists.
Nothing from a mail gets here: the job id, the dialled digits, our own paths and policy values.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import secrets
import socket
import ssl
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from faxmail.asterisk.callfile import CallFile

_KEY = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,39}")
# Printable ASCII without CR/LF or other controls; no leading or trailing blank (trimmed).
_VALUE = re.compile(r"(?:[!-~](?:[ -~]{0,1020}[!-~])?)?")
MAX_LINE = 8192  # a longer line from the server is a protocol error, not a memory sink
MAX_MESSAGES = 1000  # events skipped while waiting for one response

Header = tuple[str, str]


class AmiError(Exception):
    """The action was not done. `maybe_done`: it was sent whole but no answer came, so the
    host may have done it (an Originate may be ringing)."""

    def __init__(self, message: str, *, maybe_done: bool = False) -> None:
        super().__init__(message)
        self.maybe_done = maybe_done


def check_header(key: str, value: str) -> None:
    """Raise ValueError unless `key: value` is one header line as we mean it."""
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise ValueError(f"AMI header name not allowed: {key!r:.80}")
    if not isinstance(value, str) or not _VALUE.fullmatch(value):
        raise ValueError(f"AMI header {key} value not allowed: {value!r:.80}")


def render_action(action: str, action_id: str, headers: Sequence[Header]) -> bytes:
    """One AMI action's bytes; every name and value checked first."""
    lines = [("Action", action), ("ActionID", action_id), *headers]
    for key, value in lines:
        check_header(key, value)
    return "".join(f"{key}: {value}\r\n" for key, value in lines).encode("ascii") + b"\r\n"


def originate_headers(call: CallFile, timeout_ms: int | None = None) -> list[Header]:
    """Originate's headers for what a call file would say: the same channel, dialplan target
    and variables (one `Variable:` each: Asterisk splits a Variable header at commas, which
    no call-file value holds), answered asynchronously (the response says only "queued")."""
    headers: list[Header] = [
        ("Channel", call.channel),
        ("Context", call.context),
        ("Exten", call.extension),
        ("Priority", str(call.priority)),
        ("Timeout", str(timeout_ms if timeout_ms is not None else call.wait_time * 1000)),
    ]
    if call.caller_id is not None:
        headers.append(("CallerID", call.caller_id))
    headers.append(("Async", "true"))
    headers += [("Variable", f"{key}={call.variables[key]}") for key in sorted(call.variables)]
    for key, value in headers:
        check_header(key, value)
        if key == "Variable" and "," in value:
            raise ValueError(f"AMI variable with a comma not allowed: {value!r:.80}")
    return headers


def new_action_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(6)}"


@dataclass(frozen=True)
class Message:
    headers: tuple[Header, ...]

    def get(self, key: str) -> str | None:
        for name, value in self.headers:
            if name.lower() == key.lower():
                return value
        return None


class AmiConnection:
    """One logged-in manager session (a context manager: logoff and close at the end)."""

    def __init__(self, sock: socket.socket, name: str) -> None:
        self._sock = sock
        self._reader = sock.makefile("rb")
        self.name = name

    @classmethod
    def open(
        cls,
        address: tuple[str, int],
        username: str,
        secret: str,
        *,
        timeout: float,
        name: str,
        tls: ssl.SSLContext | None = None,
    ) -> AmiConnection:
        """Connect (over TLS with `tls`: the certificate checked for address's host), read the
        banner, log in (MD5 challenge); AmiError when any of it fails."""
        check_header("Username", username)
        check_header("Secret", secret)
        try:
            sock = socket.create_connection(address, timeout=timeout)
        except OSError as exc:
            raise AmiError(f"cannot connect to {address[0]}:{address[1]}: {exc}") from exc
        if tls is not None:
            try:
                sock = tls.wrap_socket(sock, server_hostname=address[0])
            except (ssl.SSLError, ssl.CertificateError, OSError) as exc:
                sock.close()
                raise AmiError(f"TLS with {address[0]}:{address[1]} failed: {exc}") from exc
        connection = cls(sock, name)
        try:
            banner = connection._line()
            if not banner.startswith("Asterisk Call Manager/"):
                raise AmiError(f"not an Asterisk manager: {banner!r:.80}")
            # MD5 challenge: the secret itself never crosses the network.
            challenge = connection.action("Challenge", [("AuthType", "MD5")]).get("Challenge")
            if not challenge:
                raise AmiError("the manager offered no MD5 challenge")
            key = hashlib.md5((challenge + secret).encode(), usedforsecurity=False).hexdigest()
            reply = connection.action(
                "Login",
                [("AuthType", "MD5"), ("Username", username), ("Key", key), ("Events", "off")],
            )
            if (reply.get("Response") or "").lower() != "success":
                raise AmiError(f"login as {username} refused: {reply.get('Message')!r:.120}")
        except AmiError as exc:
            connection.close()
            # Whatever happened to the login, no call was asked for yet.
            raise AmiError(str(exc), maybe_done=False) from exc
        except BaseException:
            connection.close()
            raise
        return connection

    def __enter__(self) -> AmiConnection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        with contextlib.suppress(AmiError, OSError):  # the session ends with the socket anyway
            self._send(render_action("Logoff", new_action_id("faxmail-logoff"), []))
        self.close()

    def close(self) -> None:
        self._reader.close()
        self._sock.close()

    def action(self, action: str, headers: Sequence[Header], action_id: str = "") -> Message:
        """Send one action and return its response (events in between are skipped)."""
        action_id = action_id or new_action_id("faxmail")
        self._send(render_action(action, action_id, headers))
        try:
            for message in self._messages():
                if message.get("Response") is not None and message.get("ActionID") in (
                    action_id,
                    None,
                ):
                    return message
        except AmiError as exc:
            raise AmiError(f"{action}: {exc}", maybe_done=True) from exc
        raise AmiError(f"{action}: no response among {MAX_MESSAGES} messages", maybe_done=True)

    def _send(self, data: bytes) -> None:
        try:
            self._sock.sendall(data)
        except OSError as exc:
            raise AmiError(f"cannot send to the manager: {exc}") from exc

    def _line(self) -> str:
        try:
            raw = self._reader.readline(MAX_LINE + 1)
        except TimeoutError as exc:
            raise AmiError("no answer in time") from exc
        except OSError as exc:
            raise AmiError(f"connection lost: {exc}") from exc
        if not raw:
            raise AmiError("connection closed by the manager")
        if len(raw) > MAX_LINE:
            raise AmiError("line too long")
        return raw.decode("utf-8", "replace").rstrip("\r\n")

    def _messages(self) -> Iterator[Message]:
        for _ in range(MAX_MESSAGES):
            headers: list[Header] = []
            while line := self._line():
                key, colon, value = line.partition(":")
                if colon:
                    headers.append((key.strip(), value.strip()))
                if len(headers) > 200:
                    raise AmiError("message too long")
            if headers:
                yield Message(tuple(headers))


def originate(connection: AmiConnection, call: CallFile, action_id: str) -> None:
    """Hand one call to Asterisk; AmiError unless it answered that it queued it."""
    reply = connection.action("Originate", originate_headers(call), action_id)
    if (reply.get("Response") or "").lower() != "success":
        raise AmiError(f"Originate refused: {reply.get('Message')!r:.120}")
