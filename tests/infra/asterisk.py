"""A real Asterisk 22 in a Debian sid chroot, for end-to-end tests (must run as root).

``scripts/asterisk-chroot ensure`` builds the chroot (``root``); it is a pristine base that no
test writes to. Every :class:`AsteriskInstance` mounts a throwaway overlay on top of it, so
instances (also of concurrent test sessions) never see each other's configuration, astdb,
logs or control socket. Layout under ``base`` (default ``<root>.instances/<random>/``)::

    upper/ work/  the overlay's writable layer: everything Asterisk writes (logs, astdb)
    merged/       the chroot Asterisk runs in (the overlay; /proc and the bind mounts inside)
    etc/          the rendered configuration, bind-mounted at /etc/asterisk
    owner         "<pid> <start time>" of the test process, to clear leftovers of a killed run
    stdout.log    Asterisk's own stdout/stderr (start-up errors before the logger runs)

Paths. The chroot shares the host's network namespace (a SIP port or Postfix on 127.0.0.1 is
the same on both sides) but not its filesystem. Host directories both sides use are
bind-mounted at the *identical* absolute path inside the chroot, so a path means the same
file on both sides and nothing needs translating:

* ``spool_dir``: Asterisk's ``astspooldir``. The milter on the host renames call files into
  ``<spool_dir>/outgoing`` and puts the TIFFs somewhere under ``spool_dir``; the ``FAXFILE``
  it writes into the call file is valid inside the chroot as it is. The tree is chowned to
  the chroot's asterisk user (:attr:`AsteriskInstance.uid` / :attr:`~AsteriskInstance.gid`,
  fixed at 64600 by the recipe) at start, because Asterisk must be able to write there. Call
  files written later must be owned by that uid too (``scripts/asterisk-chroot host-user``
  creates a host user ``asterisk`` with it, for a milter that chowns to "asterisk").
* ``binds`` (read-write) and ``ro_binds`` (read-only): anything else, e.g. the checkout,
  read-only, so that the notify program can run from it inside the chroot with
  ``PYTHONPATH=<checkout>/milter`` (pass it in ``env``: System() children
  inherit Asterisk's environment; sid's python3 with the packages of the recipe). Asterisk
  can only traverse a bind whose host directory it could traverse itself: the directories
  *above* it are made 0755 inside the chroot, but the bound directory keeps its host mode
  (pytest's tmp_path is 0700 - use a 0755 dir).

Configuration. The files of ``config_dir`` (recursively) and then ``files`` (name -> text,
these win) are copied to /etc/asterisk with ``@NAME@`` replaced by ``template_values[NAME]``
(``@SPOOL_DIR@`` is predefined: the astspooldir). ``${...}`` is Asterisk's own syntax and is
left alone; an upper-case ``@NAME@`` left over after substitution is an error (a typo or a
missing value). ``asterisk.conf`` and ``logger.conf`` are always generated here (directories,
``runuser = asterisk``, a ``full`` log with verbose messages); a ``modules.conf`` is
generated (``autoload = no`` with :data:`FAX_MODULES`, plus :data:`PJSIP_MODULES` when there
is a pjsip.conf, plus ``extra_modules``) unless the configuration brings its own; so are a
cdr.conf and cel.conf that disable both, and the package's indications.conf (copied as is).
The package's other sample files are not visible: /etc/asterisk is only what is written here.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

#: Modules for G.711 fax over Local channels, call files and System().
FAX_MODULES: tuple[str, ...] = (
    "res_timing_timerfd",
    "codec_ulaw",
    "codec_alaw",
    "format_wav",
    "res_fax",
    "res_fax_spandsp",
    "pbx_config",
    "pbx_spool",
    "app_system",
    "app_verbose",
    "func_strings",
    "func_logic",
    "func_channel",
    "func_callerid",
    "func_env",
)

#: Added when the configuration has a pjsip.conf: SIP with T.38.
PJSIP_MODULES: tuple[str, ...] = (
    "res_sorcery_config",
    "res_sorcery_memory",
    "res_sorcery_astdb",
    "res_pjproject",
    "res_pjsip",
    "res_pjsip_session",
    "res_pjsip_pubsub",
    "chan_pjsip",
    "res_pjsip_sdp_rtp",
    "res_rtp_asterisk",
    "res_pjsip_t38",
    "res_pjsip_endpoint_identifier_ip",
)

_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_GENERATED = ("asterisk.conf", "logger.conf")
#: Written unless the configuration has them (quiet start, no CDR files).
_DEFAULT_FILES = {"cdr.conf": "[general]\nenable = no\n", "cel.conf": "[general]\nenable = no\n"}
#: Copied from the package's samples unless the configuration has them (tones for Busy() etc.).
_PACKAGE_DEFAULTS = ("indications.conf",)
_LEFTOVER_PLACEHOLDER = re.compile(r"@[A-Z][A-Z0-9_]*@")


def manager_conf(
    port: int, username: str, secret: str, *, tls_port: int | None = None, tls_files: str = ""
) -> str:
    """A manager.conf with AMI on 127.0.0.1:`port` and one user allowed to Originate (the
    manager is part of Asterisk's core: no module to load). Pass it as ``files``. With
    `tls_port`: TLS there too, with /etc/asterisk/`tls_files`-cert.pem and -key.pem (pass
    them as ``files`` as well)."""
    tls = (
        "tlsenable = yes\n"
        f"tlsbindaddr = 127.0.0.1:{tls_port}\n"
        f"tlscertfile = /etc/asterisk/{tls_files}-cert.pem\n"
        f"tlsprivatekey = /etc/asterisk/{tls_files}-key.pem\n"
        if tls_port is not None
        else ""
    )
    return (
        "[general]\n"
        "enabled = yes\n"
        f"port = {port}\n"
        "bindaddr = 127.0.0.1\n"
        "displayconnects = no\n"
        f"{tls}"
        f"[{username}]\n"
        f"secret = {secret}\n"
        "deny = 0.0.0.0/0.0.0.0\n"
        "permit = 127.0.0.1/255.255.255.255\n"
        "read = system,call\n"
        "write = originate,call\n"
    )


class AsteriskError(RuntimeError):
    """Asterisk could not be set up, started or talked to; the message says why."""


class StartAsterisk(Protocol):
    """Type of the ``start_asterisk`` fixture: a started :class:`AsteriskInstance`."""

    def __call__(
        self,
        config_dir: Path | None = None,
        *,
        files: Mapping[str, str] | None = None,
        spool_dir: Path | None = None,
        binds: Iterable[Path] = (),
        ro_binds: Iterable[Path] = (),
        env: Mapping[str, str] | None = None,
        extra_modules: Iterable[str] = (),
        **template_values: object,
    ) -> AsteriskInstance: ...


def asterisk_starter(
    root: Callable[[], Path], on_created: Callable[[AsteriskInstance], object]
) -> StartAsterisk:
    """A :class:`StartAsterisk` over the chroot that ``root()`` gives (asked at each start, so
    a chroot built on first use is built only when an Asterisk is wanted). Each instance is
    handed to ``on_created`` before it starts: to stop it later, to attach its log."""

    def start(
        config_dir: Path | None = None,
        *,
        files: Mapping[str, str] | None = None,
        spool_dir: Path | None = None,
        binds: Iterable[Path] = (),
        ro_binds: Iterable[Path] = (),
        env: Mapping[str, str] | None = None,
        extra_modules: Iterable[str] = (),
        **template_values: object,
    ) -> AsteriskInstance:
        ast = AsteriskInstance(
            root(),
            config_dir,
            files=files,
            template_values=template_values,
            spool_dir=spool_dir,
            binds=binds,
            ro_binds=ro_binds,
            env=env,
            extra_modules=extra_modules,
        )
        on_created(ast)
        ast.start()
        return ast

    return start


# ---------------------------------------------------------------- mounts and processes


def _run(argv: Sequence[str | Path], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=timeout, check=False
    )


def _check(argv: Sequence[str | Path], timeout: float = 30) -> str:
    proc = _run(argv, timeout)
    if proc.returncode != 0:
        cmd = " ".join(str(a) for a in argv)
        raise AsteriskError(f"{cmd}: exit {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


def _unescape_mountinfo(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mounts_under(path: Path) -> list[Path]:
    """Mount points at or below ``path``, deepest first (unmount order)."""
    top = str(path)
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = _unescape_mountinfo(line.split()[4])
            if mp == top or mp.startswith(top + "/"):
                found.append(Path(mp))
    # Later mounts are listed later; deeper ones must go first, and for the same path
    # (stacked mounts) the later one first.
    order = {p: i for i, p in enumerate(found)}
    return sorted(set(found), key=lambda p: (len(p.parts), order[p]), reverse=True)


def processes_in(root: Path) -> list[int]:
    """PIDs of the processes whose root directory is ``root`` (Asterisk and its children)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry}/root") == str(root):
                pids.append(int(entry))
        except OSError:
            continue
    return pids


def _kill_all(root: Path, grace: float) -> None:
    """SIGTERM, then SIGKILL every process chrooted in ``root``; wait until they are gone."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        pids = processes_in(root)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while processes_in(root) and time.monotonic() < deadline:
            time.sleep(0.05)
    if processes_in(root):
        raise AsteriskError(f"processes in {root} survive SIGKILL: {processes_in(root)}")


def _unmount_all(base: Path) -> None:
    """Unmount everything at or below ``base``; lazily if a mount stays busy."""
    for mp in mounts_under(base):
        if _run(["umount", mp]).returncode != 0:
            _run(["umount", "-l", mp])
    left = mounts_under(base)
    if left:
        raise AsteriskError(f"still mounted: {', '.join(map(str, left))}")


def _remove(base: Path) -> None:
    """Delete an instance directory, never through a mount point."""
    if mounts_under(base):
        raise AsteriskError(f"not deleting {base}: something is still mounted below it")
    shutil.rmtree(base, ignore_errors=True)


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def clear_leftovers(instances_dir: Path) -> None:
    """Stop, unmount and delete instances whose owning test process is gone."""
    if not instances_dir.is_dir():
        return
    for base in instances_dir.iterdir():
        try:
            pid_s, started = (base / "owner").read_text().split()
        except (OSError, ValueError):
            # No owner file: a start that died before writing it, or a foreign directory.
            if base.stat().st_mtime > time.time() - 3600:
                continue
        else:
            if _start_time(int(pid_s)) == started:
                continue  # still running
        _kill_all(base / "merged", grace=2)
        _unmount_all(base)
        _remove(base)


# ---------------------------------------------------------------- the instance


def _passwd_entry(root: Path, user: str) -> tuple[int, int]:
    for line in (root / "etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == user:
            return int(fields[2]), int(fields[3])
    raise AsteriskError(f"no user {user!r} in {root}/etc/passwd")


def _module_dir(root: Path) -> str:
    found = sorted(root.glob("usr/lib/*/asterisk/modules"))
    if not found:
        raise AsteriskError(f"no Asterisk module directory in {root}")
    return "/" + str(found[0].relative_to(root))


def _inside(path: Path) -> Path:
    """``path`` as a relative path, for joining under the chroot."""
    if not path.is_absolute():
        raise AsteriskError(f"bind paths must be absolute: {path}")
    return path.relative_to("/")


class AsteriskInstance:
    """One Asterisk in its own overlay of the chroot ``root``; see the module docstring.

    Call :meth:`start`, and :meth:`stop` (safe at any time, also
    after a failed start; it always unmounts). After :meth:`stop` the log stays readable.
    """

    def __init__(
        self,
        root: Path,
        config_dir: Path | None = None,
        *,
        files: Mapping[str, str] | None = None,
        template_values: Mapping[str, object] | None = None,
        spool_dir: Path | None = None,
        binds: Iterable[Path] = (),
        ro_binds: Iterable[Path] = (),
        env: Mapping[str, str] | None = None,
        modules: Iterable[str] | None = None,
        extra_modules: Iterable[str] = (),
        verbose: int = 5,
        base: Path | None = None,
        keep: bool = False,
    ) -> None:
        self.root = Path(root).resolve()
        if not (self.root / "usr/sbin/asterisk").exists():
            raise AsteriskError(f"{self.root} has no Asterisk (run scripts/asterisk-chroot)")
        self.config_dir = config_dir
        self.files = dict(files or {})
        self.spool_dir = spool_dir.resolve() if spool_dir else None
        self.binds = [Path(p).resolve() for p in binds]
        self.ro_binds = [Path(p).resolve() for p in ro_binds]
        #: Inside the chroot: astspooldir.
        self.chroot_spool = self.spool_dir or Path("/var/spool/asterisk")
        self.template_values: dict[str, object] = {"SPOOL_DIR": self.chroot_spool}
        self.template_values.update(template_values or {})
        self.env = {
            "PATH": _PATH,
            "HOME": "/var/lib/asterisk",
            "LANG": "C.UTF-8",
            "TZ": "UTC",
        }
        self.env.update(env or {})
        self.modules = list(modules) if modules is not None else None
        self.extra_modules = list(extra_modules)
        self.verbose = verbose
        self.keep = keep
        self.instances_dir = self.root.parent / (self.root.name + ".instances")
        self._own_base = base is None
        self.base = base or self.instances_dir / secrets.token_hex(4)
        self.merged = self.base / "merged"
        self.etc = self.base / "etc"
        self.uid, self.gid = _passwd_entry(self.root, "asterisk")
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock: int | None = None
        self._final_log: str | None = None
        self.started = False

    # ------------------------------------------------------------ paths

    @property
    def log_path(self) -> Path:
        """Host path of the ``full`` log (in the overlay's upper layer: survives unmount)."""
        return self.base / "upper/var/log/asterisk/full"

    @property
    def spool(self) -> Path:
        """Host path of Asterisk's spool directory (``spool_dir`` if given)."""
        return self.spool_dir or self.merged / "var/spool/asterisk"

    def host_path(self, chroot_path: str | Path) -> Path:
        """Host path of a path inside the running chroot (identical inside a bind)."""
        p = Path(chroot_path)
        for b in [*self.binds, *self.ro_binds, *([self.spool_dir] if self.spool_dir else [])]:
            if p == b or b in p.parents:
                return p
        return self.merged / _inside(p)

    # ------------------------------------------------------------ life cycle

    def start(self, timeout: float = 60) -> None:
        """Mount, configure and start Asterisk; return when it is fully booted."""
        if self.started:
            return
        self.started = True
        try:
            self._take_lock()
            clear_leftovers(self.instances_dir)
            self._mount()
            self._write_config()
            self._prepare_dirs()
            self._launch(timeout)
        except BaseException:
            self.stop()
            raise

    def _take_lock(self) -> None:
        # Shared: `scripts/asterisk-chroot` replaces the chroot only under an exclusive lock.
        fd = os.open(f"{self.root}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_SH)
        self._lock = fd

    def _mount(self) -> None:
        upper, work = self.base / "upper", self.base / "work"
        for d in (upper, work, self.merged, self.etc):
            d.mkdir(parents=True)
        self.base.chmod(0o755)
        pid = os.getpid()
        (self.base / "owner").write_text(f"{pid} {_start_time(pid)}\n")
        _check(
            [
                "mount",
                "-t",
                "overlay",
                "overlay",
                "-o",
                f"lowerdir={self.root},upperdir={upper},workdir={work}",
                self.merged,
            ]
        )
        _check(["mount", "-t", "proc", "proc", self.merged / "proc"])
        self._bind(self.etc, Path("/etc/asterisk"), read_only=False)
        if self.spool_dir:
            self.spool_dir.mkdir(parents=True, exist_ok=True)
            self._bind(self.spool_dir, self.spool_dir, read_only=False)
        for b in self.binds:
            self._bind(b, b, read_only=False)
        for b in self.ro_binds:
            self._bind(b, b, read_only=True)

    def _bind(self, host: Path, inside: Path, *, read_only: bool) -> None:
        target = self.merged / _inside(inside)
        if not target.exists():
            # Directories created here exist only in this overlay; asterisk must traverse.
            missing = [p for p in [target, *target.parents] if not p.exists()]
            for p in reversed(missing):
                p.mkdir(mode=0o755)
                p.chmod(0o755)
        _check(["mount", "--bind", host, target])
        if read_only:
            _check(["mount", "-o", "remount,bind,ro", target])

    def _render(self, name: str, text: str) -> str:
        for key, value in self.template_values.items():
            text = text.replace(f"@{key}@", str(value))
        left = sorted(set(_LEFTOVER_PLACEHOLDER.findall(text)))
        if left:
            raise AsteriskError(f"{name}: no template value for {', '.join(left)}")
        return text

    def _write_config(self) -> None:
        sources: dict[str, bytes] = {}
        if self.config_dir is not None:
            for p in sorted(Path(self.config_dir).rglob("*")):
                if p.is_file():
                    sources[str(p.relative_to(self.config_dir))] = p.read_bytes()
        for name, text in self.files.items():
            sources[name] = text.encode()
        for name in _GENERATED:
            sources.pop(name, None)
        for name, text in _DEFAULT_FILES.items():
            sources.setdefault(name, text.encode())
        for name in _PACKAGE_DEFAULTS:
            sample = self.root / "etc/asterisk" / name
            if name not in sources and sample.exists():
                sources[name] = sample.read_bytes()
        for name, raw in sources.items():
            target = self.etc / name
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                text = raw.decode()
            except UnicodeDecodeError:
                target.write_bytes(raw)
            else:
                target.write_text(self._render(name, text))
        (self.etc / "asterisk.conf").write_text(self._asterisk_conf())
        (self.etc / "logger.conf").write_text(
            "[general]\n"
            "dateformat = %F %T.%3q\n"
            "[logfiles]\n"
            f"full => notice,warning,error,debug,verbose({self.verbose}),dtmf,fax\n"
        )
        if "modules.conf" not in sources:
            mods = list(self.modules) if self.modules is not None else list(FAX_MODULES)
            if self.modules is None and "pjsip.conf" in sources:
                mods += PJSIP_MODULES
            mods += self.extra_modules
            lines = ["[modules]", "autoload = no"]
            lines += [f"load = {m if m.endswith('.so') else m + '.so'}" for m in mods]
            (self.etc / "modules.conf").write_text("\n".join(lines) + "\n")
        for p in [self.etc, *self.etc.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)

    def _asterisk_conf(self) -> str:
        return (
            "[directories]\n"
            "astetcdir => /etc/asterisk\n"
            f"astmoddir => {_module_dir(self.root)}\n"
            "astvarlibdir => /var/lib/asterisk\n"
            "astdbdir => /var/lib/asterisk\n"
            "astkeydir => /var/lib/asterisk\n"
            "astdatadir => /usr/share/asterisk\n"
            "astagidir => /usr/share/asterisk/agi-bin\n"
            f"astspooldir => {self.chroot_spool}\n"
            "astrundir => /var/run/asterisk\n"
            "astlogdir => /var/log/asterisk\n"
            "astsbindir => /usr/sbin\n"
            "astcachedir => /var/cache/asterisk\n"
            "[options]\n"
            "runuser = asterisk\n"
            "rungroup = asterisk\n"
            f"verbose = {self.verbose}\n"
            "debug = 0\n"
            "documentation_language = en_US\n"
        )

    def _prepare_dirs(self) -> None:
        for d in ("run/asterisk", "var/log/asterisk", "var/lib/asterisk", "var/spool/asterisk"):
            p = self.merged / d
            p.mkdir(parents=True, exist_ok=True)
            os.chown(p, self.uid, self.gid)
        if self.spool_dir:
            for p in [self.spool_dir, *self.spool_dir.rglob("*")]:
                os.chown(p, self.uid, self.gid, follow_symlinks=False)

    def _launch(self, timeout: float) -> None:
        out = open(self.base / "stdout.log", "wb")  # noqa: SIM115  # closed in stop()
        # -f: stay in the foreground, so the pid is ours and an early death is visible.
        self._proc = subprocess.Popen(
            ["chroot", str(self.merged), "/usr/sbin/asterisk", "-f"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,
        )
        out.close()
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                raise AsteriskError(
                    f"Asterisk exited at start (status {self._proc.returncode}):\n"
                    + self._startup_output()
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AsteriskError(
                    f"Asterisk not fully booted after {timeout} s:\n" + self._startup_output()
                )
            proc = self._asterisk_rx("core waitfullybooted", timeout=remaining)
            if proc is not None and proc.returncode == 0 and "fully booted" in proc.stdout:
                return
            time.sleep(0.1)

    def _startup_output(self) -> str:
        parts = []
        for p in (self.base / "stdout.log", self.log_path):
            with contextlib.suppress(OSError):
                parts.append(f"--- {p}\n{p.read_text(errors='replace')[-5000:]}")
        return "\n".join(parts)

    def _asterisk_rx(self, command: str, timeout: float) -> subprocess.CompletedProcess[str] | None:
        try:
            return subprocess.run(
                ["chroot", str(self.merged), "/usr/sbin/asterisk", "-rx", command],
                capture_output=True,
                text=True,
                timeout=timeout,
                env={"PATH": _PATH, "LANG": "C.UTF-8"},
                check=False,
            )
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 15) -> None:
        """``core stop now``, kill what is left, unmount everything, delete the instance dir
        (unless ``keep``). Idempotent; the log is kept in memory for :meth:`log`."""
        if not self.started:
            return
        self.started = False
        errors: list[str] = []
        try:
            if self._proc is not None and self._proc.poll() is None:
                self._asterisk_rx("core stop now", timeout=timeout)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._proc.wait(timeout=timeout)
            if self.merged.exists():
                _kill_all(self.merged, grace=5)
            if self._proc is not None and self._proc.poll() is None:
                self._proc.kill()
                self._proc.wait(timeout=10)
        except Exception as e:  # noqa: BLE001  # unmount anyway
            errors.append(f"stopping: {e!r}")
        with contextlib.suppress(OSError):
            self._final_log = self.log_path.read_text(errors="replace")
        try:
            _unmount_all(self.base)
        except AsteriskError as e:
            errors.append(str(e))
        if not errors and not self.keep and self._own_base:
            try:
                _remove(self.base)
            except AsteriskError as e:
                errors.append(str(e))
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None
        if errors:
            raise AsteriskError("; ".join(errors))

    # ------------------------------------------------------------ talking to it

    @property
    def pid(self) -> int | None:
        """PID of the Asterisk main process (as seen from the host), while running."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def cli(self, command: str, timeout: float = 30) -> str:
        """Run a CLI command (``asterisk -rx``) and return its output."""
        if not self.started:
            raise AsteriskError("Asterisk is not running")
        proc = self._asterisk_rx(command, timeout)
        if proc is None:
            raise AsteriskError(f"{command!r}: no answer within {timeout} s")
        if proc.returncode != 0:
            raise AsteriskError(f"{command!r}: exit {proc.returncode}: {proc.stdout}{proc.stderr}")
        return proc.stdout

    def log(self) -> str:
        """The whole ``full`` log so far (also after :meth:`stop`)."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return self._final_log or ""

    def log_mark(self) -> int:
        """Current length of :meth:`log`, for ``wait_for_log(..., since=mark)``."""
        return len(self.log())

    def wait_for_log(
        self, pattern: str | re.Pattern[str], timeout: float = 60, since: int = 0
    ) -> re.Match[str]:
        """Wait until the log (from character ``since`` on) matches ``pattern`` (multiline).

        Raises TimeoutError, or AsteriskError at once if Asterisk has died.
        """
        rx = re.compile(pattern, re.MULTILINE) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.log(), since)
            if m:
                return m
            if self._proc is None or self._proc.poll() is not None:
                raise AsteriskError(f"Asterisk is not running; {rx.pattern!r} not in the log")
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{rx.pattern!r} not in the Asterisk log after {timeout} s")
            time.sleep(0.1)

    def spool_call_file(
        self, text: str, name: str | None = None, *, mtime: float | None = None
    ) -> Path:
        """Queue a call file the way Asterisk wants it: written completely next to
        ``outgoing/``, owned by asterisk, then renamed in. ``mtime`` in the future delays the
        call. Returns the host path in ``outgoing/``."""
        outgoing = self.spool / "outgoing"
        outgoing.mkdir(exist_ok=True)
        os.chown(outgoing, self.uid, self.gid)
        name = name or f"test-{secrets.token_hex(4)}.call"
        tmp = self.spool / f".{name}.tmp"
        tmp.write_text(text)
        os.chown(tmp, self.uid, self.gid)
        if mtime is not None:
            os.utime(tmp, (mtime, mtime))
        target = outgoing / name
        tmp.rename(target)
        return target
