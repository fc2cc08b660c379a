"""The status page without a browser: its views, chart, logins and routes (Starlette's
TestClient), and the `faxmail web` command's refusals. The page in a real browser:
tests/test_web_browser.py."""

from __future__ import annotations

import base64
import io
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from datetime import date
from pathlib import Path

import httpx2
import pytest
import yaml
from PIL import Image
from starlette.testclient import TestClient

from faxmail.admin.context import Admin, open_admin
from faxmail.store.sqlite import SqliteStore
from faxmail.web.app import SECURITY_HEADERS, WebContext, build_app
from faxmail.web.chart import daily_chart, nice_ceiling
from faxmail.web.login import LoginConfigError, Logins, Throttle
from faxmail.web.passwords import BadHash, PasswordHash, make_hash
from faxmail.web.thumbnail import THUMB_WIDTH, servable_tiff
from faxmail.web.views import Day, status_page
from infra.net import free_port, wait_tcp
from web_site import (
    HOSTILE_CALLER,
    HOSTILE_SENDER,
    HOSTILE_STATION,
    HOSTILE_SUBJECT,
    PASSWORD,
    USER,
    Site,
    make_site,
)

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    return make_site(tmp_path_factory.mktemp("web"))


@pytest.fixture(scope="module")
def client(site: Site) -> TestClient:
    admin = open_admin(site.settings)
    settings, source, database = admin.settings, admin.settings_source, admin.store.location
    admin.close()

    def open_store(user: str) -> Admin:
        return Admin(settings, source, SqliteStore(Path(database)), actor=f"web:{user}")

    app = build_app(WebContext(Logins(settings.web.users), open_store, Throttle(limit=1000)))
    return TestClient(app)


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


LOGIN = basic(USER, PASSWORD)


# --- the login ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        basic(USER, "wrong password"),
        basic("nobody", PASSWORD),
        {"Authorization": "Basic !!!not-base64"},
        {"Authorization": f"Bearer {PASSWORD}"},
    ],
    ids=["none", "wrong-password", "unknown-user", "garbage", "other-scheme"],
)
def test_every_route_needs_the_login(
    client: TestClient, site: Site, headers: dict[str, str]
) -> None:
    for path in ("/", "/style.css", f"/jobs/{site.sent}/page1.png", "/nothing"):
        response = client.get(path, headers=headers)
        assert response.status_code == 401, path
        assert response.headers["WWW-Authenticate"].startswith('Basic realm="faxmail status"')
        assert "Quote" not in response.text and site.sent not in response.text
        for name, value in SECURITY_HEADERS.items():
            assert response.headers[name] == value


def test_the_page_with_the_login(client: TestClient, site: Site) -> None:
    response = client.get("/", headers=LOGIN)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "script-src" not in csp  # default-src 'none' forbids every script
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"
    assert f"signed in as {USER}" in response.text
    for job in (site.hostile, site.sent, site.failed, site.dialling, *site.waiting):
        assert f'id="job-{job}"' in response.text


def test_only_get(client: TestClient) -> None:
    assert client.post("/", headers=LOGIN).status_code == 405
    assert client.delete("/", headers=LOGIN).status_code == 405


# --- escaping -----------------------------------------------------------------------------------


def test_mail_and_call_text_is_escaped(client: TestClient) -> None:
    html = client.get("/", headers=LOGIN).text
    assert "<script" not in html.lower()  # the page has no script of its own either
    for hostile in (HOSTILE_SUBJECT, HOSTILE_SENDER, HOSTILE_STATION, HOSTILE_CALLER):
        assert hostile not in html
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;&lt;b&gt;Invoice&lt;/b&gt;" in html
    assert "&amp; &#34;Q3&#34; &lt;img src=x&gt;" in html
    assert "&lt;svg onload=window.__pwned=3&gt;@evil.example" in html
    assert "&lt;iframe src=//evil.example&gt;" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


# --- the queue, the jobs, the received faxes -----------------------------------------------------


def test_views_show_the_queue_per_line(site: Site) -> None:
    admin = open_admin(site.settings)
    try:
        page = status_page(admin)
    finally:
        admin.close()
    [line] = page.lines
    assert line.name == "default" and line.channels == 1
    assert [call.job_id for call in line.dialling] == [site.dialling]
    assert [(w.place, w.job_id, w.call) for w in line.waiting] == [
        (1, site.waiting[0], 1),
        (2, site.waiting[1], 1),
    ]
    assert all(w.next_call == "when the line is free" for w in line.waiting)
    rows = {row.id: row for row in page.jobs}
    assert rows[site.hostile].station == HOSTILE_STATION
    assert (rows[site.sent].state, rows[site.sent].attempts) == ("sent", 1)
    assert rows[site.failed].last_result == "busy (attempt 1)"
    assert not rows[site.outside].thumbnail  # its TIFF is outside the fax folder
    assert rows[site.sent].thumbnail
    [fax] = page.inbound
    assert (fax.caller, fax.routed_to, fax.mail) == (
        HOSTILE_CALLER,
        ["office@example.jp"],
        "not delivered",
    )
    assert len(page.days) == 14 and page.days[-1].received == 1
    assert sum(d.outgoing for d in page.days) == 10
    assert sum(d.line_minutes for d in page.days) > 0


def test_thumbnail_of_page_one(client: TestClient, site: Site) -> None:
    response = client.get(f"/jobs/{site.sent}/page1.png", headers=LOGIN)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "image/png"
    assert response.headers["Cache-Control"] == "private, max-age=3600"
    image = Image.open(io.BytesIO(response.content))
    assert image.format == "PNG" and image.width == THUMB_WIDTH
    # A4 at 204 x 196 dpi, stretched to square pixels: about 1.41 times as tall as wide.
    assert 1.3 < image.height / image.width < 1.5


@pytest.mark.parametrize(
    "path",
    [
        "/jobs/00000000000000ff/page1.png",  # no such job
        "/jobs/000000000000000A/page1.png",  # upper case: not a job id
        "/jobs/0000000000000001x/page1.png",
        "/jobs/..%2F..%2Fetc%2Fpasswd/page1.png",
        "/jobs/000000000000000a/page1.png",  # its TIFF lies outside the fax folder
    ],
)
def test_no_thumbnail_but_for_a_job_in_the_fax_folder(client: TestClient, path: str) -> None:
    response = client.get(path, headers=LOGIN)
    assert response.status_code == 404
    assert response.headers["Content-Type"].startswith("text/html")


def test_servable_tiff_follows_links_out(tmp_path: Path) -> None:
    faxes = tmp_path / "fax"
    faxes.mkdir()
    (tmp_path / "secret").write_text("x")
    (faxes / "link.tif").symlink_to(tmp_path / "secret")
    (faxes / "real.tif").write_text("x")
    assert servable_tiff(str(faxes / "link.tif"), faxes) is None
    assert servable_tiff(str(faxes / "gone.tif"), faxes) is None
    assert servable_tiff(str(faxes / "real.tif"), faxes) == (faxes / "real.tif").resolve()


# --- the chart ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "top"), [(0, 1), (0.3, 0.5), (1, 1), (3, 5), (7, 10), (12, 20), (120, 200)]
)
def test_nice_ceiling(value: float, top: float) -> None:
    assert nice_ceiling(value) == pytest.approx(top)


def test_chart_draws_bars_and_the_minutes_line() -> None:
    days = [
        Day(date(2024, 5, 1), 3, 1, 4.5),
        Day(date(2024, 5, 2), 0, 0, 0.0),
        Day(date(2024, 5, 3), 7, 2, 12.0),
    ]
    svg = ET.fromstring(str(daily_chart(days)))
    assert svg.tag == f"{SVG}svg"
    assert not svg.findall(f".//{SVG}script") and not svg.findall(f".//{SVG}foreignObject")
    sent = svg.findall(f".//{SVG}rect[@class='outgoing']")
    received = svg.findall(f".//{SVG}rect[@class='received']")
    assert len(sent) == len(received) == 3
    heights = [float(r.get("height", "")) for r in sent]
    assert heights[1] == 0 and heights[2] > heights[0] > 0
    assert heights[2] / heights[0] == pytest.approx(7 / 3, rel=0.01)
    [line] = svg.findall(f".//{SVG}polyline")
    assert len(line.get("points", "").split()) == 3
    titles = [t.text for t in svg.iter(f"{SVG}title")]
    assert "2024-05-03: 7 outgoing" in titles and "2024-05-01: 1 received" in titles
    labels = {t.text for t in svg.iter(f"{SVG}text")}
    assert {"05-01", "05-03", "10", "20"} <= labels  # days; scales: faxes to 10, minutes to 20


def test_chart_of_nothing() -> None:
    svg = ET.fromstring(str(daily_chart([])))
    assert not svg.findall(f".//{SVG}polyline")
    assert all(float(r.get("height", "0")) >= 0 for r in svg.iter(f"{SVG}rect"))


# --- logins -------------------------------------------------------------------------------------


def test_hashes_verify_and_parse() -> None:
    text = make_hash("s3cret pass", n=2**10)
    parsed = PasswordHash.parse(text)
    assert parsed.matches("s3cret pass") and not parsed.matches("s3cret pas")
    assert str(parsed) == text
    assert make_hash("s3cret pass", n=2**10) != text  # salted
    for bad in ("plain", "scrypt:1000:8:1$c2FsdHNhbHQ=$a2V5a2V5a2V5a2V5", "md5:1:1:1$a$b"):
        with pytest.raises(BadHash):
            PasswordHash.parse(bad)


def test_logins_name_the_key_and_remember_a_good_header() -> None:
    with pytest.raises(LoginConfigError, match=r"web\.users\.bob: "):
        Logins({"bob": "scrypt:3:8:1$c2FsdHNhbHQ=$a2V5a2V5a2V5a2V5"})
    now = [0.0]
    logins = Logins({"ann": make_hash("pass word", n=2**10)}, clock=lambda: now[0])
    header = basic("ann", "pass word")["Authorization"]
    assert logins.user(header) == "ann"
    assert logins.user(basic("ann", "pass wor")["Authorization"]) is None
    assert logins.user(header) == "ann"
    now[0] = 10_000.0  # remembered no more: checked anew, and still right
    assert logins.user(header) == "ann"
    assert logins.user(None) is None and not Logins({})


def test_a_guesser_is_slowed_down(site: Site) -> None:
    logins = Logins({USER: make_hash(PASSWORD, n=2**10)})
    app = build_app(WebContext(logins, lambda user: open_admin(site.settings), Throttle(limit=2)))
    guesser = TestClient(app)
    for _ in range(2):
        assert guesser.get("/style.css", headers=basic(USER, "guess")).status_code == 401
    assert guesser.get("/style.css", headers=basic(USER, "guess")).status_code == 429
    assert guesser.get("/style.css", headers=LOGIN).status_code == 429  # the window first
    assert guesser.get("/style.css").status_code == 401  # no header: nothing to check


def test_throttle_windows() -> None:
    now = [0.0]
    throttle = Throttle(limit=2, window_s=60, clock=lambda: now[0])
    throttle.refused("a")
    throttle.refused("a")
    assert throttle.blocked("a") and not throttle.blocked("b")
    now[0] = 61.0
    assert not throttle.blocked("a")
    throttle.refused("a")
    assert not throttle.blocked("a")


# --- the command --------------------------------------------------------------------------------


def faxmail(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-c",
        "from faxmail.admin.main import main; raise SystemExit(main())",
    ]
    return subprocess.run(
        [*command, *args], input=stdin, capture_output=True, text=True, timeout=60, check=False
    )


def test_web_refuses_to_start_without_a_login(site: Site, tmp_path: Path) -> None:
    settings = yaml.safe_load(site.settings.read_text())
    del settings["web"]
    path = tmp_path / "settings.yaml"
    path.write_text(yaml.safe_dump(settings))
    done = faxmail("web", "--settings", str(path))
    assert done.returncode == 78
    assert "no login configured: set web.users in" in done.stderr
    assert "faxmail web passwd NAME" in done.stderr


def test_settings_check_names_a_bad_hash(site: Site, tmp_path: Path) -> None:
    settings = yaml.safe_load(site.settings.read_text())
    settings["web"]["users"]["eve"] = "hunter2"
    path = tmp_path / "settings.yaml"
    path.write_text(yaml.safe_dump(settings))
    done = faxmail("settings", "check", str(path))
    assert done.returncode == 1 and "web.users.eve" in done.stderr
    assert faxmail("web", "--settings", str(path)).returncode == 78


def test_passwd_prints_a_line_to_paste(tmp_path: Path) -> None:
    done = faxmail("web", "passwd", "clerk", "--stdin", stdin="long enough pass\n")
    assert done.returncode == 0, done.stderr
    users = yaml.safe_load(done.stdout)
    assert PasswordHash.parse(users["clerk"]).matches("long enough pass")
    assert faxmail("web", "passwd", "a:b", "--stdin", stdin="long enough\n").returncode == 1
    assert faxmail("web", "passwd", "clerk", "--stdin", stdin="short\n").returncode == 1


def test_web_help_teaches() -> None:
    done = faxmail("web", "--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    for words in ("read-only", "faxmail web passwd NAME", "127.0.0.1:8895", "reverse proxy"):
        assert words in text


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become asterisk.user")
def test_web_as_root_serves_as_asterisk_user() -> None:
    """Root gives way to asterisk.user before serving; the page still renders afterwards."""
    try:
        owner = pwd.getpwnam("asterisk")
    except KeyError:
        pytest.skip("no user asterisk on this machine")
    root = Path(tempfile.mkdtemp(prefix="fxm-web-"))
    try:
        root.chmod(0o755)  # /tmp/pytest-of-root is root's alone
        site = make_site(root)
        settings = yaml.safe_load(site.settings.read_text())
        settings["asterisk"]["user"] = "asterisk"
        site.settings.write_text(yaml.safe_dump(settings))
        for path in [root, *root.rglob("*")]:
            os.chown(path, owner.pw_uid, owner.pw_gid)
        port = free_port()
        command = "from faxmail.admin.main import main; raise SystemExit(main())"
        args = ["web", "--settings", str(site.settings), "--port", str(port)]
        server = subprocess.Popen(
            [sys.executable, "-c", command, *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert wait_tcp("127.0.0.1", port, 30)
            status = Path(f"/proc/{server.pid}/status").read_text()
            assert f"Uid:\t{owner.pw_uid}\t" in status
            page = httpx2.get(f"http://127.0.0.1:{port}/", auth=(USER, PASSWORD), timeout=30)
            assert page.status_code == 200 and f'id="job-{site.sent}"' in page.text
        finally:
            server.terminate()
            server.wait(timeout=30)
    finally:
        shutil.rmtree(root, ignore_errors=True)
