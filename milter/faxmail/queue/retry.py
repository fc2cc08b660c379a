"""After a call that did not send the fax: when to call again, with what changed, or give up.

- busy or congestion: someone else has the far line; call again soon, after busy_retry_s spread
  at random (the `rng`, injected) so that jobs do not redial in step. The first
  max_busy_attempts of them are free: they do not count as real tries;
- no answer, or the call could not be placed: after fax.retry_time, as a real try;
- answered but the fax failed: after fax.retry_time, as a real try, with the next entry of
  retry.fallbacks (ECM off, a lower bit rate, T.38 off...);
- our own fax file could not be sent: no call can cure that, give up at once.
A job gives up once its real tries reach retry.max_attempts (fax.max_retries + 1 when unset).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from faxmail.core.policy import Policy
from faxmail.core.queuepolicy import Fallback
from faxmail.queue.model import History, Outcome


class Uniform(Protocol):
    """What the retry decision needs of a random source (random.Random has it)."""

    def uniform(self, a: float, b: float) -> float: ...


@dataclass(frozen=True)
class Retry:
    not_before: datetime
    attempt: int  # the number of the next call
    fallback: Fallback | None  # what it changes; None: the dialplan's own settings


class GiveUpReason(StrEnum):
    ATTEMPTS_USED = "attempts-used"  # real tries reached max_attempts
    NOT_RETRYABLE = "not-retryable"  # no new call can cure this outcome


@dataclass(frozen=True)
class GiveUp:
    reason: GiveUpReason


def fallback_after(fax_failures: int, fallbacks: tuple[Fallback, ...]) -> Fallback | None:
    """What the call after `fax_failures` failed faxes changes: the n-th entry, the last beyond."""
    if fax_failures == 0 or not fallbacks:
        return None
    return fallbacks[min(fax_failures, len(fallbacks)) - 1]


def next_attempt(
    outcome: Outcome, history: History, policy: Policy, now: datetime, rng: Uniform
) -> Retry | GiveUp:
    """Decide after the call that just ended with `outcome`, at `now`.

    `history` holds the job's calls before this one. Sent and cancelled jobs have nothing to
    decide (ValueError).
    """
    if outcome.ends_job:
        raise ValueError(f"a job whose call ended {outcome} has no next attempt")
    if outcome is Outcome.LOCAL_ERROR:
        return GiveUp(GiveUpReason.NOT_RETRYABLE)
    rules = policy.retry
    attempt = len(history.attempts) + 1  # the call that just ended
    busy = history.count(Outcome.BUSY, Outcome.CONGESTION) + outcome.line_busy
    fax_failures = history.count(Outcome.FAX_FAILED) + (outcome is Outcome.FAX_FAILED)
    fallback = fallback_after(fax_failures, rules.fallbacks)
    if outcome.line_busy and busy <= rules.max_busy_attempts:
        spread = rules.busy_retry_s * rng.uniform(-rules.busy_jitter, rules.busy_jitter)
        delay = timedelta(seconds=rules.busy_retry_s + spread)
        return Retry(now + delay, attempt + 1, fallback)
    real_tries = attempt - min(busy, rules.max_busy_attempts)
    if real_tries >= (rules.max_attempts or policy.fax.max_retries + 1):
        return GiveUp(GiveUpReason.ATTEMPTS_USED)
    return Retry(now + timedelta(seconds=policy.fax.retry_time), attempt + 1, fallback)
