"""Exponential backoff with jitter, shared by the connector supervisor and outbound delivery.

matterbridge reconnects on a fixed 60-second loop; we back off exponentially with "equal jitter" (half fixed,
half random) so many accounts failing together don't reconnect in lockstep, and cap the delay.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Backoff:
    base_s: float = 1.0
    cap_s: float = 300.0
    factor: float = 2.0
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def delay(self, attempt: int) -> float:
        """Delay before retry number ``attempt`` (0 for the first retry), in seconds."""
        ceiling = min(self.cap_s, self.base_s * self.factor ** max(0, attempt))
        return ceiling / 2 + self.rng.uniform(0, ceiling / 2)
