"""The status page in a real browser: `faxmail web` (uvicorn) and Debian's chromium, headless,
through selenium and chromium-driver (scripts/install-deps --test installs both).

A screenshot of the page is saved in the test's tmp folder; to refresh the README's picture:
  FAXMAIL_SCREENSHOT=docs/status-page.png .venv/bin/pytest -q tests/test_web_browser.py
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from conftest import attach_log
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

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# Headless, and quiet: without the background-networking flags Chromium calls Google's hosts.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1600",
)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    return make_site(tmp_path_factory.mktemp("web-browser"))


@pytest.fixture(scope="module")
def server(site: Site, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("web-log") / "faxmail-web.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from faxmail.admin.main import main; raise SystemExit(main())",
                "web",
                "--settings",
                str(site.settings),
                "--port",
                str(port),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        if not wait_tcp("127.0.0.1", port, 30):
            pytest.fail(f"faxmail web did not listen on {port}:\n{log.read_text()}")
        yield f"http://127.0.0.1:{port}/"
    finally:
        process.terminate()
        process.wait(timeout=30)
        print(log.read_text())


@pytest.fixture
def browser(request: pytest.FixtureRequest) -> Iterator[webdriver.Chrome]:
    for program in (CHROMIUM, CHROMEDRIVER):
        assert program.exists(), f"{program} is missing: scripts/install-deps --test installs it"
    profile = tempfile.mkdtemp(prefix="fxm-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    attach_log(request, "browser console", lambda: str(driver.get_log("browser")))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def send_login(driver: webdriver.Chrome, user: str, password: str) -> None:
    """Send an Authorization header with every request (the page and its thumbnails)."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd(
        "Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {token}"}}
    )


def statuses(driver: webdriver.Chrome, url: str) -> list[int]:
    """The HTTP status of each response for `url` since the last call (DevTools' log)."""
    found = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.responseReceived":
            response = message["params"]["response"]
            if response["url"] == url:
                found.append(int(response["status"]))
    return found


def no_alert(driver: webdriver.Chrome) -> bool:
    try:
        driver.switch_to.alert.dismiss()
    except NoAlertPresentException:
        return True
    return False


@pytest.mark.parametrize(
    "login", [None, (USER, PASSWORD + "x"), ("nobody", PASSWORD)], ids=["none", "wrong", "unknown"]
)
def test_without_the_login_nothing_is_shown(
    server: str, browser: webdriver.Chrome, login: tuple[str, str] | None
) -> None:
    if login is not None:
        send_login(browser, *login)
    browser.get(server)
    assert statuses(browser, server) == [401]
    # Headless chromium cancels the Basic prompt: an error page, never the status page.
    assert "Quote" not in browser.page_source
    assert not browser.find_elements(By.ID, "jobs")


def test_the_page_shows_hostile_text_as_text(
    server: str, browser: webdriver.Chrome, site: Site, tmp_path: Path
) -> None:
    send_login(browser, USER, PASSWORD)
    browser.get(server)
    assert statuses(browser, server) == [200]
    assert browser.title == "faxmail status"
    row = browser.find_element(By.ID, f"job-{site.hostile}")
    assert row.find_element(By.CSS_SELECTOR, ".subject").text == HOSTILE_SUBJECT
    assert row.find_element(By.CSS_SELECTOR, ".sender").text == HOSTILE_SENDER
    assert row.find_element(By.CSS_SELECTOR, ".station").text == HOSTILE_STATION
    caller = browser.find_element(By.CSS_SELECTOR, "#inbound .caller")
    assert caller.text == HOSTILE_CALLER
    # None of it became markup, none of it ran.
    assert browser.execute_script("return typeof window.__pwned") == "undefined"
    assert no_alert(browser)
    assert not browser.find_elements(
        By.CSS_SELECTOR, "#jobs b, #jobs iframe, #jobs svg, body script"
    )
    assert len(browser.find_elements(By.CSS_SELECTOR, "#jobs img")) == 9  # no hostile <img>

    # The queue: the line's call in flight and its two waiting jobs in turn.
    line = browser.find_element(By.CSS_SELECTOR, ".line")
    assert site.dialling in line.find_element(By.CSS_SELECTOR, ".dialling").text
    waiting = line.find_element(By.CSS_SELECTOR, ".waiting").text
    assert waiting.index(site.waiting[0]) < waiting.index(site.waiting[1])

    # The thumbnails load (behind the same login) and the chart is drawn.
    browser.execute_script("window.scrollTo(0, document.body.scrollHeight)")
    thumb = browser.find_element(By.CSS_SELECTOR, f"#job-{site.sent} .thumb img")
    loaded = browser.execute_script(
        "const img = arguments[0]; return img.decode().then(() => img.naturalWidth, () => 0)",
        thumb,
    )
    assert loaded == 160
    assert len(browser.find_elements(By.CSS_SELECTOR, "svg.chart rect.outgoing")) == 14

    # The style sheet applied (the CSP allows only our own): th has its band colour.
    band = browser.find_element(By.CSS_SELECTOR, "#jobs th").value_of_css_property(
        "background-color"
    )
    assert band == "rgba(247, 250, 252, 1)"

    browser.execute_script("window.scrollTo(0, 0)")
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1280, min(int(height) + 200, 4000))  # the whole page
    shot = tmp_path / "status-page.png"
    assert browser.save_screenshot(str(shot))
    print(f"screenshot: {shot}")
    wanted = os.environ.get("FAXMAIL_SCREENSHOT")
    if wanted:
        shutil.copyfile(shot, wanted)
