"""The daemon's own settings (read once at start). Every key has an embedded default."""

from __future__ import annotations

import socket as _socket
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .yamlfile import load_yaml


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Dns(_Strict):
    nameservers: tuple[str, ...] = ()  # empty: those of /etc/resolv.conf
    port: int = Field(default=53, ge=1, le=65535)
    timeout: float = Field(default=5.0, gt=0, le=60)


class Asterisk(_Strict):
    spool_dir: Path = Path("/var/spool/asterisk")  # outgoing/ is under it
    fax_dir: Path | None = None  # TIFFs of queued faxes; default <spool_dir>/fax
    user: str | None = "asterisk"  # call files must belong to Asterisk's user; None: keep ours

    @property
    def outgoing(self) -> Path:
        return self.spool_dir / "outgoing"

    @property
    def staging(self) -> Path:
        # Same filesystem as outgoing/, so the final rename is atomic.
        return self.spool_dir / "faxmail-staging"

    @property
    def faxes(self) -> Path:
        return self.fax_dir or self.spool_dir / "fax"


class Settings(_Strict):
    socket: str = "inet:8894@127.0.0.1"
    socket_group: str | None = "postfix"  # a unix socket is made 0660 with this group
    policy: Path | None = None  # None: the embedded default policy (allows nobody)
    state_dir: Path = Path("faxmail-state")  # job store, work files
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_file: Path | None = None  # None: standard error (journald under systemd)
    authserv_id: str = Field(default_factory=_socket.getfqdn)
    dns: Dns = Dns()
    asterisk: Asterisk = Asterisk()
    render_slots: int | None = Field(default=None, ge=1)  # None: one per CPU
    milter_timeout: int = Field(default=600, ge=10)  # seconds libmilter waits on Postfix

    @field_validator("socket")
    @classmethod
    def _socket_spec(cls, spec: str) -> str:
        if not (spec.startswith(("unix:", "local:", "inet:", "inet6:"))):
            raise ValueError(
                "socket must look like unix:/run/faxmail/milter.sock or inet:PORT@HOST"
            )
        return spec


def load_settings(path: Path | None) -> Settings:
    return Settings() if path is None else load_yaml(path, Settings)
