"""Retry delays, one formula for every retry loop (worker, IMAP reconnects, outbox)."""

from __future__ import annotations

import random


def exponential_delay(attempt: int, initial: float, maximum: float) -> float:
    """initial * 2^(attempt-1) seconds, at most ``maximum`` (attempt 1 waits ``initial``)."""
    return min(maximum, initial * 2 ** max(0, attempt - 1))


def backoff_delay(
    attempt: int, initial: float, maximum: float, rng: random.Random | None = None
) -> float:
    """Exponential backoff with +-20% jitter, so retries of many clients spread out."""
    return exponential_delay(attempt, initial, maximum) * (rng or random).uniform(0.8, 1.2)
