"""Reading contract logs in bounded block ranges.

Public providers refuse `eth_getLogs` over large ranges ("query returned more than 10000 results",
"block range too large", "limit exceeded") or time out. `read_logs` walks [from_block, to_block] in
windows of at most `max_range` blocks, halves the window when the provider refuses one, and grows it
back after successes, so a scan from a contract's deployment block works on any provider.
Nothing here imports web3 (the light reader of `mine.views` uses it too).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from mine.errors import ChainError

if TYPE_CHECKING:
    from web3 import Web3

__all__ = ["DEFAULT_MAX_RANGE", "block_windows", "deployment_block", "read_logs"]

#: Largest block window asked for at once (most providers accept 2,000–10,000).
DEFAULT_MAX_RANGE = 2000
TOO_MUCH = ("range", "too many", "more than", "limit", "exceed", "too large", "timeout", "timed out", "response size")


def block_windows(from_block: int, to_block: int, size: int) -> Iterator[tuple[int, int]]:
    """Consecutive inclusive windows covering [from_block, to_block], each at most `size` blocks."""
    start = from_block
    while start <= to_block:
        end = min(to_block, start + size - 1)
        yield start, end
        start = end + 1


def read_logs(fetch: Callable[[int, int], list[Any]], from_block: int, to_block: int, *,
              max_range: int = DEFAULT_MAX_RANGE, what: str = "logs",
              errors: tuple[type[Exception], ...] = (OSError, ValueError)) -> list[Any]:
    """All logs `fetch(lo, hi)` returns over [from_block, to_block], asked for in bounded windows.

    `fetch` reads one inclusive window (e.g. `event.get_logs(from_block=lo, to_block=hi, ...)`) and
    raises one of `errors` when the provider refuses or fails (web3 adds its own exception class).
    A window the provider refuses as too large is halved (down to one block) and retried.
    """
    logs: list[Any] = []
    size = max(1, max_range)
    start = from_block
    while start <= to_block:
        end = min(to_block, start + size - 1)
        try:
            logs.extend(fetch(start, end))
        except errors as exc:
            text = str(exc).lower()
            if size > 1 and any(word in text for word in TOO_MUCH):
                size = max(1, size // 2)
                continue
            raise ChainError(f"could not read {what} in blocks {start}..{end}: {exc}") from None
        start = end + 1
        size = min(max_range, size * 2)
    return logs


def deployment_block(w3: Web3, address: str) -> int:
    """The first block at which `address` has code (binary search over `eth_getCode`, ~log2(head) calls).

    Event scans start there instead of at block 0. A node that keeps no old state (not an archive
    node) cannot answer for old blocks: then 0, and scans simply start at the beginning.
    """
    from web3.exceptions import Web3Exception

    try:
        lo, hi = 0, int(w3.eth.block_number)
        if w3.eth.get_code(address, hi) in (b"", b"\x00"):
            return 0
        while lo < hi:
            mid = (lo + hi) // 2
            if w3.eth.get_code(address, mid) in (b"", b"\x00"):
                lo = mid + 1
            else:
                hi = mid
        return lo
    except (OSError, Web3Exception, ValueError):
        return 0
