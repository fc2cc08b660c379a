"""One faxmail host and two Asterisk hosts that it dials through AMI, for tests/test_e2e_ami.py.

As infra.gateway builds the one-host gateway (Postfix, the milter with its dispatcher, notify
from this checkout), but the policy's lines name two Asterisk instances (`pbx1`, `pbx2`),
each an overlay of the chroot with AMI on its own loopback port. They share no files with
the milter: each one's spool, fax dir and inbox are inside its own overlay
(/var/spool/asterisk), and the dialplan fetches every TIFF from the job store. The one thing
they share is the job store (SQLite here: the same state directory bound into both), which
their notify reports to::

    asterisk/  the milter's own spool (outgoing/ stays empty: no line is local)
    state/     job store, notify-pbx1.log, notify-pbx2.log (owned by asterisk)
    etc/       policy.yaml, settings.yaml (the milter's), settings-pbx1.yaml, settings-pbx2.yaml
               (each host's notify: its own fax dir and inbox), ami.secret
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
    milter: MilterProcess
    postfix: PostfixInstance
    asterisks: dict[str, AsteriskInstance]

    @property
    def state(self) -> Path:
        return self.base / "state"

    def notify_log(self, host: str) -> str:
        path = self.state / f"notify-{host}.log"
        return path.read_text(errors="replace") if path.exists() else ""


def _host_settings(milter: Mapping[str, Any], host: str, postfix_port: int) -> dict[str, Any]:
    """What notify on `host` reads: the shared store, its own spool, fax dir and inbox."""
    return {
        **milter,
        "asterisk": {"spool_dir": str(REMOTE_SPOOL), "user": "asterisk"},
        "asterisk_hosts": {},
        "mail": {"transport": "smtp", "host": "127.0.0.1", "port": postfix_port},
        "notify": {
            "inbox_dir": str(REMOTE_SPOOL / "fax-in"),
            "log_file": str(Path(milter["state_dir"]) / f"notify-{host}.log"),
        },
    }


def build_two_host_gateway(
    base: Path,
    policy_yaml: str,
    *,
    owner: tuple[int, int],
    start_milter: MilterStarter,
    make_postfix: PostfixStarter,
    start_asterisk: StartAsterisk,
) -> TwoHostGateway:
    """Lay out ``base`` and start Postfix, the milter and both Asterisk hosts; the policy's
    lines name their host as ``pbx1`` / ``pbx2``. The starters' fixtures stop them."""
    spool, state, etc = _make_dirs(base, owner)
    (etc / "policy.yaml").write_text(policy_yaml)
    secret = secrets.token_hex(12)
    secret_file = etc / "ami.secret"
    secret_file.write_text(secret + "\n")
    ports = {host: free_port() for host in HOSTS}
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
        }
    )
    postfix = make_postfix(milter)
    asterisks = {}
    for host in HOSTS:
        settings_path = etc / f"settings-{host}.yaml"
        settings = _host_settings(milter.settings, host, postfix.port)
        settings_path.write_text(yaml.safe_dump(settings, sort_keys=False))
        files = {**asterisk_files(), "manager.conf": manager_conf(ports[host], AMI_USER, secret)}
        ast = start_asterisk(
            REPO / "asterisk",
            files=files,
            binds=[state],
            ro_binds=[REPO, etc],
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
    return TwoHostGateway(base, milter, postfix, asterisks)
