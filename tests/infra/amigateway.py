"""faxmail hosts that dial two Asterisk hosts through AMI, for tests/test_e2e_ami.py (one
faxmail host, the SQLite store) and tests/test_e2e_multi.py (two MX hosts on one PostgreSQL).

As infra.gateway builds the one-host gateway (Postfix, the milter with its dispatcher, notify
from this checkout), but the policy's lines name two Asterisk instances (`pbx1`, `pbx2`),
each an overlay of the chroot with AMI on its own loopback port. They share no files with
the milters: each one's spool, fax dir and inbox are inside its own overlay
(/var/spool/asterisk), and the dialplan fetches every TIFF from the job store. The one thing
they share is the job store, which their notify reports to: with SQLite, the first milter's
state directory bound into both; with ``store_url`` (PostgreSQL), that database, and each
Asterisk's notify has a state directory of its own. One faxmail host::

    asterisk/  the milter's own spool (outgoing/ stays empty: no line is local)
    state/     job store, notify-pbx1.log, notify-pbx2.log (owned by asterisk)
    etc/       policy.yaml, settings.yaml (the milter's), settings-pbx1.yaml, settings-pbx2.yaml
               (each host's notify: its own fax dir and inbox), ami.secret

With ``mx`` > 1 each faxmail host has that layout in ``mx1/``, ``mx2/``...: its own milter,
Postfix and dispatcher, the same policy and Asterisk hosts. notify mails the results through
the first host's Postfix.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from infra.asterisk import AsteriskInstance, StartAsterisk, manager_conf
from infra.farend import REMOTE_MODULES
from infra.gateway import REPO, MilterStarter, PostfixStarter, _make_dirs, asterisk_files
from infra.milterproc import MilterProcess
from infra.net import free_port, free_udp_port
from infra.postfix import PostfixInstance

HOSTS = ("pbx1", "pbx2")
AMI_USER = "faxmail"
#: Inside each Asterisk's overlay: not visible to the milter's host at all.
REMOTE_SPOOL = Path("/var/spool/asterisk")


@dataclass
class TwoHostGateway:
    base: Path
    #: One milter (with its dispatcher) and its Postfix per faxmail host, the first one first.
    milters: list[MilterProcess]
    postfixes: list[PostfixInstance]
    asterisks: dict[str, AsteriskInstance]
    #: Each Asterisk host's notify state directory (its log is there).
    notify_states: dict[str, Path]

    @property
    def milter(self) -> MilterProcess:
        return self.milters[0]

    @property
    def postfix(self) -> PostfixInstance:
        """The first host's Postfix: it also delivers every result mail."""
        return self.postfixes[0]

    @property
    def state(self) -> Path:
        return Path(self.milter.settings["state_dir"])

    def notify_log(self, host: str) -> str:
        path = self.notify_states[host] / f"notify-{host}.log"
        return path.read_text(errors="replace") if path.exists() else ""


def _host_settings(
    milter: Mapping[str, Any], host: str, postfix_port: int, state: Path
) -> dict[str, Any]:
    """What notify on `host` reads: the shared store, its own spool, fax dir and inbox."""
    return {
        **milter,
        "state_dir": str(state),
        "asterisk": {"spool_dir": str(REMOTE_SPOOL), "user": "asterisk"},
        "asterisk_hosts": {},
        "mail": {"transport": "smtp", "host": "127.0.0.1", "port": postfix_port},
        "notify": {
            "inbox_dir": str(REMOTE_SPOOL / "fax-in"),
            "log_file": str(state / f"notify-{host}.log"),
        },
    }


def _notify_state(base: Path, host: str, owner: tuple[int, int]) -> Path:
    """A state directory of notify's own on `host` (its spool and log), owned by asterisk."""
    state = base / f"notify-{host}"
    state.mkdir(mode=0o750)
    os.chown(state, *owner)
    return state


def build_two_host_gateway(
    base: Path,
    policy_yaml: str,
    *,
    owner: tuple[int, int],
    start_milter: MilterStarter,
    make_postfix: PostfixStarter,
    start_asterisk: StartAsterisk,
    mx: int = 1,
    store_url: str | None = None,
) -> TwoHostGateway:
    """Lay out ``base`` and start ``mx`` faxmail hosts (Postfix and the milter each) and both
    Asterisk hosts; the policy's lines name their host as ``pbx1`` / ``pbx2``. ``store_url``:
    the (migrated) PostgreSQL store of all of them, else the first host's SQLite file, which
    needs ``mx`` 1. The starters' fixtures stop them."""
    if store_url is None and mx != 1:
        raise ValueError("several faxmail hosts share a PostgreSQL store: give store_url")
    secret = secrets.token_hex(12)
    ports = {host: free_port() for host in HOSTS}
    milters, postfixes = [], []
    for n in range(1, mx + 1):
        spool, state, etc = _make_dirs(base if mx == 1 else base / f"mx{n}", owner)
        (etc / "policy.yaml").write_text(policy_yaml)
        secret_file = etc / "ami.secret"
        secret_file.write_text(secret + "\n")
        milter = start_milter(
            {
                "policy": str(etc / "policy.yaml"),
                "state_dir": str(state),
                "asterisk": {"spool_dir": str(spool), "user": "asterisk"},
                "asterisk_hosts": {
                    host: {
                        "ami": f"127.0.0.1:{ports[host]}",
                        "username": AMI_USER,
                        "secret_file": str(secret_file),
                        "down_for_s": 600,
                        "fax_dir": str(REMOTE_SPOOL / "fax"),
                    }
                    for host in HOSTS
                },
                **({} if store_url is None else {"store": {"url": store_url}}),
            }
        )
        milters.append(milter)
        postfixes.append(make_postfix(milter))
    first_state = Path(milters[0].settings["state_dir"])
    first_etc = Path(milters[0].settings["policy"]).parent
    asterisks, notify_states = {}, {}
    for host in HOSTS:
        state = first_state if store_url is None else _notify_state(base, host, owner)
        notify_states[host] = state
        settings_path = first_etc / f"settings-{host}.yaml"
        settings = _host_settings(milters[0].settings, host, postfixes[0].port, state)
        settings_path.write_text(yaml.safe_dump(settings, sort_keys=False))
        files = {**asterisk_files(), "manager.conf": manager_conf(ports[host], AMI_USER, secret)}
        ast = start_asterisk(
            REPO / "asterisk",
            files=files,
            binds=[state],
            ro_binds=[REPO, first_etc],
            env={"PYTHONPATH": f"{REPO}/milter"},
            extra_modules=["func_base64", *REMOTE_MODULES],
            SIP_PORT=free_udp_port("127.0.0.1", "127.0.0.2"),
            SETTINGS=settings_path,
        )
        for sub in ("fax", "fax-in"):
            folder = ast.host_path(REMOTE_SPOOL / sub)
            folder.mkdir(mode=0o750, exist_ok=True)
            os.chown(folder, ast.uid, ast.gid)
        asterisks[host] = ast
    return TwoHostGateway(base, milters, postfixes, asterisks, notify_states)
