"""After a call of a job in faxmail's queue: call again (when, with which fallback) or give up.

The decision is faxmail.queue.retry.next_attempt over the job's calls so far; this module reads
those from the store and maps the older knobs onto it: retry.max_attempts defaults to
fax.max_retries + 1 (queuepolicy), and while it is unset a failed fax is called again only
notify.fax_retries times, as before the queue (0: a failed fax ends the job).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime

from faxmail.core.policy import Policy
from faxmail.core.queuepolicy import Fallback
from faxmail.queue.model import (
    AttemptRecord,
    History,
    Outcome,
    answered_outcome,
    unanswered_outcome,
)
from faxmail.queue.retry import GiveUp, GiveUpReason, Retry, next_attempt
from faxmail.store.model import Attempt, AttemptOutcome

_RNG = random.SystemRandom()


def outcome_of(attempt: Attempt) -> Outcome | None:
    """The queue's outcome of one recorded attempt; None for "answered" (not an end)."""
    detail = attempt.detail
    if attempt.outcome == AttemptOutcome.UNANSWERED:
        return unanswered_outcome(str(detail.get("reason") or ""))
    if attempt.outcome == AttemptOutcome.SUCCESS:
        return Outcome.SENT
    if attempt.outcome == AttemptOutcome.FAILED:
        return answered_outcome(str(detail.get("status") or ""), str(detail.get("error") or ""))
    return None


def fallback_of(attempt: Attempt) -> Fallback | None:
    recorded = attempt.detail.get("fallback")
    return Fallback.model_validate(recorded) if isinstance(recorded, dict) and recorded else None


def history_of(attempts: list[Attempt]) -> History:
    """Each ended call (busy, no answer, fax failed...) as the queue's history, oldest first."""
    history = History()
    for attempt in attempts:
        outcome = outcome_of(attempt)
        if outcome is None:
            continue
        ended = datetime.fromtimestamp(attempt.at, UTC)
        record = AttemptRecord(len(history.attempts) + 1, outcome, fallback_of(attempt), ended)
        history = history.then(record)
    return history


def decide(
    outcome: Outcome, before: list[Attempt], policy: Policy, now: datetime
) -> Retry | GiveUp:
    """The next step after a call that ended with `outcome`; `before`: the attempts before it."""
    history = history_of(before)
    if outcome is Outcome.FAX_FAILED and policy.retry.max_attempts is None:
        failures = history.count(Outcome.FAX_FAILED) + 1
        if failures > policy.notify.fax_retries:
            return GiveUp(GiveUpReason.ATTEMPTS_USED)
    return next_attempt(outcome, history, policy, now, _RNG)


def fallback_detail(fallback: Fallback | None) -> dict[str, object] | None:
    return None if fallback is None else fallback.model_dump(exclude_none=True)
