"""The retry decision: busy soon with jitter, no answer after retry_time, fallbacks per try."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from faxmail.core.policy import Policy
from faxmail.core.queuepolicy import Fallback
from faxmail.core.yamlfile import parse_yaml
from faxmail.queue.model import (
    AttemptRecord,
    History,
    Outcome,
    answered_outcome,
    unanswered_outcome,
)
from faxmail.queue.retry import GiveUp, GiveUpReason, Retry, fallback_after, next_attempt

NOW = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
POLICY = parse_yaml(
    """\
fax: {max_retries: 2, retry_time: 300}
retry:
  busy_retry_s: 60
  busy_jitter: 0.25
  max_busy_attempts: 3
  fallbacks: [{ecm: false}, {max_rate: 9600}, {t38: false}]
""",
    Policy,
    "p.yaml",
)


class Fixed:
    """A random source that always gives the same fraction of its range."""

    def __init__(self, fraction: float) -> None:
        self.fraction = fraction

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.fraction


def history(*outcomes: Outcome) -> History:
    done = History()
    for outcome in outcomes:
        fallback = fallback_after(done.count(Outcome.FAX_FAILED), POLICY.retry.fallbacks)
        done = done.then(AttemptRecord(len(done.attempts) + 1, outcome, fallback, NOW))
    return done


def test_busy_retries_soon_with_jitter() -> None:
    assert next_attempt(Outcome.BUSY, History(), POLICY, NOW, Fixed(0.5)) == Retry(
        NOW + timedelta(seconds=60), 2, None
    )
    low = next_attempt(Outcome.CONGESTION, History(), POLICY, NOW, Fixed(0.0))
    high = next_attempt(Outcome.BUSY, History(), POLICY, NOW, Fixed(1.0))
    assert isinstance(low, Retry) and isinstance(high, Retry)
    assert low.not_before == NOW + timedelta(seconds=45)
    assert high.not_before == NOW + timedelta(seconds=75)


BUSY_THREE = (Outcome.BUSY, Outcome.CONGESTION, Outcome.BUSY)


def test_free_busy_attempts_do_not_count_as_real_tries() -> None:
    # Three busy calls are free; with max_attempts 3 there are still three real tries left.
    decision = next_attempt(Outcome.NO_ANSWER, history(*BUSY_THREE), POLICY, NOW, Fixed(0.5))
    assert decision == Retry(NOW + timedelta(seconds=300), 5, None)
    after = history(*BUSY_THREE, Outcome.NO_ANSWER, Outcome.NO_ANSWER)
    assert next_attempt(Outcome.NO_ANSWER, after, POLICY, NOW, Fixed(0.5)) == GiveUp(
        GiveUpReason.ATTEMPTS_USED
    )


def test_busy_beyond_the_free_ones_counts_and_waits_retry_time() -> None:
    fourth = next_attempt(Outcome.BUSY, history(*BUSY_THREE), POLICY, NOW, Fixed(0.5))
    assert fourth == Retry(NOW + timedelta(seconds=300), 5, None)
    five_busy = history(*BUSY_THREE, Outcome.BUSY, Outcome.BUSY)
    assert next_attempt(Outcome.BUSY, five_busy, POLICY, NOW, Fixed(0.5)) == GiveUp(
        GiveUpReason.ATTEMPTS_USED
    )


def test_no_answer_waits_retry_time_and_gives_up_after_max_attempts() -> None:
    assert next_attempt(Outcome.NO_ANSWER, History(), POLICY, NOW, Fixed(0.5)) == Retry(
        NOW + timedelta(seconds=300), 2, None
    )
    assert next_attempt(Outcome.DIAL_FAILED, history(Outcome.NO_ANSWER), POLICY, NOW, Fixed(0)) == (
        Retry(NOW + timedelta(seconds=300), 3, None)
    )
    two = history(Outcome.NO_ANSWER, Outcome.NO_ANSWER)
    assert next_attempt(Outcome.NO_ANSWER, two, POLICY, NOW, Fixed(0.5)) == GiveUp(
        GiveUpReason.ATTEMPTS_USED
    )


def test_max_attempts_defaults_to_today_s_dial_attempts() -> None:
    policy = parse_yaml("fax: {max_retries: 0}\n", Policy, "p.yaml")
    assert next_attempt(Outcome.NO_ANSWER, History(), policy, NOW, Fixed(0)) == GiveUp(
        GiveUpReason.ATTEMPTS_USED
    )
    policy = parse_yaml("fax: {max_retries: 0}\nretry: {max_attempts: 2}\n", Policy, "p.yaml")
    assert isinstance(next_attempt(Outcome.NO_ANSWER, History(), policy, NOW, Fixed(0)), Retry)


def test_failed_fax_takes_the_next_fallback() -> None:
    retry = POLICY.retry.model_copy(update={"max_attempts": 5})
    policy = POLICY.model_copy(update={"retry": retry})
    first = next_attempt(Outcome.FAX_FAILED, History(), policy, NOW, Fixed(0.5))
    assert first == Retry(NOW + timedelta(seconds=300), 2, Fallback(ecm=False))
    # A busy call in between changes nothing: the fax was not tried.
    second = next_attempt(
        Outcome.FAX_FAILED, history(Outcome.FAX_FAILED, Outcome.BUSY), policy, NOW, Fixed(0.5)
    )
    assert second == Retry(NOW + timedelta(seconds=300), 4, Fallback(max_rate=9600))
    busy = next_attempt(Outcome.BUSY, history(Outcome.FAX_FAILED), policy, NOW, Fixed(0.5))
    assert isinstance(busy, Retry) and busy.fallback == Fallback(ecm=False)
    # Beyond the list, the last entry again.
    three = history(Outcome.FAX_FAILED, Outcome.FAX_FAILED, Outcome.FAX_FAILED)
    fourth = next_attempt(Outcome.FAX_FAILED, three, policy, NOW, Fixed(0.5))
    assert isinstance(fourth, Retry) and fourth.fallback == Fallback(t38=False)


def test_no_fallbacks_means_the_same_call_again() -> None:
    policy = Policy()
    assert next_attempt(Outcome.FAX_FAILED, History(), policy, NOW, Fixed(0)) == Retry(
        NOW + timedelta(seconds=300), 2, None
    )


def test_local_error_gives_up_and_sent_has_nothing_to_decide() -> None:
    assert next_attempt(Outcome.LOCAL_ERROR, History(), POLICY, NOW, Fixed(0)) == GiveUp(
        GiveUpReason.NOT_RETRYABLE
    )
    for outcome in (Outcome.SENT, Outcome.CANCELLED):
        with pytest.raises(ValueError, match="no next attempt"):
            next_attempt(outcome, History(), POLICY, NOW, Fixed(0))


def test_history_prints_each_attempt_with_its_fallback() -> None:
    done = history(Outcome.BUSY, Outcome.FAX_FAILED, Outcome.FAX_FAILED, Outcome.SENT)
    assert [a.describe() for a in done.attempts] == [
        "attempt 1: busy",
        "attempt 2: fax-failed",
        "attempt 3: fax-failed (ECM off)",
        "attempt 4: sent (at most 9600 bit/s)",
    ]
    assert Fallback(ecm=True, max_rate=14400, t38=False).describe() == (
        "ECM on, at most 14400 bit/s, T.38 off"
    )


@pytest.mark.parametrize(
    ("reason", "outcome"),
    [
        ("5", Outcome.BUSY),
        ("8", Outcome.CONGESTION),
        ("3", Outcome.NO_ANSWER),
        ("1", Outcome.NO_ANSWER),
        ("0", Outcome.DIAL_FAILED),
        ("", Outcome.DIAL_FAILED),
        (None, Outcome.DIAL_FAILED),
    ],
)
def test_unanswered_outcome_by_reason(reason: str | None, outcome: Outcome) -> None:
    assert unanswered_outcome(reason) is outcome


def test_answered_outcome() -> None:
    assert answered_outcome("SUCCESS", "") is Outcome.SENT
    assert answered_outcome("FAILED", "FILE_ERROR") is Outcome.LOCAL_ERROR
    assert answered_outcome("FAILED", "T30_ERROR") is Outcome.FAX_FAILED


RETRYABLE = [o for o in Outcome if not o.ends_job and o is not Outcome.LOCAL_ERROR]


@settings(max_examples=300, derandomize=True, deadline=None)
@given(st.lists(st.sampled_from(RETRYABLE), max_size=30), st.integers(0, 2**32 - 1))
def test_every_job_ends_and_delays_stay_in_bounds(outcomes: list[Outcome], seed: int) -> None:
    """Whatever the calls do, a job gets at most max_attempts real tries plus the free busy
    ones, and each delay is the busy spread or retry_time."""
    rng = random.Random(seed)
    rules = POLICY.retry
    done = History()
    for outcome in outcomes:
        decision = next_attempt(outcome, done, POLICY, NOW, rng)
        done = done.then(AttemptRecord(len(done.attempts) + 1, outcome, None, NOW))
        if isinstance(decision, GiveUp):
            assert decision.reason is GiveUpReason.ATTEMPTS_USED
            break
        delay = (decision.not_before - NOW).total_seconds()
        spread = rules.busy_retry_s * rules.busy_jitter
        soon = rules.busy_retry_s - spread <= delay <= rules.busy_retry_s + spread
        assert soon or delay == POLICY.fax.retry_time
        assert decision.attempt == len(done.attempts) + 1
    assert rules.max_attempts is None
    assert len(done.attempts) <= POLICY.fax.max_retries + 1 + rules.max_busy_attempts
