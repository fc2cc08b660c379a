"""The policy the queue tests and benchmarks fax with: example.jp's staff may fax to the
loopback far end, no rate limits, English result mails (their text is matched); each caller
says only its lines and its retry rules."""

from __future__ import annotations

from infra.gateway import REMOTE_CHANNEL

#: The body of `retry:` most queue tests use (test_e2e_ami replaces exactly this text).
RETRY = "  max_attempts: 3\n  busy_retry_s: 5\n"


def queue_policy(
    lines: str, *, max_retries: int | None = None, retry: str = RETRY, fallbacks: str = ""
) -> str:
    """`lines`: the items of `lines:` (YAML, indented two spaces); `retry`: the body of
    `retry:`; `fallbacks`: more of `retry:` (e.g. its `fallbacks:` list)."""
    retries = f"  max_retries: {max_retries}\n" if max_retries is not None else ""
    return (
        "fax_address: {domains: [example.jp]}\n"
        "senders:\n"
        '  - address: "@example.jp"\n'
        "language: en\n"
        "limits: {per_hour: null, per_day: null}\n"
        "notify:\n"
        '  from_address: "FAX Gateway <fax-gw@example.jp>"\n'
        "  keep_sent_tiff_days: 0\n"
        "fax:\n"
        f'  channel: "{REMOTE_CHANNEL}"\n'
        f"{retries}"
        "  retry_time: 10\n"
        "  wait_time: 20\n"
        f"lines:\n{lines}"
        f"retry:\n{retry}{fallbacks}"
        "inbound:\n"
        "  default: [fax-inbox@example.jp]\n"
    )


def line(name: str, channels: int, host: str | None = None, prefixes: str | None = None) -> str:
    """One item of `lines:` dialling the loopback far end."""
    extra = (f", host: {host}" if host else "") + (f", prefixes: {prefixes}" if prefixes else "")
    return f'  - {{name: {name}, channel: "{REMOTE_CHANNEL}", channels: {channels}{extra}}}\n'


def host_lines(channels: int) -> str:
    """A line on each of the two Asterisk hosts (pbx1, pbx2), `channels` calls each."""
    return line("line1", channels, host="pbx1") + line("line2", channels, host="pbx2")
