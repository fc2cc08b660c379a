"""Where the memory of one big fax mail goes: tracemalloc around each step of Gateway.decide.

Runs the daemon's own code in-process (faxmail.daemon.runtime builds the Gateway from settings, in
dry-run mode so nothing is queued), after reproducing what milterd.eom does with the spooled
body. Each step is wrapped in the faxmail.outbound.decision namespace; per step it records how much
Python memory was live before it, its peak above that, and what it left allocated.
Run alone: ``.venv/bin/python -m bench.memprofile`` (also called by benchmark 3).
"""

from __future__ import annotations

import functools
import tempfile
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from .lab import Lab

MIB = 1024 * 1024
F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class Step:
    name: str
    live_before: float  # MiB
    peak_above: float  # MiB above live_before while the step ran
    left: float  # MiB still allocated after it (kept by the caller, or garbage not yet freed)

    def __str__(self) -> str:
        return (
            f"{self.name}: {self.live_before:.0f} MiB live before, peak +{self.peak_above:.0f} "
            f"MiB, +{self.left:.0f} MiB after"
        )


def _measured(name: str, steps: list[Step], fn: F) -> F:
    @functools.wraps(fn)
    def inner(*args: Any, **kwargs: Any) -> Any:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        try:
            return fn(*args, **kwargs)
        finally:
            now, peak = tracemalloc.get_traced_memory()
            steps.append(Step(name, before / MIB, (peak - before) / MIB, (now - before) / MIB))

    return inner  # type: ignore[return-value]


def profile(mail: bytes, lab: Lab) -> tuple[list[Step], float]:
    """Steps of one decide() for ``mail`` and the overall traced peak (MiB)."""
    import faxmail.outbound.decision as decision
    from faxmail.core.session import Session
    from faxmail.core.settings import Settings
    from faxmail.daemon.runtime import build_runtime
    from faxmail.outbound.recipient import parse_recipient
    from faxmail.render.renderer import Renderer

    from .lab import POLICY

    work = Path(tempfile.mkdtemp(prefix="memprofile-", dir=lab.dir))
    policy = work / "policy.yaml"
    policy.write_text(POLICY)
    spool = work / "asterisk"
    for sub in ("outgoing", "faxmail-staging", "fax"):
        (spool / sub).mkdir(parents=True)
    settings = Settings.model_validate(
        {
            "policy": str(policy),
            "state_dir": str(work / "state"),
            "dns": {"nameservers": [lab.dns.host], "port": lab.dns.port, "timeout": 2},
            "asterisk": {"spool_dir": str(spool), "user": None},
        }
    )
    runtime = build_runtime(settings, mode="dry-run")
    steps: list[Step] = []
    names = ("parse_message_file", "message_facts", "identify_sender", "extract_documents")
    originals = {n: getattr(decision, n) for n in names}
    try:
        for name, fn in originals.items():
            setattr(decision, name, _measured(name, steps, fn))
        render = Renderer.render
        Renderer.render = _measured("render", steps, render)  # type: ignore[method-assign]
        policy_now = runtime.gateway.policy
        rcpt = parse_recipient(
            "fax+03-1234-5678@example.jp", policy_now.fax_address, policy_now.destinations.region
        )
        assert rcpt is not None
        tracemalloc.start()
        # milterd: the mail spooled as it arrives (1 MiB in memory, then disk), decided from
        # the spool file
        with tempfile.SpooledTemporaryFile(max_size=1024 * 1024) as content:
            for i in range(0, len(mail), 65536):
                content.write(mail[i : i + 65536])
            runtime.gateway.decide(Session("alice@example.jp"), [rcpt], content)
        tracemalloc.stop()
    finally:
        for name, fn in originals.items():
            setattr(decision, name, fn)
        Renderer.render = render  # type: ignore[method-assign]
        runtime.close()
    # each step resets the peak, so the overall one is the highest of theirs
    return steps, max(s.live_before + s.peak_above for s in steps)


def main() -> None:
    from .documents import padded_pdf
    from .mails import fax_mail

    with Lab("memprofile") as lab:
        mail = fax_mail(lab.signer, padded_pdf(int(20_000_000 / 1.37)))
        steps, peak = profile(mail, lab)
    print(f"mail {len(mail) / MIB:.1f} MiB; traced peak {peak:.0f} MiB")
    for step in steps:
        print(" ", step)


if __name__ == "__main__":
    main()
