"""Hostile input end to end: each attack goes through the real Postfix to a fax address, signed
with a valid DKIM signature where the point is to get past authentication into extraction and
rendering (tests/infra/hostile.py builds the inputs).

For every input the test asserts the SMTP code and enhanced code, then that the gateway came
through whole: the milter is alive, none of its Ghostscript/qpdf/tiffinfo children remain (nor
orphans working on its files), its work dir is empty, nothing reached the Asterisk spool for a
refused mail, every Ghostscript run had -dSAFER (a recording `gs` wrapper is first on the
milter's PATH), the next normal fax mail gets 250 and its call file, and the thread count is
back to its baseline. libmilter serves sessions from a worker pool whose idle threads are in
the baseline, so one stuck worker shows once the pool has to grow: over the module's ~50 mails
a leak per mail would. Durations are printed for information only (the machine is shared).

One Postfix and one milter serve the whole module; the unit tests of each defence are in
test_extract.py, test_render.py and test_authenticate.py.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import struct
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import attach_log
from faxmail.asterisk.callfile import parse_callfile
from infra import hostile
from infra.constants import BASE_POLICY, FAX
from infra.dkimkeys import Signer, sign_with_times
from infra.dns import DnsServer, RawDnsResponder
from infra.faxstate import callfiles, final_reply, finish_calls, job_rows, spool_dir
from infra.mail import Attachment, address, build_message
from infra.milterproc import MilterProcess, faxmail_milter
from infra.pdfs import make_encrypted_pdf, make_pdf, png_bomb_bytes
from infra.postfix import PostfixInstance

pytestmark = pytest.mark.postfix

AUTHOR = "alice@example.jp"
POLICY = (
    BASE_POLICY
    + """\
limits: {per_hour: 100000, per_day: 100000, max_pages: 50}
fax:
  render_timeout_s: 4
  render_timeout_per_page_s: 1
  header_info: ACME Corp
  local_station_id: +81 3 1234 5678
"""
)
#: Above the 50 MB body, so that Postfix lets it through to the milter's own limit (20 MB).
POSTFIX_SIZE_LIMIT = 64 * 1024 * 1024
HELPERS = ("gs", "qpdf", "tiffinfo", "tiffcrop", "prlimit", "setpriv")


@dataclass
class Gateway:
    milter: MilterProcess
    postfix: PostfixInstance
    base: Path
    gs_log: Path  # one line per Ghostscript run: its arguments
    baseline_threads: int = 0

    @property
    def work(self) -> Path:
        return Path(self.milter.settings["state_dir"]) / "work"


# ---------------------------------------------------------------- process facts


def threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def descendants(pid: int) -> list[tuple[int, str]]:
    """(pid, command name) of every process below `pid`."""
    parents: dict[int, list[int]] = {}
    names: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        name, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :]
        ppid = int(rest.split()[1])
        parents.setdefault(ppid, []).append(int(entry))
        names[int(entry)] = name
    found: list[tuple[int, str]] = []
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append((child, names[child]))
            todo.append(child)
    return found


def strays(base: Path, milter_pid: int) -> list[str]:
    """Helper processes working on the milter's files outside its process tree (orphans of a
    killed parent are adopted by init)."""
    found = []
    children = {pid for pid, _ in descendants(milter_pid)}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in children:
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        helper = argv and Path(argv[0].decode(errors="replace")).name in HELPERS
        if helper and any(str(base).encode() in arg for arg in argv):
            found.append(b" ".join(argv).decode(errors="replace"))
    return found


def wait_until(condition: Callable[[], bool], timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def settled_threads(pid: int) -> int:
    """The thread count once it has stayed the same for a second."""
    last, since = threads(pid), time.monotonic()
    while time.monotonic() - since < 1.0:
        time.sleep(0.1)
        now = threads(pid)
        if now != last:
            last, since = now, time.monotonic()
    return last


# ---------------------------------------------------------------- the module's gateway


def gs_recorder(folder: Path, log: Path) -> Path:
    """A `gs` first on PATH that writes its arguments to `log`, then runs the real one."""
    real = shutil.which("gs")
    assert real is not None, "Ghostscript is not installed"
    folder.mkdir()
    script = folder / "gs"
    script.write_text(
        "#!/bin/sh\n"
        f"{{ for a in \"$@\"; do printf '[%s] ' \"$a\"; done; echo; }} >> '{log}'\n"
        f"exec '{real}' \"$@\"\n"
    )
    script.chmod(0o755)
    return folder


@pytest.fixture(scope="module")
def gateway(_dns_session: DnsServer) -> Iterator[Gateway]:
    base = Path(tempfile.mkdtemp(prefix="fxm-hostile-"))
    base.chmod(0o755)  # smtpd (user postfix) must reach the socket inside
    gs_log = base / "gs-argv.log"
    gs_log.touch()
    milter = faxmail_milter(
        base, dns=(_dns_session.host, _dns_session.port), policy_yaml=POLICY, log_level="info"
    )
    path = os.environ.get("PATH", "/usr/bin:/bin")
    milter.env = {**os.environ, "PATH": f"{gs_recorder(base / 'bin', gs_log)}:{path}"}
    postfix = PostfixInstance(
        milter.postfix_spec,
        message_size_limit=POSTFIX_SIZE_LIMIT,
        # As an MX treats mail from the internet: addresses in headers are not rewritten
        # (Postfix would re-quote `x;$(id)@example.jp` and so break the DKIM signature).
        extra_main_cf={"local_header_rewrite_clients": ""},
    )
    try:
        milter.start()
        postfix.start()
        yield Gateway(milter, postfix, base, gs_log)
    finally:
        milter.stop()
        postfix.cleanup()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def gw(gateway: Gateway, request: pytest.FixtureRequest, dkim_keys: dict[str, Signer]) -> Gateway:
    """The module's gateway, its logs attached to a failing test; warmed up once."""
    attach_log(request, "faxmail-milter log", gateway.milter.log)
    attach_log(request, "postfix maillog", gateway.postfix.log)
    if not gateway.baseline_threads:
        assert_next_fax_queued(gateway, dkim_keys["example.jp"])
        assert gateway.milter.pid is not None
        gateway.baseline_threads = settled_threads(gateway.milter.pid)
    return gateway


# ---------------------------------------------------------------- sending and checking


def fresh_id() -> str:
    return f"<{uuid.uuid4().hex}@example.jp>"


def fax_mail(attachments: list[Attachment], **kw: object) -> bytes:
    kw.setdefault("subject", "hostile")
    return build_message(
        from_addr=AUTHOR,
        to=[FAX],
        message_id=fresh_id(),
        attachments=attachments,
        **kw,  # type: ignore[arg-type]
    )


def raw_mail(mime: bytes, extra_headers: bytes = b"") -> bytes:
    """Our own headers, then `mime` (its Content-Type header, a blank line, its body)."""
    return hostile.mail_head(AUTHOR, FAX, fresh_id(), extra_headers) + mime


def assert_next_fax_queued(gw: Gateway, signer: Signer) -> None:
    finish_calls(gw.milter)  # the number is free again: the next fax is dialled at once
    before = len(callfiles(gw.milter))
    message = signer.sign(fax_mail([Attachment(make_pdf(1), filename="ok.pdf")]))
    reply = final_reply(gw.postfix.send(AUTHOR, [FAX], message))
    assert reply.startswith("250"), f"the next normal fax: {reply}"
    assert len(callfiles(gw.milter)) == before + 1, "the next normal fax has no call file"


def gs_runs(gw: Gateway) -> list[str]:
    return gw.gs_log.read_text(errors="replace").splitlines()


@dataclass
class Outcome:
    reply: str
    gs_runs: list[str]  # Ghostscript runs for this mail
    new_callfiles: list[Path]

    @property
    def job_id(self) -> str:
        (callfile,) = self.new_callfiles
        return callfile.stem


def job(gw: Gateway, job_id: str, columns: str) -> tuple[object, ...]:
    (row,) = [row[1:] for row in job_rows(gw.milter, "id, " + columns) if row[0] == job_id]
    return row


def send_and_check(
    gw: Gateway,
    signer: Signer,
    message: bytes,
    expected: str,
    *,
    accepted: bool = False,
    mail_options: tuple[str, ...] = (),
    while_sending: AbstractContextManager[object] | None = None,
) -> Outcome:
    """Send `message` to the fax address, assert its reply starts with `expected`, then that
    the gateway came through whole (see the module docstring). `while_sending` is entered
    around the SMTP transaction only (a fault that must be gone for the next normal fax)."""
    milter = gw.milter
    spool = spool_dir(milter)
    finish_calls(milter)  # every fax goes to one number: the earlier ones' calls are over
    calls_before = set(callfiles(milter))
    faxes_before = set((spool / "fax").iterdir())
    jobs_before = len(job_rows(milter))
    gs_before = len(gs_runs(gw))
    started = time.monotonic()
    with while_sending or contextlib.nullcontext():
        result = gw.postfix.send(AUTHOR, [FAX], message, mail_options=list(mail_options))
    reply = final_reply(result)
    print(f"\n{len(message)} bytes answered in {time.monotonic() - started:.2f} s: {reply}")
    assert reply.startswith(expected), reply
    new_calls = sorted(set(callfiles(milter)) - calls_before)
    outcome = Outcome(reply, gs_runs(gw)[gs_before:], new_calls)
    assert milter.running(), "the milter died"
    pid = milter.pid or 0
    assert wait_until(lambda: not descendants(pid), 10), descendants(pid)
    assert strays(gw.base, pid) == []
    assert list(gw.work.iterdir()) == [], "job folders left in the work dir"
    staged = [p for p in (spool / "faxmail-staging").rglob("*") if p.is_file()]
    assert staged == [], "call files left in staging"
    if accepted:
        assert len(new_calls) == 1
    else:
        assert new_calls == [], "a refused mail reached Asterisk"
        assert set((spool / "fax").iterdir()) == faxes_before
        assert len(job_rows(milter)) == jobs_before
    assert all("[-dSAFER]" in run for run in gs_runs(gw)), "Ghostscript ran without -dSAFER"
    assert_next_fax_queued(gw, signer)
    back = wait_until(lambda: threads(pid) <= gw.baseline_threads)
    assert back, f"{threads(pid)} threads, {gw.baseline_threads} at rest before"
    return outcome


# ---------------------------------------------------------------- MIME


@pytest.mark.parametrize(
    ("mime", "expected"),
    [
        (hostile.multipart_without_boundary_parameter(), "550 5.6.0 no PDF or image"),
        (hostile.multipart_boundary_never_used(), "550 5.6.0 no PDF or image"),
        (hostile.nested_multiparts(100), "552 5.3.4 the message's MIME parts nest more than"),
        (hostile.many_parts(10_000), "552 5.3.4 the message has more than 200 MIME parts"),
        (hostile.pdf_part_with_bad_base64(), "550 5.6.0 attachment 1 cannot be read: bad base64"),
    ],
    ids=[
        "no boundary parameter",
        "boundary never used",
        "nested 100 deep",
        "10000 parts",
        "bad base64",
    ],
)
def test_mime_structure(
    gw: Gateway, dkim_keys: dict[str, Signer], mime: bytes, expected: str
) -> None:
    signer = dkim_keys["example.jp"]
    send_and_check(gw, signer, signer.sign(raw_mail(mime)), expected)


def test_one_megabyte_header(gw: Gateway, dkim_keys: dict[str, Signer]) -> None:
    """Postfix keeps the first 100 KB of a header (header_size_limit) and drops the rest
    silently; the milter counts what it gets against its own size limit."""
    signer = dkim_keys["example.jp"]
    message = signer.sign(fax_mail([Attachment(make_pdf(1), filename="a.pdf")]))
    # unsigned, so the cut does not break the signature
    head, _, body = message.partition(b"\r\n\r\n")
    big = head + b"\r\nX-Padding: " + b"a" * 1_000_000 + b"\r\n\r\n" + body
    send_and_check(gw, signer, big, "250", accepted=True)


def test_one_megabyte_signed_subject(gw: Gateway, dkim_keys: dict[str, Signer]) -> None:
    """Postfix cuts the signed Subject to 100 KB: the signature fails, nothing else does."""
    signer = dkim_keys["example.jp"]
    subject = " ".join(["=?UTF-8?B?5pel5pys?="] * 50_000)  # 1 MB of encoded words, folded
    message = fax_mail([Attachment(make_pdf(1), filename="a.pdf")], subject="x")
    message = message.replace(
        b"Subject: x\r\n", b"Subject: " + subject.replace(" ", "\r\n ").encode() + b"\r\n"
    )
    send_and_check(gw, signer, signer.sign(message), "550 5.7.20")


def test_wrong_charsets_are_still_faxed(gw: Gateway, dkim_keys: dict[str, Signer]) -> None:
    signer = dkim_keys["example.jp"]
    message = fax_mail(
        [Attachment(make_pdf(1), filename="a.pdf")],
        body="plain ascii, labelled as a charset nobody knows\n",
        subject="=?x-bogus?B?////?= =?utf-7?B?K0FHRS0=?= =?iso-2022-jp?B?GyRCJDMbKEI?=",
    )
    message = message.replace(b'charset="us-ascii"', b'charset="x-no-such-charset"')
    assert b"x-no-such-charset" in message
    outcome = send_and_check(gw, signer, signer.sign(message), "250", accepted=True)
    (subject,) = job(gw, outcome.job_id, "subject")
    assert isinstance(subject, str) and "\n" not in subject and "\x1b" not in subject


def test_nul_bytes(gw: Gateway, dkim_keys: dict[str, Signer]) -> None:
    signer = dkim_keys["example.jp"]
    pdf = hostile.PDF_PART
    mime = (
        b"Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\n"
        b"Content-Type: text/plain\r\n\r\nnul \x00 in the body\x00\r\n--B\r\n"
        + pdf
        + b"\r\n--B--\r\n"
    )
    message = signer.sign(raw_mail(mime, b"X-Nul: a\x00b\r\n"))
    send_and_check(gw, signer, message, "250", accepted=True)


def test_eight_bit_headers(gw: Gateway, dkim_keys: dict[str, Signer]) -> None:
    signer = dkim_keys["example.jp"]
    message = fax_mail([Attachment(make_pdf(1), filename="a.pdf")], subject="x")
    # raw UTF-8, raw Shift_JIS, and a byte that is neither
    message = (
        message.replace(b"Subject: x", "Subject: 請求書".encode())
        .replace(b"From: alice@example.jp", "From: 山田 <alice@example.jp>".encode("cp932"))
        .replace(b"\r\n\r\n", b"\r\nX-Junk: \xff\xfe\x80\r\n\r\n", 1)
    )
    outcome = send_and_check(gw, signer, signer.sign(message), "250", accepted=True)
    (subject,) = job(gw, outcome.job_id, "subject")
    assert "請求書" in str(subject)


HOSTILE_NAME = '../../../etc/cron.d/$(touch /tmp/fxm-pwned);`id`|rm -rf ~ "x".pdf'


def test_attachment_name_with_path_and_shell(gw: Gateway, dkim_keys: dict[str, Signer]) -> None:
    signer = dkim_keys["example.jp"]
    good = fax_mail([Attachment(make_pdf(1), filename=HOSTILE_NAME)])
    outcome = send_and_check(gw, signer, signer.sign(good), "250", accepted=True)
    (callfile,) = outcome.new_callfiles
    assert b"cron" not in callfile.read_bytes() and b"$(" not in callfile.read_bytes()
    bad = fax_mail([Attachment(b"not a pdf", filename=HOSTILE_NAME)])
    outcome = send_and_check(gw, signer, signer.sign(bad), "550 5.6.0 attachment 1 (")
    for fragment in ("$(", "`", "/", "|", "~", '"', ";"):
        assert fragment not in outcome.reply.split("attachment 1 (", 1)[1]
    assert not Path("/tmp/fxm-pwned").exists()
    assert not Path('/etc/cron.d/$(touch /tmp/fxm-pwned);`id`|rm -rf ~ "x".pdf').exists()


@pytest.mark.parametrize("declared", [False, True], ids=["no SIZE", "SIZE declared"])
def test_fifty_megabyte_body(gw: Gateway, dkim_keys: dict[str, Signer], declared: bool) -> None:
    signer = dkim_keys["example.jp"]
    line = b"x" * 998 + b"\r\n"
    body = line * (50 * 1024 * 1024 // len(line))
    message = signer.sign(raw_mail(b"Content-Type: text/plain\r\n\r\n" + body))
    options = (f"SIZE={len(message)}",) if declared else ()
    send_and_check(gw, signer, message, "552 5.3.4 message too big", mail_options=options)


# ---------------------------------------------------------------- PDFs


@pytest.mark.parametrize(
    ("pdf", "expected"),
    [
        (make_encrypted_pdf(1), "550 5.6.0 the PDF is password-protected"),
        (make_pdf(3)[:1500], "550 5.6.0 attachment 1 (a.pdf) cannot be read"),
        (b"Dear Sir, this is not a PDF at all.\r\n" * 20, "550 5.6.0 attachment 1 (a.pdf)"),
        (hostile.thousands_of_pages_pdf(3000), "552 5.3.4 the fax has 3000 pages; at most 50"),
        (hostile.deep_dictionaries_pdf(50_000), "550 5.6.0 attachment 1 (a.pdf) cannot be read"),
    ],
    ids=[
        "encrypted",
        "truncated",
        "not a PDF named .pdf",
        "3000 pages",
        "dictionaries nested 50000 deep",
    ],
)
def test_bad_pdfs_are_refused(
    gw: Gateway, dkim_keys: dict[str, Signer], pdf: bytes, expected: str
) -> None:
    signer = dkim_keys["example.jp"]
    message = signer.sign(fax_mail([Attachment(pdf, filename="a.pdf")]))
    send_and_check(gw, signer, message, expected)


def test_pdf_that_outlasts_the_time_limit_and_the_checks_that_see_it(
    gw: Gateway, dkim_keys: dict[str, Signer]
) -> None:
    """100 000 graphics-state saves never restored: Ghostscript is killed at the limit (552).

    Also proves the process check can fail: while it renders, the milter has a Ghostscript
    below it.
    """
    signer = dkim_keys["example.jp"]
    pdf = hostile.unbalanced_saves_pdf(100_000)
    message = signer.sign(fax_mail([Attachment(pdf, filename="a.pdf")]))
    pid = gw.milter.pid or 0
    seen: dict[str, object] = {}

    @contextlib.contextmanager
    def watch_while_rendering() -> Iterator[None]:
        def look() -> None:
            rendering = wait_until(lambda: "gs" in {name for _, name in descendants(pid)}, 60)
            seen.update(gs=rendering, strays=strays(gw.base, pid))

        watcher = threading.Thread(target=look)
        watcher.start()
        yield
        watcher.join()

    send_and_check(
        gw, signer, message, "552 5.3.4 the document took too long to render",
        while_sending=watch_while_rendering(),
    )  # fmt: skip
    assert seen["gs"], "no Ghostscript seen below the milter while it rendered"
    assert seen["strays"] == []  # gs was the milter's child, not an orphan


@pytest.mark.parametrize(
    "pdf",
    [
        make_encrypted_pdf(1, user_password=""),
        hostile.huge_page_pdf(14_400, 14_400),
        hostile.huge_page_pdf(10_000_000, 10_000_000),
        hostile.deeply_nested_pdf(100_000),
        hostile.nested_page_tree_pdf(5_000),
        hostile.decompression_bomb_pdf(16_384),
        hostile.decompression_bomb_pdf(131_072),
    ],
    ids=[
        "owner password only",
        "page of 14400 pt",
        "page of 10 million pt",
        "array nested 100000 deep",
        "page tree 5000 deep",
        "bomb of 256 MiB",
        "bomb of 16 GiB",
    ],
)
def test_odd_but_harmless_pdfs_are_faxed(
    gw: Gateway, dkim_keys: dict[str, Signer], pdf: bytes
) -> None:
    """Opens without a password / scaled to the paper / the nesting is in data nobody draws /
    gs decodes the image within the time limit or skips one beyond its limits: one page."""
    signer = dkim_keys["example.jp"]
    message = signer.sign(fax_mail([Attachment(pdf, filename="a.pdf")]))
    outcome = send_and_check(gw, signer, message, "250", accepted=True)
    assert job(gw, outcome.job_id, "pages") == (1,)


@pytest.mark.parametrize(
    "make", [hostile.postscript_in_pdf, hostile.postscript_then_pdf],
    ids=["PostScript inside a PDF", "PostScript program before a PDF"],
)  # fmt: skip
def test_postscript_cannot_touch_files(
    gw: Gateway,
    dkim_keys: dict[str, Signer],
    make: Callable[[Path, Path, Path], bytes],
    workdir: Path,
) -> None:
    secret, leak, marker = workdir / "secret", workdir / "leak", workdir / "marker"
    secret.write_text("TOP-SECRET-4711")
    signer = dkim_keys["example.jp"]
    message = signer.sign(fax_mail([Attachment(make(secret, leak, marker), filename="a.pdf")]))
    outcome = send_and_check(gw, signer, message, "550 5.6.0 attachment 1 (a.pdf) cannot be read")
    assert not marker.exists() and not leak.exists()
    assert "TOP-SECRET" not in outcome.reply and "TOP-SECRET" not in gw.milter.log()
    if make is hostile.postscript_then_pdf:
        assert outcome.gs_runs == [], "PostScript must never reach Ghostscript"
        assert "it is not a PDF file" in outcome.reply
    else:
        # the document's run, then the blank test page that tells gs's fault from the file's
        assert len(outcome.gs_runs) == 2, outcome.gs_runs
        assert all("[-dSAFER]" in run for run in outcome.gs_runs)


# ---------------------------------------------------------------- images


_CORRUPT_TIFFS = {n: d for n, d in hostile.corrupt_tiffs().items() if n != "IFD that loops"}


@pytest.mark.parametrize(
    ("image", "content_type", "expected"),
    [
        (png_bomb_bytes(60_000, 60_000), "image/png", "550 5.6.0 attachment 1 (a.png)"),
        (hostile.multipage_tiff(5_000), "image/tiff", "552 5.3.4 the fax has more than 50 pages"),
        *[
            (data, "image/tiff", "550 5.6.0 attachment 1 (a.png)")
            for data in _CORRUPT_TIFFS.values()
        ],
        # Regression: both were faxed as a page of garbage (Ghostscript draws damaged JPEG and
        # G4 data without a word); images.py now decodes them first.
        (
            hostile.damaged_g4_tiff(),
            "image/tiff",
            "550 5.6.0 attachment 1 (a.png) cannot be read: the image data is damaged",
        ),
        (
            hostile.cut_jpeg(),
            "image/jpeg",
            "550 5.6.0 attachment 1 (a.png) cannot be read: the image cannot be read (image file",
        ),
    ],
    ids=[
        "PNG of 60000x60000",
        "TIFF of 5000 pages",
        *[f"TIFF {n}" for n in _CORRUPT_TIFFS],
        "G4 TIFF with random strip data",
        "JPEG cut off",
    ],
)
def test_bad_images_are_refused(
    gw: Gateway, dkim_keys: dict[str, Signer], image: bytes, content_type: str, expected: str
) -> None:
    signer = dkim_keys["example.jp"]
    attachment = Attachment(image, content_type=content_type, filename="a.png")
    send_and_check(gw, signer, signer.sign(fax_mail([attachment])), expected)


@pytest.mark.parametrize(
    "tiff",
    [hostile.corrupt_tiffs()["IFD that loops"], hostile.g4_tiff(private_tag=True)],
    ids=["IFD that loops back", "G4 with an unknown private tag"],
)
def test_tiffs_with_harmless_oddities_are_faxed(
    gw: Gateway, dkim_keys: dict[str, Signer], tiff: bytes
) -> None:
    """The loop is noticed (one page); libtiff's warning about a tag is no damage."""
    signer = dkim_keys["example.jp"]
    attachment = Attachment(tiff, content_type="image/tiff", filename="a.tif")
    outcome = send_and_check(gw, signer, signer.sign(fax_mail([attachment])), "250", accepted=True)
    assert job(gw, outcome.job_id, "pages") == (1,)


# ---------------------------------------------------------------- strings


SHELL = "\n;$(touch /tmp/fxm-pwned) `id` 'single' \"double\" \\x22 \x1b$B$3$s"
FRAGMENTS = (b"touch", b"$(", b"`", b"single", b"double", b"\\x22", b"\x1b", b"fxm-pwned")


@pytest.mark.parametrize(
    "field", ["Subject", "From display name", "Reply-To", "all three, raw ISO-2022-JP"]
)
def test_header_strings_never_reach_the_call_file(
    gw: Gateway, dkim_keys: dict[str, Signer], field: str
) -> None:
    signer = dkim_keys["example.jp"]
    kw: dict[str, object] = {}
    extra: list[tuple[str, str]] = []
    if field == "Subject":
        kw = {"subject": SHELL, "subject_charset": "utf-8"}
    elif field == "From display name":
        kw = {"from_name": SHELL, "subject_charset": "utf-8"}
    elif field == "Reply-To":
        extra = [("Reply-To", address("x;$(id)@example.jp", SHELL, "utf-8"))]
    message = fax_mail([Attachment(make_pdf(1), filename="a.pdf")], extra_headers=extra, **kw)
    if field.startswith("all three"):
        # ISO-2022-JP escape sequences cut in half, raw in the header (no encoded word)
        cut = b"\x1b$B$3$s\x1b("
        message = message.replace(b"Subject: hostile", b"Subject: " + cut + b"`id`;")
        message = message.replace(
            b"From: alice@example.jp", b'From: "\x1b$B$3$s\\" $(id)" <alice@example.jp>'
        )
        message = message.replace(b"\r\n\r\n", b"\r\nReply-To: \x1b$(B `id` <a@x>\r\n\r\n", 1)
    outcome = send_and_check(gw, signer, signer.sign(message), "250", accepted=True)
    (callfile,) = outcome.new_callfiles
    text = callfile.read_bytes()
    for fragment in FRAGMENTS:
        assert fragment not in text, fragment
    assert {key for key, _ in parse_callfile(text)} == {
        "Channel", "MaxRetries", "RetryTime", "WaitTime", "Context", "Extension", "Priority",
        "Archive", "Setvar",
    }  # fmt: skip
    subject, reply_to = job(gw, outcome.job_id, "subject, reply_to")
    for value in (subject, reply_to or ""):
        assert not any(ch in str(value) for ch in "\r\n\x00\x1b"), value
    assert not Path("/tmp/fxm-pwned").exists()


# ---------------------------------------------------------------- DKIM


@pytest.mark.parametrize(
    ("expires_in_days", "expected"), [(-7, "550 5.7.20"), (7, "250")],
    ids=["expired a week ago", "control: expires next week"],
)  # fmt: skip
def test_signature_expiry(
    gw: Gateway, dkim_keys: dict[str, Signer], expires_in_days: int, expected: str
) -> None:
    key = dkim_keys["example.jp"]
    now, day = int(time.time()), 24 * 3600
    message = sign_with_times(
        fax_mail([Attachment(make_pdf(1), filename="a.pdf")]),
        key.domain,
        key.selector,
        key.key,
        signed_at=now - 14 * day,
        expires_at=now + expires_in_days * day,
    )
    mark = len(gw.milter.log())
    send_and_check(gw, key, message, expected, accepted=expected == "250")
    assert ("x= value is past" in gw.milter.log()[mark:]) == (expires_in_days < 0)


@pytest.mark.parametrize("role", ["small", "short"], ids=["512-bit key", "1023-bit key"])
def test_key_below_1024_bits(gw: Gateway, dkim_keys: dict[str, Signer], role: str) -> None:
    message = fax_mail([Attachment(make_pdf(1), filename="a.pdf")])
    mark = len(gw.milter.log())
    send_and_check(gw, dkim_keys["example.jp"], dkim_keys[role].sign(message), "550 5.7.20")
    assert f"public key too small: {dkim_keys[role].key.bits}" in gw.milter.log()[mark:]


def test_forged_from_signed_by_the_sender_domain(gw: Gateway, dkim_keys: dict[str, Signer]) -> None:
    """From: is ours, Sender: is the attacker's domain, which signs validly: not aligned."""
    message = fax_mail(
        [Attachment(make_pdf(1), filename="a.pdf")],
        extra_headers=[("Sender", "mallory@other.example")],
    )
    signed = dkim_keys["other.example"].sign(
        message, include_headers=[b"from", b"sender", b"to", b"subject", b"message-id"]
    )
    send_and_check(gw, dkim_keys["example.jp"], signed, "550 5.7.22")


def test_huge_dns_answer_with_the_real_key_among_junk(
    gw: Gateway, dns: DnsServer, dkim_keys: dict[str, Signer]
) -> None:
    """40 TXT records of 1000 bytes (40 KB, over TCP) with the real key among them."""
    signer = dkim_keys["example.jp"]
    records = dict(dns.records)
    junk = [f"junk {n} " + "J" * 1000 for n in range(40)]
    records[signer.dns_name] = [*junk[:20], signer.key.txt(), *junk[20:]]
    dns.restart(records)
    message = signer.sign(fax_mail([Attachment(make_pdf(1), filename="a.pdf")]))
    send_and_check(gw, signer, message, "250", accepted=True)


def _pointer_loop(query: bytes) -> bytes:
    """A reply whose answer name is a compression pointer to itself."""
    header = query[:2] + b"\x81\x80" + struct.pack(">HHHH", 1, 1, 0, 0)
    question = query[12:]
    answer = (
        b"\xc0" + bytes([12 + len(question)]) + b"\x00\x10\x00\x01" + b"\x00" * 4 + b"\x00\x02\x01x"
    )
    return header + question + answer


def _claims_more_than_it_has(query: bytes) -> bytes:
    """A TXT answer whose length fields promise 60000 bytes that never come."""
    header = query[:2] + b"\x81\x80" + struct.pack(">HHHH", 1, 1, 0, 0)
    answer = b"\xc0\x0c\x00\x10\x00\x01\x00\x00\x00\x3c" + struct.pack(">H", 60000) + b"\xffv=DKIM1"
    return header + query[12:] + answer


@pytest.mark.parametrize(
    "answer",
    [lambda query: query[:2] + random.Random(6).randbytes(200), _pointer_loop,
     _claims_more_than_it_has, lambda query: b""],
    ids=["random bytes", "name pointer loop", "length past the end", "empty datagram"],
)  # fmt: skip
def test_malformed_dns_answers_are_temporary(
    gw: Gateway, dns: DnsServer, dkim_keys: dict[str, Signer], answer: Callable[[bytes], bytes]
) -> None:
    """The key could not be read: RFC 6376 says try later (451 4.7.5), never 250 or 550."""
    signer = dkim_keys["example.jp"]
    message = signer.sign(fax_mail([Attachment(make_pdf(1), filename="a.pdf")]))
    rogue = RawDnsResponder(dns.host, dns.port, answer)

    @contextlib.contextmanager
    def rogue_dns() -> Iterator[None]:
        dns.stop()
        try:
            with rogue:
                yield
        finally:
            dns.start()

    send_and_check(gw, signer, message, "451 4.7.5", while_sending=rogue_dns())
    assert rogue.queries >= 1
