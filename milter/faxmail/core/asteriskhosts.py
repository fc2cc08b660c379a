"""The settings' `asterisk_hosts`: the Asterisk servers that dial, by name.

A policy line names the host its calls go out on (`lines[].host`). Two kinds:
- `local` (always there, and the default of every line): the call file renamed into this
  host's own outgoing/ (the settings' `asterisk:` section);
- a name listed here: a remote Asterisk reached over its Manager Interface (AMI `Originate`).
  It fetches each fax's TIFF from the job store (the dialplan runs `faxmail-notify fetch`), so
  it needs no filesystem shared with this host; its notify reports to the same store.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

LOCAL = "local"  # the name of this host's own spool; never an entry of asterisk_hosts
HOST_NAME = r"^[A-Za-z0-9_-]{1,40}$"
_ENDPOINT = re.compile(
    r"^(?P<host>[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\]):(?P<port>[0-9]{1,5})$"
)


def _endpoint(value: str) -> str:
    match = _ENDPOINT.match(value)
    if match is None or not 1 <= int(match.group("port")) <= 65535:
        raise ValueError(f'{value!r} is not "host:port" (e.g. "10.0.0.5:5038")')
    return value


def _fax_dir(path: Path) -> Path:
    if not re.fullmatch(r"/[A-Za-z0-9/._]{1,900}", str(path)) or ".." in path.parts:
        raise ValueError(f"{str(path)!r:.80} is not an absolute path of letters, digits, / . _")
    return path


class AmiHost(BaseModel):
    """One remote Asterisk, dialled through AMI."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ami: Annotated[str, AfterValidator(_endpoint)]  # "10.0.0.5:5038"
    username: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")  # manager.conf's [section]
    secret_file: Path  # its secret: the first line of this file, not the YAML
    timeout_s: float = Field(default=5, gt=0, le=60)  # connect, login and Originate each
    down_for_s: float = Field(default=60, ge=1, le=3600)  # not tried again for this long
    # Where the dialplan's `fetch` writes TIFFs on that host: its notify's fax dir (asterisk.
    # fax_dir there). Letters, digits and / . _ only: the dialplan FILTER()s FAXFILE to those.
    fax_dir: Annotated[Path, AfterValidator(_fax_dir)] = Path("/var/spool/asterisk/fax")
    # TLS to the manager (manager.conf tlsenable, usually port 5039): the certificate must be
    # valid for the host part of `ami` and signed by `ca_file` (None: the system's CAs).
    tls: bool = False
    ca_file: Path | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, _, port = self.ami.rpartition(":")
        return host.strip("[]"), int(port)


def _check_names(hosts: dict[str, AmiHost]) -> dict[str, AmiHost]:
    for name in hosts:
        if not re.match(HOST_NAME, name):
            raise ValueError(f"host name {name!r}: letters, digits, _ and - only (1-40)")
        if name == LOCAL:
            raise ValueError(f"{LOCAL!r} is this host's own spool (the asterisk: section)")
    return hosts


AsteriskHosts = Annotated[dict[str, AmiHost], AfterValidator(_check_names)]
