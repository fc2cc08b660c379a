"""faxmail-milter: the daemon Postfix consults for every mail (smtpd_milters)."""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from faxmail.core.exitcodes import EX_CONFIG, EX_TEMPFAIL
from faxmail.core.settings import load_settings
from faxmail.core.yamlfile import ConfigError
from faxmail.daemon import socketfile
from faxmail.daemon.dispatchloop import DispatchThread
from faxmail.daemon.runtime import Runtime, build_runtime
from faxmail.store.errors import StoreSchemaOutdated, StoreUnavailable

log = logging.getLogger("faxmail.daemon")


HELP = """\
Decide, during the SMTP dialogue, whether mail to fax+<number>@<your domain> may be faxed:
sender authenticated (DKIM aligned with From:, SASL login or a trusted client network) and
allowed by the policy, destination allowed, limits kept. Accepted faxes are rendered with
Ghostscript and queued in faxmail's outbound queue before Postfix answers 250; its dispatcher
(a thread of this daemon) hands each call to Asterisk when the line and the number are free.
Everything else gets a specific 4xx/5xx. Mail to other addresses passes untouched.

Wire it into Postfix (main.cf; the socket unix:/var/spool/postfix/faxmail/milter.sock as
Debian's chrooted smtpd and cleanup see it):
    smtpd_milters = unix:/faxmail/milter.sock
    non_smtpd_milters = $smtpd_milters
    milter_protocol = 6
    milter_default_action = tempfail

With no --settings it runs on embedded defaults: socket inet:8894@127.0.0.1, state in
./faxmail-state, and a policy that allows nobody (printed at start).

Signals: SIGHUP reloads the policy (it also reloads by itself when the file changes; an
invalid edit is logged and the last good policy stays in force); SIGTERM stops.
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="faxmail-milter",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Check a policy before installing it: faxmail policy check FILE",
    )
    parser.add_argument(
        "--settings",
        type=Path,
        metavar="FILE",
        help="daemon settings YAML (socket, policy path, state_dir, dns, asterisk, log_level)",
    )
    parser.add_argument(
        "--socket", help="override the settings' socket, e.g. unix:/run/faxmail/milter.sock"
    )
    parser.add_argument(
        "--policy", type=Path, metavar="FILE", help="override the settings' policy file"
    )
    return parser.parse_args(argv)


def tame_malloc() -> None:
    """Give big mails' memory back to the system once they are decided.

    glibc raises its mmap threshold after each large free (up to 32 MB) and keeps an arena per
    thread, so a 20 MB mail's copies would stay in the process for good. A fixed threshold and
    two arenas keep the daemon's size near its working set.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return  # not glibc: nothing to tune
    m_mmap_threshold, m_arena_max = -3, -8  # from <malloc.h>
    libc.mallopt(m_mmap_threshold, 256 * 1024)
    libc.mallopt(m_arena_max, 2)


def setup_logging(level: str, log_file: Path | None) -> None:
    handler: logging.Handler = (
        logging.FileHandler(log_file) if log_file else logging.StreamHandler(sys.stderr)
    )
    handler.setFormatter(
        logging.Formatter(
            "%(asctime)s faxmail-milter[%(process)d] %(levelname)s %(name)s: %(message)s"
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def _secure_socket(path: Path, group: str | None) -> None:
    if not socketfile.wait_for(path):
        return  # libmilter failed to listen: its thread reports why
    socketfile.secure(path, group)
    if group is not None and not socketfile.enterable_by_group(path.parent, group):
        log.warning(
            "group %s cannot enter %s: Postfix will get 'Permission denied' on %s; "
            "make every directory above it enterable by %s",
            group,
            path.parent,
            path,
            group,
        )


def serve(runtime: Runtime) -> None:
    """Run libmilter in a thread; the main thread waits for signals.

    libmilter sigwaits for SIGHUP/SIGTERM itself and would stop on SIGHUP. Linux hands a
    process-directed signal to the main thread when it is waiting for it, so we get them first.
    """
    import Milter

    from faxmail.daemon.milterd import COUNTERS, FaxMilter

    FaxMilter.gateway = runtime.gateway
    FaxMilter.authserv_id = runtime.settings.authserv_id
    Milter.factory = FaxMilter
    Milter.set_flags(Milter.ADDHDRS | Milter.ADDRCPT | Milter.DELRCPT)
    wanted = {signal.SIGHUP, signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, wanted)
    settings = runtime.settings
    socket_path = socketfile.unix_socket_path(settings.socket)
    if socket_path is not None:
        try:
            socketfile.refuse_if_served(socket_path)
            socketfile.prepare_directory(socket_path, settings.socket_group)
        except (socketfile.SocketSetupError, OSError) as exc:
            runtime.close()
            print(f"faxmail-milter: cannot serve on {settings.socket}: {exc}", file=sys.stderr)
            raise SystemExit(EX_CONFIG) from None
    failure: list[Exception] = []

    def run() -> None:
        try:
            Milter.runmilter("faxmail", settings.socket, settings.milter_timeout)
        except Exception as exc:  # noqa: BLE001 - e.g. socket in use; the main thread reports it
            failure.append(exc)
        finally:
            os.kill(os.getpid(), signal.SIGTERM)  # wake the main thread

    thread = threading.Thread(target=run, name="libmilter", daemon=True)
    thread.start()
    if socket_path is not None:
        try:
            _secure_socket(socket_path, settings.socket_group)
        except socketfile.SocketSetupError as exc:
            failure.append(exc)
            os.kill(os.getpid(), signal.SIGTERM)
    if not failure:
        log.info("listening on %s; policy %s", settings.socket, runtime.policies.source)
    dispatch = None
    # No dispatcher when the spool is unusable (faxes get 451 anyway) or the socket failed.
    if runtime.dispatcher is not None and not failure:
        dispatch = DispatchThread(runtime.dispatcher, settings.state_dir)
        dispatch.start()
    while True:
        received = signal.sigwait(wanted)
        if received == signal.SIGHUP:
            log.info("SIGHUP: reloading the policy")
            runtime.policies.reload()
            continue
        break
    if thread.is_alive():
        import milter as libmilter  # pymilter's C module; smfi_stop()

        libmilter.stop()  # type: ignore[attr-defined]
        thread.join(timeout=10)
    if dispatch is not None:
        dispatch.stop()
    runtime.close()
    log.info("callbacks since start: %s", COUNTERS)
    if failure:
        print(f"faxmail-milter: cannot serve on {settings.socket}: {failure[0]}", file=sys.stderr)
        raise SystemExit(EX_CONFIG if isinstance(failure[0], socketfile.SocketSetupError) else 1)
    log.info("stopped")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tame_malloc()
    try:
        settings = load_settings(args.settings)
        overrides = {k: v for k, v in (("socket", args.socket), ("policy", args.policy)) if v}
        if overrides:
            settings = settings.model_copy(update=overrides)
        setup_logging(settings.log_level, settings.log_file)
        runtime = build_runtime(settings)
    except ConfigError as exc:
        print(f"faxmail-milter: configuration error in {exc.source}:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return EX_CONFIG
    except StoreSchemaOutdated as exc:
        print(f"faxmail-milter: {exc}", file=sys.stderr)
        return EX_CONFIG
    except StoreUnavailable as exc:
        print(
            f"faxmail-milter: cannot open the job store (try again later): {exc}", file=sys.stderr
        )
        return EX_TEMPFAIL
    serve(runtime)
    return 0


if __name__ == "__main__":
    sys.exit(main())
