"""Back-off for retryable faults: exponential, capped, with "equal jitter" (half random)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


def backoff_delay_s(attempt: int, *, base_s: float, cap_s: float, jitter: float) -> float:
    """Delay before retry ``attempt`` (1-based). ``jitter`` in [0, 1) picks within the window."""
    if attempt < 1:
        raise ValueError("attempt counts from 1")
    # The exponent is bounded: 2.0 ** 1024 overflows a float, and a long outage gets there.
    window = min(cap_s, base_s * 2.0 ** min(attempt - 1, 64))
    return window * (0.5 + jitter / 2)


@dataclass
class Backoff:
    base_s: float = 0.5
    cap_s: float = 30.0
    attempt: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def next_delay_s(self) -> float:
        self.attempt += 1
        return backoff_delay_s(
            self.attempt, base_s=self.base_s, cap_s=self.cap_s, jitter=self.rng.random()
        )

    def reset(self) -> None:
        self.attempt = 0
