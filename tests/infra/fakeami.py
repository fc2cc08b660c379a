"""A tiny Asterisk Manager Interface on a loopback port, for the AMI client's unit tests.

It speaks the framing (banner line, "Key: value" CRLF lines, a blank line after each message),
checks the MD5-challenge Login against one user and secret, answers Originate as Asterisk
does when it queued an async call, and records every action it read. `mode` makes it
misbehave the ways a real host can: refuse the Originate, hang up or say nothing after it.
"""

from __future__ import annotations

import hashlib
import socket
import ssl
import threading
from dataclasses import dataclass, field
from typing import Literal

Mode = Literal[
    "ok",
    "refuse-originate",
    "close-after-originate",
    "silent-after-originate",
    "mute",
    "slow-login",
]


@dataclass
class FakeAmi:
    username: str = "faxmail"
    secret: str = "s3cret"
    mode: Mode = "ok"
    actions: list[list[tuple[str, str]]] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)
    tls: ssl.SSLContext | None = None  # server side: speak TLS, as manager.conf tlsenable

    def __post_init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.getsockname()[:2]
        return str(host), int(port)

    @property
    def endpoint(self) -> str:
        return f"{self.address[0]}:{self.address[1]}"

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._server.close()

    def originates(self) -> list[list[tuple[str, str]]]:
        return [a for a in self.actions if ("Action", "Originate") in a]

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            conn.settimeout(5)
            if self.tls is not None:
                try:
                    conn = self.tls.wrap_socket(conn, server_side=True)
                except (ssl.SSLError, OSError):
                    conn.close()  # the client gave up on our certificate
                    continue
            with conn:
                self._session(conn)

    def _session(self, conn: socket.socket) -> None:
        if self.mode == "mute":
            self._stop.wait(2)  # never a banner
            return
        conn.sendall(b"Asterisk Call Manager/9.0.0\r\n")
        reader = conn.makefile("rb")
        logged_in = False
        challenge = ""
        while True:
            message = self._read(reader)
            if message is None:
                return
            self.actions.append(message)
            headers = dict(message)
            action, action_id = headers.get("Action", ""), headers.get("ActionID", "")
            if action == "Challenge" and headers.get("AuthType") == "MD5":
                challenge = "840415273"
                text = (
                    f"Response: Success\r\nActionID: {action_id}\r\nChallenge: {challenge}\r\n\r\n"
                )
                conn.sendall(text.encode("ascii"))
            elif action == "Login" and self.mode == "slow-login":
                self._stop.wait(2)
                return
            elif action == "Login":
                key = hashlib.md5((challenge + self.secret).encode()).hexdigest()
                logged_in = (headers.get("Username"), headers.get("Key")) == (self.username, key)
                if not logged_in:
                    self._reply(conn, action_id, "Error", "Authentication failed")
                    return
                self._reply(conn, action_id, "Success", "Authentication accepted")
                conn.sendall(b"Event: FullyBooted\r\nPrivilege: system,all\r\nStatus: up\r\n\r\n")
            elif action == "Originate" and logged_in:
                if self.mode == "close-after-originate":
                    return
                if self.mode == "silent-after-originate":
                    self._stop.wait(2)
                    return
                if self.mode == "refuse-originate":
                    self._reply(conn, action_id, "Error", "Originate failed")
                else:
                    self._reply(conn, action_id, "Success", "Originate successfully queued")
            elif action == "Logoff":
                self._reply(conn, action_id, "Goodbye", "Thanks for all the fish.")
                return
            else:
                self._reply(conn, action_id, "Error", "Permission denied")

    def _read(self, reader: object) -> list[tuple[str, str]] | None:
        assert hasattr(reader, "readline")
        headers: list[tuple[str, str]] = []
        while True:
            try:
                line = reader.readline()
            except OSError:
                return None
            if not line:
                return None
            self.raw.append(line)
            text = line.decode("ascii", "replace")
            if text in ("\r\n", "\n"):
                if headers:
                    return headers
                continue
            key, _, value = text.rstrip("\r\n").partition(": ")
            headers.append((key, value))

    @staticmethod
    def _reply(conn: socket.socket, action_id: str, response: str, message: str) -> None:
        text = f"Response: {response}\r\nActionID: {action_id}\r\nMessage: {message}\r\n\r\n"
        conn.sendall(text.encode("ascii"))
