"""JSON-RPC transport for public providers: retries with exponential backoff on rate limits and outages.

Hosted RPC endpoints answer HTTP 429 (or a JSON-RPC error such as -32005 "limit exceeded") when a
client is too fast, and drop or time out requests now and then. `RetryingHTTPProvider` retries those
with exponential backoff and jitter (honouring `Retry-After`; the policy is `mine.retry`'s, shared with
the light reader of `mine.views`), and gives up after `retries` attempts
with the last error, which `mine.chain` turns into a `ChainUnreachableError` the user can act on.
Reverts and other answers of the node are never retried: they are results, not outages.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import requests
from web3 import HTTPProvider
from web3.types import RPCEndpoint, RPCResponse

from mine.retry import (  # noqa: F401 - re-exported
    RATE_LIMIT_CODES,
    RATE_LIMIT_WORDS,
    RETRY_STATUSES,
    RetryPolicy,
    is_rate_limited,
    parse_retry_after,
)

__all__ = ["RATE_LIMIT_CODES", "RATE_LIMIT_WORDS", "RETRY_STATUSES", "RetryPolicy", "RetryingHTTPProvider",
           "is_rate_limited"]

#: Answers that never change for one endpoint, cached by web3 (nothing that depends on chain state).
CACHED_METHODS = {RPCEndpoint("eth_chainId"), RPCEndpoint("net_version"), RPCEndpoint("web3_clientVersion")}


def _retry_after(response: requests.Response | None) -> float | None:
    if response is None:
        return None
    return parse_retry_after(response.headers.get("Retry-After"))


class RetryingHTTPProvider(HTTPProvider):
    """An `HTTPProvider` that retries rate limits, timeouts and dropped connections with backoff.

    `retried` counts the retries made (tests and benchmarks read it).
    """

    def __init__(self, endpoint_uri: str, *, timeout: float = 30.0, policy: RetryPolicy | None = None,
                 headers: dict[str, str] | None = None) -> None:
        kwargs: dict[str, Any] = {"timeout": timeout}
        if headers:  # e.g. a provider's auth header; keep web3's Content-Type and User-Agent
            kwargs["headers"] = {**HTTPProvider.get_request_headers(), **headers}
        # web3's own retry covers only some methods and not HTTP 429; ours replaces it. The chain id
        # never changes: cached, it saves web3's validation a request per transaction.
        super().__init__(endpoint_uri, request_kwargs=kwargs, exception_retry_configuration=None,
                         cache_allowed_requests=True, cacheable_requests=CACHED_METHODS)
        self.policy = policy or RetryPolicy()
        self.retried = 0
        self._lock = threading.Lock()

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        attempt = 0
        while True:
            retry_after = None
            try:
                response = super().make_request(method, params)
            except requests.HTTPError as exc:
                status = exc.response.status_code if exc.response is not None else None
                if status not in RETRY_STATUSES or self.policy.gives_up(attempt):
                    raise
                retry_after = _retry_after(exc.response)
            except (requests.Timeout, requests.ConnectionError) as exc:
                if self.policy.gives_up(attempt, exc):
                    raise
            else:
                if not is_rate_limited(response.get("error")) or self.policy.gives_up(attempt):
                    return response
            with self._lock:
                self.retried += 1
            time.sleep(self.policy.delay(attempt, retry_after))
            attempt += 1
