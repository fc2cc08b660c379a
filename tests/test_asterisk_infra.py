"""Proves the Asterisk test infrastructure (tests/infra/asterisk.py, scripts/asterisk-chroot).

A real Asterisk 22 in the Debian sid chroot, with a minimal dialplan written here (not the
product's asterisk/ directory): a fax over a Local channel (G.711 audio), a fax between two
PJSIP endpoints on 127.0.0.1 and 127.0.0.2 (T.38), the ``failed`` extension of a call file
whose far end is busy, and a System() command running faxmail's Python code inside the
chroot and reaching the host over loopback. Each fax takes 15-20 s of real time.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageChops

from infra.asterisk import AsteriskInstance, StartAsterisk, mounts_under, processes_in
from infra.net import free_udp_port

pytestmark = pytest.mark.asterisk

REPO = Path(__file__).resolve().parent.parent

#: One marker line per event, easy to wait for: ``FAXTEST <event> key=value ...``.
EXTENSIONS = r"""
[general]
static = yes
writeprotect = yes

[fax-tx]
exten => send,1,Verbose(0,FAXTEST tx-start id=${TESTID})
 same => n,SendFAX(${FAXFILE})
 same => n,Hangup()
exten => failed,1,Set(N=${AST_OUTGOING_ATTEMPT})
 same => n,Verbose(0,FAXTEST failed id=${TESTID} reason=${REASON} attempt=${N})
exten => h,1,Set(R=status=${FAXSTATUS} pages=${FAXPAGES} mode=${FAXMODE} error=${FAXERROR})
 same => n,Verbose(0,FAXTEST tx-done id=${TESTID} ${R})
 same => n,System(echo ${FAXSTATUS} > @SPOOL_DIR@/tx-${TESTID}.status)

[fax-rx]
exten => rx,1,ReceiveFAX(@SPOOL_DIR@/rx/${TESTID}.tif)
 same => n,Hangup()
exten => busy,1,Busy(10)
exten => h,1,Set(R=status=${FAXSTATUS} pages=${FAXPAGES} mode=${FAXMODE} error=${FAXERROR})
 same => n,Verbose(0,FAXTEST rx-done id=${TESTID} ${R})

[fax-rx-sip]
exten => fax,1,ReceiveFAX(@SPOOL_DIR@/rx/sip.tif)
 same => n,Hangup()
exten => h,1,Set(R=status=${FAXSTATUS} pages=${FAXPAGES} mode=${FAXMODE} error=${FAXERROR})
 same => n,Verbose(0,FAXTEST rx-done id=sip ${R})

[probe]
exten => run,1,Answer()
 same => n,System(python3 @SPOOL_DIR@/probe.py @PROBE_PORT@ > @SPOOL_DIR@/probe.out 2>&1)
 same => n,Verbose(0,FAXTEST probe status=${SYSTEMSTATUS})
 same => n,Hangup()
"""

#: Endpoint fax-a (transport on 127.0.0.1) calls fax@127.0.0.2; that INVITE arrives at
#: transport b and is identified as endpoint fax-b by its source address. media_address is
#: needed: without it both sides put 127.0.0.1 in their SDP; RTP still flows (strict RTP
#: learns the real source) but T.38 (UDPTL) to 127.0.0.1 is lost and the fax fails with
#: "Received bad response to DCS or training".
PJSIP = """
[transport-a]
type = transport
protocol = udp
bind = 127.0.0.1:@SIP_PORT@

[transport-b]
type = transport
protocol = udp
bind = 127.0.0.2:@SIP_PORT@

[fax-a]
type = endpoint
transport = transport-a
context = fax-rx-sip
disallow = all
allow = alaw,ulaw
direct_media = no
t38_udptl = yes
t38_udptl_ec = redundancy
media_address = 127.0.0.1
aors = fax-a

[fax-a]
type = aor
contact = sip:fax@127.0.0.2:@SIP_PORT@

[fax-b]
type = endpoint
transport = transport-b
context = fax-rx-sip
disallow = all
allow = alaw,ulaw
direct_media = no
t38_udptl = yes
t38_udptl_ec = redundancy
media_address = 127.0.0.2

[fax-b]
type = identify
endpoint = fax-b
match = 127.0.0.1
"""

#: Run by System() inside the chroot: import every module of faxmail
#: (sid's Python and packages), then talk to the host over loopback.
PROBE = """\
import importlib, os, pkgutil, socket, sys
pkg = importlib.import_module("faxmail")
# all but the status page (faxmail.web), which never runs inside Asterisk's chroot
names = [m.name for m in pkgutil.walk_packages(pkg.__path__, "faxmail.")
         if not m.name.startswith("faxmail.web")]
failed = []
for name in sorted(names):
    try:
        importlib.import_module(name)
    except Exception as e:
        failed.append(f"{name}: {e!r}")
report = f"uid={os.getuid()} python={sys.version.split()[0]} modules={len(names)} failed={failed}"
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10) as s:
    s.sendall(report.encode() + b"\\n")
print(report)
"""

FAX_TIMEOUT = 120  # seconds; a one-page fax takes 15-20 s


def make_tiff(path: Path, text: str) -> None:
    """A one-page A4 fax TIFF (G4, 204x196 dpi, 1728 px wide) from Ghostscript."""
    subprocess.run(
        [
            "gs",
            "-q",
            "-dNOPAUSE",
            "-dBATCH",
            "-dSAFER",
            "-sDEVICE=tiffg4",
            "-r204x196",
            "-sPAPERSIZE=a4",
            f"-sOutputFile={path}",
            "-c",
            f"/Helvetica findfont 36 scalefont setfont 72 720 moveto ({text}) show showpage",
        ],
        check=True,
        timeout=60,
    )
    with Image.open(path) as im:
        assert im.size[0] == 1728


def same_pixels(a: Path, b: Path) -> bool:
    with Image.open(a) as ia, Image.open(b) as ib:
        if ia.size != ib.size:
            return False
        return ImageChops.difference(ia.convert("L"), ib.convert("L")).getbbox() is None


def marker(ast: AsteriskInstance, pattern: str, since: int, timeout: float = 60) -> re.Match[str]:
    """Wait for a ``Verbose(0,FAXTEST ...)`` line (not the "Executing ..." line before it)."""
    return ast.wait_for_log(rf"app_verbose\.c: FAXTEST {pattern}", timeout, since)


def fax_result(ast: AsteriskInstance, side: str, testid: str, since: int) -> dict[str, str]:
    """Wait for the ``FAXTEST <side>-done id=<testid>`` line; return its values."""
    m = marker(
        ast,
        rf"{side}-done id={testid} status=(?P<status>\S*) pages=(?P<pages>\S*)"
        r" mode=(?P<mode>\S*) error=(?P<error>.*)$",
        since,
        FAX_TIMEOUT,
    )
    return m.groupdict()


def call_file(channel: str, testid: str, faxfile: Path | None = None, **extra: str) -> str:
    lines = [
        f"Channel: {channel}",
        "Context: fax-tx",
        "Extension: send",
        "Priority: 1",
        "MaxRetries: 0",
        "RetryTime: 60",
        "WaitTime: 30",
        "Archive: yes",
        f"Setvar: TESTID={testid}",
    ]
    if faxfile is not None:
        lines.append(f"Setvar: FAXFILE={faxfile}")
    lines += [f"{k}: {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture
def spool(workdir: Path) -> Path:
    """Asterisk's spool: a host dir bind-mounted at the same path inside the chroot."""
    d = workdir / "asterisk"
    (d / "rx").mkdir(parents=True)
    (d / "fax").mkdir()
    return d


# ---------------------------------------------------------------- faxes


def test_audio_fax_over_local_channel(start_asterisk: StartAsterisk, spool: Path) -> None:
    ast = start_asterisk(files={"extensions.conf": EXTENSIONS}, spool_dir=spool, PROBE_PORT=0)
    sent = spool / "fax" / "audio.tif"
    make_tiff(sent, "faxmail audio loopback")
    os.chown(sent, ast.uid, ast.gid)
    mark = ast.log_mark()
    t0 = time.monotonic()
    ast.spool_call_file(call_file("Local/rx@fax-rx", "audio", sent))

    tx = fax_result(ast, "tx", "audio", mark)
    rx = fax_result(ast, "rx", "audio", mark)
    elapsed = time.monotonic() - t0
    assert tx["status"] == "SUCCESS", tx
    assert rx["status"] == "SUCCESS", rx
    assert tx["mode"] == rx["mode"] == "audio"
    assert rx["pages"] == "1"
    assert same_pixels(sent, spool / "rx" / "audio.tif")
    # System() in the h extension ran as asterisk and wrote into the shared spool.
    status_file = spool / "tx-audio.status"
    deadline = time.monotonic() + 10
    while not status_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert status_file.read_text().strip() == "SUCCESS"
    assert status_file.stat().st_uid == ast.uid
    print(f"audio fax: {elapsed:.1f} s")


def test_t38_fax_between_pjsip_endpoints(start_asterisk: StartAsterisk, spool: Path) -> None:
    port = free_udp_port("127.0.0.1", "127.0.0.2")
    ast = start_asterisk(
        files={"extensions.conf": EXTENSIONS, "pjsip.conf": PJSIP},
        spool_dir=spool,
        SIP_PORT=port,
        PROBE_PORT=0,
    )
    assert "transport-b" in ast.cli("pjsip show transports")
    sent = spool / "fax" / "t38.tif"
    make_tiff(sent, "faxmail T.38 loopback")
    os.chown(sent, ast.uid, ast.gid)
    mark = ast.log_mark()
    t0 = time.monotonic()
    ast.spool_call_file(call_file("PJSIP/fax-a", "t38", sent))

    tx = fax_result(ast, "tx", "t38", mark)
    rx = fax_result(ast, "rx", "sip", mark)
    elapsed = time.monotonic() - t0
    assert tx["status"] == rx["status"] == "SUCCESS", (tx, rx)
    assert tx["mode"] == rx["mode"] == "T38", (tx, rx)
    assert same_pixels(sent, spool / "rx" / "sip.tif")
    print(f"T.38 fax: {elapsed:.1f} s")


def test_busy_runs_failed_extension(start_asterisk: StartAsterisk, spool: Path) -> None:
    ast = start_asterisk(files={"extensions.conf": EXTENSIONS}, spool_dir=spool, PROBE_PORT=0)
    mark = ast.log_mark()
    ast.spool_call_file(call_file("Local/busy@fax-rx", "busy"), "busy.call")

    m = marker(ast, r"failed id=busy reason=(\d*) attempt=(\d+)", mark)
    assert m.groups() == ("5", "1")  # 5 = busy, first attempt
    # The call file is archived as Expired: its only attempt went unanswered.
    done = spool / "outgoing_done" / "busy.call"
    deadline = time.monotonic() + 30
    while "Status:" not in (done.read_text() if done.exists() else "") and (
        time.monotonic() < deadline
    ):
        time.sleep(0.1)
    assert "Status: Expired" in done.read_text()
    assert "FAXTEST tx-start id=busy" not in ast.log()[mark:]


# ---------------------------------------------------------------- the chroot itself


@pytest.fixture
def listener() -> Iterator[tuple[int, list[bytes]]]:
    """A one-shot TCP server on the host's 127.0.0.1; collects what it receives."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(60)
    got: list[bytes] = []

    def serve() -> None:
        try:
            conn, _ = srv.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(30)
            got.append(conn.makefile("rb").readline())

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield srv.getsockname()[1], got
    srv.close()
    t.join(5)


def test_system_runs_faxmail_inside_chroot(
    start_asterisk: StartAsterisk, spool: Path, listener: tuple[int, list[bytes]]
) -> None:
    port, got = listener
    (spool / "probe.py").write_text(PROBE)
    ast = start_asterisk(
        files={"extensions.conf": EXTENSIONS},
        spool_dir=spool,
        ro_binds=[REPO],
        env={"PYTHONPATH": f"{REPO}/milter"},
        PROBE_PORT=port,
    )
    mark = ast.log_mark()
    ast.spool_call_file(
        "Channel: Local/run@probe\nApplication: Wait\nData: 60\nSetvar: TESTID=probe\n"
    )
    m = marker(ast, r"probe status=(\w+)", mark)
    output = (spool / "probe.out").read_text()
    assert m.group(1) == "SUCCESS", output
    assert got, output
    line = got[0].decode()
    assert f"uid={ast.uid} " in line
    assert "failed=[]" in line, line
    print(line.strip())


def test_stop_unmounts_and_kills(start_asterisk: StartAsterisk, spool: Path) -> None:
    t0 = time.monotonic()
    ast = start_asterisk(files={"extensions.conf": EXTENSIONS}, spool_dir=spool, PROBE_PORT=0)
    started = time.monotonic() - t0
    assert "Asterisk 22" in ast.cli("core show version")
    assert ast.uid != 0
    # The spool is the same path on both sides.
    assert ast.host_path(spool / "x") == spool / "x"
    assert (ast.merged / str(spool).lstrip("/")).is_dir()
    merged = ast.merged
    assert processes_in(merged)
    t0 = time.monotonic()
    ast.stop()
    stopped = time.monotonic() - t0
    assert not processes_in(merged)
    assert not mounts_under(ast.base)
    assert not ast.base.exists()
    assert "Asterisk Ready" in ast.log()  # still readable after stop
    assert spool.is_dir()  # the bind source is untouched
    ast.stop()  # idempotent
    print(f"start {started:.2f} s, stop {stopped:.2f} s")
