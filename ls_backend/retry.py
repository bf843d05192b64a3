"""One retry policy for every layer that retries: calls to Label Studio, job re-runs, the webhook patcher.

A `RetryPolicy` is a number of retries after the first try and a delay that grows by `factor`:
``delay(n) = min(first_delay * factor ** (n - 1), max_delay)`` seconds before retry n. `call` runs a function
under it (with tenacity). Each failure is retried at one level only, so attempts do not multiply: the
webhook patcher's Label Studio client does not retry inside the patcher's own tries, and a job re-run
(a new job, after LS stayed unavailable through the client's retries) is the only retry above the client.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    retries: int  # tries after the first one
    first_delay: float  # seconds before the first retry
    factor: float = 2.0
    max_delay: float = 600.0

    @property
    def tries(self) -> int:
        return self.retries + 1

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number `retry` (1 is the first retry)."""
        return min(self.first_delay * self.factor ** max(retry - 1, 0), self.max_delay)

    def call(self, function: Callable[[], T], transient: Callable[[BaseException], bool], what: str = "") -> T:
        """`function()`, tried again after a `transient` error while retries are left; the last error is raised."""

        def wait(state: RetryCallState) -> float:
            return self.delay(state.attempt_number)

        def log(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            logger.warning("%s failed (%s); retry in %.1f s", what or "a call", error, self.delay(state.attempt_number))

        retrying = Retrying(
            stop=stop_after_attempt(self.tries),
            wait=wait,
            retry=retry_if_exception(transient),
            before_sleep=log,
            reraise=True,
        )
        return retrying(function)
