"""When to retry a JSON-RPC request, and how long to wait: shared by web3's provider and the light reader.

Hosted RPC endpoints answer HTTP 429 (or a JSON-RPC error such as -32005 "limit exceeded") when a
client is too fast, and drop or time out requests now and then. Both transports (`mine.rpc` for
web3, `mine.views` for the read-only commands) retry those with the same policy. Nothing here
imports web3 or requests.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

__all__ = ["RATE_LIMIT_CODES", "RATE_LIMIT_WORDS", "RETRY_STATUSES", "RetryPolicy", "is_rate_limited",
           "is_refused", "parse_retry_after"]

#: HTTP statuses worth retrying: rate limited, and the gateway errors load balancers answer with.
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
#: JSON-RPC error codes providers use for "slow down" (-32005 limit exceeded, -32090 Alchemy/Infura style).
RATE_LIMIT_CODES = frozenset({-32005, -32090, 429})
RATE_LIMIT_WORDS = ("rate limit", "too many requests", "limit exceeded", "exceeded the quota", "try again later")


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: `retries` extra attempts, waits of `base` × 2^attempt (± `jitter`), at most `cap` s.

    A refused connection (nothing listens at the address) gets only `refused_retries`: a node that is
    not running does not start within the backoff, so a command says so in under a second instead of
    sixteen, and `mine watch` tries again on its own, slower backoff.
    """

    retries: int = 6
    base: float = 0.25
    cap: float = 8.0
    jitter: float = 0.25
    refused_retries: int = 2

    def gives_up(self, attempt: int, error: BaseException | None = None) -> bool:
        """Whether `attempt` (0 = the first retry) is one too many after `error` (None: an answer or HTTP status)."""
        limit = self.refused_retries if error is not None and is_refused(error) else self.retries
        return attempt >= min(limit, self.retries)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        wait = min(self.cap, self.base * 2**attempt)
        if retry_after is not None:
            wait = min(self.cap, max(wait, retry_after))
        return wait * (1 + random.uniform(-self.jitter, self.jitter))


def is_refused(error: BaseException) -> bool:
    """Whether `error` is, or wraps, a refused TCP connection (requests and urllib3 nest it a few levels)."""
    pending, seen = [error], 0
    while pending and seen < 16:
        e = pending.pop()
        seen += 1
        if isinstance(e, ConnectionRefusedError):
            return True
        pending += [x for x in (e.__cause__, e.__context__, getattr(e, "reason", None), *e.args)
                    if isinstance(x, BaseException)]
    return False


def is_rate_limited(error: Any) -> bool:
    """Whether a JSON-RPC `error` object says "too many requests"."""
    if not isinstance(error, dict):
        return False
    message = str(error.get("message", "")).lower()
    return error.get("code") in RATE_LIMIT_CODES or any(word in message for word in RATE_LIMIT_WORDS)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds of a `Retry-After` header; None if absent or an HTTP date (then our own backoff applies)."""
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
