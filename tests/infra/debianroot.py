"""A clean Debian 12 (bookworm) root for the install test, and throwaway overlays on top of it.

The base is ``debootstrap --variant=minbase bookworm`` and nothing else: none of this machine's
packages, no Python of ours. It is built once (about a minute), kept in ``$FAXMAIL_TEST_CACHE``
as a tarball keyed by :data:`RECIPE` and never written to by a test: every test mounts an
overlay on it (:class:`DebianRoot`), so what an install does disappears with the overlay.

Debian packages that an install inside an overlay downloads are kept in a host directory that
every overlay shares as its ``/var/cache/apt/archives``: the install still runs apt-get
update and install for real, it only skips downloading a ``.deb`` it already fetched.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

#: What the base is; changing it rebuilds the base (a new tarball name).
RECIPE = "bookworm minbase http://deb.debian.org/debian v1"
_SUITE, _VARIANT, _MIRROR = "bookworm", "minbase", "http://deb.debian.org/debian"

BASE = Path(os.environ.get("FAXMAIL_BOOKWORM_ROOT", "/var/lib/faxmail-test/bookworm-root"))
CACHE = Path(os.environ.get("FAXMAIL_TEST_CACHE", "/var/cache/faxmail-test"))
DEBS = CACHE / "bookworm-debs"


class DebianRootError(RuntimeError):
    """The base could not be built, or an overlay not mounted; the message has the output."""


def _recipe_tag() -> str:
    import hashlib

    return hashlib.sha256(RECIPE.encode()).hexdigest()[:12]


def run(argv: Sequence[str | Path], *, timeout: float = 600) -> str:
    proc = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        raise DebianRootError(
            f"{' '.join(map(str, argv))} exited {proc.returncode}:\n"
            f"{proc.stdout[-4000:]}{proc.stderr[-4000:]}"
        )
    return proc.stdout


def _build(target: Path) -> None:
    log = target.with_suffix(".debootstrap.log")
    try:
        run(["debootstrap", f"--variant={_VARIANT}", _SUITE, target, _MIRROR], timeout=1200)
    except DebianRootError as exc:
        raise DebianRootError(f"debootstrap failed (see {log}): {exc}") from exc
    # Maintainer scripts must start no daemon here, as in any build chroot.
    policy = target / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    (target / "etc/hostname").write_text("fax-gw\n")
    (target / ".faxmail-recipe").write_text(RECIPE + "\n")
    run(["chroot", target, "apt-get", "clean"])


def ensure_base() -> Path:
    """Build or restore the base if it is missing or of another recipe; return its path."""
    BASE.parent.mkdir(parents=True, exist_ok=True)
    tarball = CACHE / f"bookworm-root-{_recipe_tag()}.tar.gz"
    with open(f"{BASE}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        stamp = BASE / ".faxmail-recipe"
        if stamp.is_file() and stamp.read_text().strip() == RECIPE:
            return BASE
        new = BASE.with_name(BASE.name + ".new")
        shutil.rmtree(new, ignore_errors=True)
        new.mkdir()
        if tarball.is_file():
            run(["tar", "--numeric-owner", "-xzpf", tarball, "-C", new])
        else:
            _build(new)
            CACHE.mkdir(parents=True, exist_ok=True)
            run(["tar", "--numeric-owner", "-czf", f"{tarball}.tmp", "-C", new, "."])
            os.replace(f"{tarball}.tmp", tarball)
        shutil.rmtree(BASE, ignore_errors=True)
        new.rename(BASE)
    return BASE


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path``, deepest first."""
    top = str(path)
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].replace("\\040", " ")
            if mp == top or mp.startswith(top + "/"):
                found.append(mp)
    return list(reversed(found))


class DebianRoot:
    """An overlay on the base: ``root`` is a Debian 12 to install into; :meth:`close` drops it.

    /proc, /dev and /dev/pts are mounted inside; ``/etc/resolv.conf`` is the host's so that apt
    reaches the mirror.
    """

    def __init__(self) -> None:
        base = ensure_base()
        self.dir = Path(tempfile.mkdtemp(prefix="fxm-bookworm-"))
        self.dir.chmod(0o755)
        self.root = self.dir / "merged"
        upper, work = self.dir / "upper", self.dir / "work"
        for d in (self.root, upper, work):
            d.mkdir()
        try:
            run(
                [
                    "mount",
                    "-t",
                    "overlay",
                    "overlay",
                    "-o",
                    f"lowerdir={base},upperdir={upper},workdir={work}",
                    self.root,
                ]
            )
            run(["mount", "-t", "proc", "proc", self.root / "proc"])
            run(["mount", "--rbind", "/dev", self.root / "dev"])
            run(["mount", "--make-rslave", self.root / "dev"])
            DEBS.mkdir(parents=True, exist_ok=True)
            (DEBS / "partial").mkdir(exist_ok=True)
            run(["mount", "--bind", DEBS, self.root / "var/cache/apt/archives"])
            shutil.copy("/etc/resolv.conf", self.root / "etc/resolv.conf")
        except BaseException:
            self.close()
            raise

    def path(self, inside: str | Path) -> Path:
        """A path inside the root, as seen from the host."""
        return self.root / str(inside).lstrip("/")

    def run(self, *argv: str | Path, timeout: float = 600, env: Sequence[str] = ()) -> str:
        """Run a command inside the root as root, with a clean environment."""
        return run(["chroot", self.root, "/usr/bin/env", "-i", *_ENV, *env, *argv], timeout=timeout)

    def processes(self) -> list[int]:
        pids = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{entry}/root").startswith(str(self.root)):
                        pids.append(int(entry))
        return pids

    def close(self) -> None:
        import signal
        import time

        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in self.processes():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + 5
            while self.processes() and time.monotonic() < deadline:
                time.sleep(0.05)
        for mp in mounts_under(self.dir):
            if subprocess.run(["umount", mp], capture_output=True, check=False).returncode:
                subprocess.run(["umount", "-l", mp], capture_output=True, check=False)
        if not mounts_under(self.dir) and os.environ.get("FAXMAIL_TEST_KEEP") != "1":
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> DebianRoot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_ENV = (
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LC_ALL=C.UTF-8",
    "HOME=/root",
    "DEBIAN_FRONTEND=noninteractive",
)


@contextlib.contextmanager
def debian_root() -> Iterator[DebianRoot]:
    root = DebianRoot()
    try:
        yield root
    finally:
        root.close()
