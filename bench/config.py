"""Run sizes: the default run (about 10 minutes here) and --quick (about 2 minutes)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Config:
    quick: bool = False
    # 1. throughput: one-message connections per run, parallel sessions, rounds
    messages: int = 2000
    sessions: int = 8
    throughput_rounds: int = 7
    # 2. latency: rounds over all documents
    latency_rounds: int = 15
    # 3. memory: fresh milter per round
    memory_rounds: int = 3
    memory_mails: int = 10
    memory_mail_bytes: int = 20_000_000
    # 4. concurrency: senders x faxes each, rounds
    senders: int = 20
    faxes_per_sender: int = 6
    concurrency_rounds: int = 3
    # 5. legibility: renders per variant for timing (OCR runs once: it is deterministic)
    legibility_rounds: int = 3
    # 6. inbound conversion
    inbound_rounds: int = 3
    # 7. the outbound queue: faxes mailed at once per run (about 15 s on the line each), rounds
    queue_faxes: int = 10
    queue_rounds: int = 2
    # 8. the job store: admissions per run, rounds
    store_admissions: int = 400
    store_rounds: int = 3
    # 10. several hosts: faxes queued, then dispatched over 2 Asterisk hosts x 2 channels
    hosts_faxes: int = 100


DEFAULT = Config()
QUICK = Config(
    quick=True,
    messages=400,
    throughput_rounds=2,
    latency_rounds=3,
    memory_rounds=1,
    faxes_per_sender=1,
    concurrency_rounds=1,
    legibility_rounds=1,
    inbound_rounds=1,
    queue_faxes=4,
    queue_rounds=1,
    store_admissions=80,
    store_rounds=1,
    hosts_faxes=8,
)
