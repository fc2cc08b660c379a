"""Shared fixtures: test DNS with DKIM keys, private Postfix instances, milter processes.

Integration fixtures need root (Postfix) and the packages from ``scripts/install-deps
--test``. Logs of the milter and of Postfix are attached to the report of a failing test.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Generator, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from infra.dkimkeys import Signer, default_signers, dns_records
from infra.dns import DnsServer
from infra.milterproc import MilterProcess, faxmail_milter
from infra.postfix import PostfixInstance
from infra.protocols import MakePostfix, StartMilter
from infra.storekinds import open_store, pg_server, store_url  # noqa: F401 - fixtures

# ---------------------------------------------------------------- logs in failure reports

#: Per test: (title, function returning the text) to attach if the test fails.
_LOGS = pytest.StashKey[list[tuple[str, Callable[[], str]]]]()


def attach_log(request: pytest.FixtureRequest, title: str, read: Callable[[], str]) -> None:
    """Show ``read()`` in the report of the current test if it fails."""
    request.node.stash.setdefault(_LOGS, []).append((title, read))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    # The call report is made before fixture teardown, so processes and files still exist.
    if report.failed and report.when in ("setup", "call"):
        for title, read in item.stash.get(_LOGS, []):
            try:
                text = read()
            except Exception as e:  # noqa: BLE001  # a broken log must not hide the failure
                text = f"(could not read: {e!r})"
            report.sections.append((title, text[-20000:]))
    return report


# ---------------------------------------------------------------- temp dirs


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A short temp dir that Postfix's users can traverse.

    pytest's tmp_path lives under a 0700 directory (smtpd, running as postfix, could not
    reach a milter socket there) and is long (AF_UNIX paths are limited to 107 bytes).
    """
    path = Path(tempfile.mkdtemp(prefix="fxm-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------- DKIM keys and DNS


@pytest.fixture(scope="session")
def dkim_keys() -> dict[str, Signer]:
    """Test signers by role (see :func:`infra.dkimkeys.default_signers`)."""
    return default_signers()


@pytest.fixture(scope="session")
def _dns_session(dkim_keys: dict[str, Signer]) -> Iterator[DnsServer]:
    server = DnsServer()
    server.start(dns_records(dkim_keys))
    yield server
    server.cleanup()


@pytest.fixture
def dns(_dns_session: DnsServer, dkim_keys: dict[str, Signer]) -> Iterator[DnsServer]:
    """The session's dnsmasq serving the published test keys.

    A test may stop, pause or restart it with other records: it is put back (same port)
    afterwards, so the next test sees the default records again.
    """
    server = _dns_session
    defaults = DnsServer.normalise(dns_records(dkim_keys))
    yield server
    if not server.running or server.records != defaults:
        server.stop()
        server.start(defaults)


# ---------------------------------------------------------------- Postfix


@pytest.fixture
def make_postfix(request: pytest.FixtureRequest) -> Iterator[MakePostfix]:
    """Factory: a started :class:`PostfixInstance` (kwargs as its constructor), cleaned up
    after the test. ``milter`` may be a Postfix spec or a :class:`MilterProcess`."""
    instances: list[PostfixInstance] = []

    def make(milter: str | MilterProcess | None = None, **kwargs: Any) -> PostfixInstance:
        spec = milter.postfix_spec if isinstance(milter, MilterProcess) else milter
        pf = PostfixInstance(spec, **kwargs)
        instances.append(pf)
        attach_log(request, f"postfix maillog ({pf.base})", pf.log)
        pf.start()
        return pf

    yield make
    for pf in instances:
        pf.cleanup()


@pytest.fixture
def postfix(make_postfix: MakePostfix) -> PostfixInstance:
    """A started Postfix without milter."""
    return make_postfix()


# ---------------------------------------------------------------- the faxmail milter


@pytest.fixture
def start_milter(request: pytest.FixtureRequest, dns: DnsServer) -> Iterator[StartMilter]:
    """Factory: write settings + policy YAML to a fresh dir, start faxmail-milter, wait
    for its socket. Stopped (SIGTERM, then SIGKILL) after the test.

    Missing settings get defaults in that dir: ``socket`` (unix:DIR/milter.sock),
    ``policy`` (the written policy_yaml), ``state_dir``, ``log_level`` (debug),
    ``log_file``, ``authserv_id`` (mx.faxmail.test), ``dns`` (the test dnsmasq) and
    ``asterisk`` (spool DIR/asterisk with outgoing/, faxmail-staging/, fax/; user None).
    Given keys win (shallow merge). The full settings are in the returned ``.settings``.
    """
    started: list[MilterProcess] = []
    dirs: list[Path] = []

    def start(
        settings: Mapping[str, Any] | None = None,
        policy_yaml: str = "",
        *,
        timeout: float = 30,
    ) -> MilterProcess:
        d = Path(tempfile.mkdtemp(prefix="fxm-milter-"))
        d.chmod(0o755)  # smtpd (user postfix) must reach the socket inside
        dirs.append(d)
        proc = faxmail_milter(
            d, dns=(dns.host, dns.port), policy_yaml=policy_yaml, settings=settings
        )
        started.append(proc)
        attach_log(request, f"faxmail-milter log ({d})", proc.log)
        proc.start(timeout=timeout)
        return proc

    yield start
    for proc in started:
        proc.stop()
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)


# ---------------------------------------------------------------- Asterisk (Debian sid chroot)

from infra.asterisk import (  # noqa: E402
    AsteriskError,
    AsteriskInstance,
    StartAsterisk,
    asterisk_starter,
)


@pytest.fixture(scope="session")
def asterisk_root() -> Path:
    """The pristine Asterisk chroot from ``scripts/asterisk-chroot ensure``: built on first
    use (about a minute), restored from /var/cache/faxmail-test (seconds) or just checked.
    Fails, never skips, when it cannot be had."""
    import subprocess

    script = Path(__file__).resolve().parent.parent / "scripts" / "asterisk-chroot"
    proc = subprocess.run(
        [str(script), "ensure"], capture_output=True, text=True, timeout=1800, check=False
    )
    if proc.returncode != 0 or not proc.stdout.strip():
        pytest.fail(
            f"scripts/asterisk-chroot ensure failed (exit {proc.returncode}):\n{proc.stderr}",
            pytrace=False,
        )
    return Path(proc.stdout.strip().splitlines()[-1])


@pytest.fixture
def start_asterisk(request: pytest.FixtureRequest, asterisk_root: Path) -> Iterator[StartAsterisk]:
    """Factory: a started :class:`AsteriskInstance` in its own overlay of the chroot,
    stopped and unmounted after the test; its full log is attached to a failing test's report.

    ``start_asterisk(config_dir=None, *, files=None, spool_dir=None, binds=(), ro_binds=(),
    env=None, extra_modules=(), **template_values)``: the keyword arguments as the
    constructor's; every other keyword is a template value (``@NAME@`` in the config files).
    """
    instances: list[AsteriskInstance] = []

    def created(ast: AsteriskInstance) -> None:
        instances.append(ast)
        attach_log(request, f"asterisk full log ({ast.base})", ast.log)

    start = asterisk_starter(lambda: asterisk_root, created)
    yield start
    errors = []
    for ast in reversed(instances):
        try:
            ast.stop()
        except AsteriskError as e:
            errors.append(str(e))
    if errors:
        raise AsteriskError("; ".join(errors))
