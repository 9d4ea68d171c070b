"""A light, read-only view of the Sonar contract: JSON-RPC over urllib, no web3.

`mine status`, `mine bounties` and `mine withdraw` (with nothing to withdraw) only read the chain,
and importing web3 alone takes longer than the second they should answer in. `ChainReader` answers
the same views as `mine.chain.SonarClient` — the same dataclasses (`mine.contract`), event entries
shaped like web3's (`e["args"][...]`, `e["blockNumber"]`, `e["transactionHash"]`, `e["logIndex"]`),
the same retries (`mine.retry`) and the same errors — from:

* `keccak256`: function selectors, event topics, address checksums (pure Python: a command hashes a
  few dozen short strings, cheaper than importing a compiled hash module);
* an ABI codec for what the contract's views and events carry: static words (uint/int/address/
  bool/bytesN; enums are uint8), tuples, arrays, and dynamic `string`/`bytes`;
* `JsonRpc`: POSTs over urllib, retrying rate limits and outages with backoff.

Whatever signs a transaction still needs `SonarClient`; `ChainView` is what both offer to readers
(`mine.overview`).
"""

from __future__ import annotations

import http.client
import itertools
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any, Protocol

from mine.amounts import ETH_DECIMALS, is_eth
from mine.contract import (
    ZERO_ADDRESS,
    Bounty,
    ModelVersion,
    SonarViews,
    Submission,
    Vesting,
    contract_abi,
    no_address,
    no_contract,
    not_an_address,
    recorded_deployment,
    recorded_deployment_block,
    unreachable,
    wrong_chain,
)
from mine.errors import ChainError, ChainUnreachableError, ConfigError
from mine.logs import DEFAULT_MAX_RANGE, read_logs
from mine.retry import RETRY_STATUSES, RetryPolicy, is_rate_limited, parse_retry_after

__all__ = [
    "ChainReader", "ChainView", "ErrorDecoder", "JsonRpc", "RpcError", "abi_decode", "abi_encode", "is_address",
    "keccak256", "selector", "signature", "to_checksum_address",
]

ABIParam = Mapping[str, Any]

# ---------------------------------------------------------------------- keccak-256 (Ethereum's, not SHA3-256)

_MASK = (1 << 64) - 1
_ROUND_CONSTANTS = (
    0x0000000000000001, 0x0000000000008082, 0x800000000000808A, 0x8000000080008000, 0x000000000000808B,
    0x0000000080000001, 0x8000000080008081, 0x8000000000008009, 0x000000000000008A, 0x0000000000000088,
    0x0000000080008009, 0x000000008000000A, 0x000000008000808B, 0x800000000000008B, 0x8000000000008089,
    0x8000000000008003, 0x8000000000008002, 0x8000000000000080, 0x000000000000800A, 0x800000008000000A,
    0x8000000080008081, 0x8000000000008080, 0x0000000080000001, 0x8000000080008008,
)
# rotation of lane x + 5y (rho), and where pi moves it: (x, y) -> (y, 2x + 3y)
_ROTATIONS = (0, 1, 62, 28, 27, 36, 44, 6, 55, 20, 3, 10, 43, 25, 39, 41, 45, 15, 21, 8, 18, 2, 61, 56, 14)
_PI = tuple(y + 5 * ((2 * x + 3 * y) % 5) for y in range(5) for x in range(5))
_RATE = 136  # bytes absorbed per permutation (1600 - 2 * 256 bits)


def _permute(a: list[int]) -> None:
    """keccak-f[1600] on 25 64-bit lanes, in place."""
    b = [0] * 25
    for rc in _ROUND_CONSTANTS:
        c = [a[x] ^ a[x + 5] ^ a[x + 10] ^ a[x + 15] ^ a[x + 20] for x in range(5)]
        d = [c[(x - 1) % 5] ^ (((c[(x + 1) % 5] << 1) | (c[(x + 1) % 5] >> 63)) & _MASK) for x in range(5)]
        for i in range(25):
            v, r = a[i] ^ d[i % 5], _ROTATIONS[i]
            b[_PI[i]] = ((v << r) | (v >> (64 - r))) & _MASK if r else v
        for y in range(0, 25, 5):
            b0, b1, b2, b3, b4 = b[y:y + 5]
            a[y], a[y + 1], a[y + 2] = b0 ^ (~b1 & b2), b1 ^ (~b2 & b3), b2 ^ (~b3 & b4)
            a[y + 3], a[y + 4] = b3 ^ (~b4 & b0), b4 ^ (~b0 & b1)
        a[0] ^= rc


def keccak256(data: bytes | bytearray | memoryview) -> bytes:
    """Keccak-256 of `data` (Ethereum's hash: original Keccak padding, not FIPS-202 SHA3's)."""
    padded = bytearray(data)
    padded.append(0x01)
    padded.extend(bytes(-len(padded) % _RATE))
    padded[-1] |= 0x80
    state = [0] * 25
    for offset in range(0, len(padded), _RATE):
        for i in range(_RATE // 8):
            state[i] ^= int.from_bytes(padded[offset + 8 * i:offset + 8 * i + 8], "little")
        _permute(state)
    return b"".join(lane.to_bytes(8, "little") for lane in state[:4])


# ---------------------------------------------------------------------- addresses


def _hex_body(value: str) -> str | None:
    body = value[2:] if value[:2] in ("0x", "0X") else value
    if len(body) != 40:
        return None
    try:
        int(body, 16)
    except ValueError:
        return None
    return body


def to_checksum_address(value: str) -> str:
    """EIP-55 form of a 20-byte hex address (with or without 0x); ValueError if it is none."""
    body = _hex_body(value) if isinstance(value, str) else None
    if body is None:
        raise ValueError(f"{value!r} is not a 20-byte hex address")
    return _checksum(body.lower())


@lru_cache(maxsize=4096)
def _checksum(body: str) -> str:  # the same few addresses recur in every log: hash each once
    digest = keccak256(body.encode("ascii")).hex()
    return "0x" + "".join(ch.upper() if int(digest[i], 16) >= 8 else ch for i, ch in enumerate(body))


def is_address(value: Any) -> bool:
    """Like web3's `is_address` for text: 40 hex digits, with or without 0x, in any case (web3 does not
    insist on a valid checksum either: it checksums what it is given)."""
    return isinstance(value, str) and _hex_body(value) is not None


# ---------------------------------------------------------------------- ABI codec


def _canonical(p: ABIParam) -> str:
    t = str(p["type"])
    if t.startswith("tuple"):
        return "(" + ",".join(_canonical(c) for c in p["components"]) + ")" + t[len("tuple"):]
    return t


def signature(item: ABIParam) -> str:
    """`name(type,…)` of an ABI function, event or error (tuples spelled out)."""
    return f"{item['name']}({','.join(_canonical(i) for i in item['inputs'])})"


def selector(item: ABIParam) -> bytes:
    """The first 4 bytes of keccak256(signature): a function's or error's selector."""
    return keccak256(signature(item).encode())[:4]


def _array(t: str) -> tuple[str, int | None] | None:
    """(element type, length or None for T[]) if `t` is an array type."""
    if not t.endswith("]"):
        return None
    inner, _, n = t[:-1].rpartition("[")
    return inner, (int(n) if n else None)


def _is_dynamic(p: ABIParam) -> bool:
    t = str(p["type"])
    arr = _array(t)
    if arr is not None:
        return arr[1] is None or _is_dynamic({**p, "type": arr[0]})
    if t == "tuple":
        return any(_is_dynamic(c) for c in p["components"])
    return t in ("string", "bytes")


def _head_size(p: ABIParam) -> int:
    """Bytes `p` takes in the head of its enclosing sequence (32 for anything dynamic)."""
    if _is_dynamic(p):
        return 32
    t = str(p["type"])
    arr = _array(t)
    if arr is not None:
        return int(arr[1] or 0) * _head_size({**p, "type": arr[0]})
    if t == "tuple":
        return sum(_head_size(c) for c in p["components"])
    return 32


def _word(data: bytes, pos: int) -> bytes:
    if pos < 0 or pos + 32 > len(data):
        raise ValueError(f"ABI data too short: need bytes {pos}..{pos + 32}, have {len(data)}")
    return data[pos:pos + 32]


def _bits(t: str, prefix: str) -> int:
    n = int(t[len(prefix):] or 256)
    if not (0 < n <= 256 and n % 8 == 0):
        raise ValueError(f"invalid ABI type {t}")
    return n


def _decode_word(t: str, word: bytes, checksum: bool) -> Any:
    value = int.from_bytes(word, "big")
    if t.startswith("uint"):
        if value >> _bits(t, "uint"):
            raise ValueError(f"{t} out of range: 0x{word.hex()}")
        return value
    if t.startswith("int"):
        n = _bits(t, "int")
        signed = value - (1 << 256) if value >> 255 else value
        if not -(1 << (n - 1)) <= signed < (1 << (n - 1)):
            raise ValueError(f"{t} out of range: 0x{word.hex()}")
        return signed
    if t == "address":
        if value >> 160:
            raise ValueError(f"address with non-zero padding: 0x{word.hex()}")
        text = word[12:].hex()
        return to_checksum_address(text) if checksum else "0x" + text
    if t == "bool":
        if value > 1:
            raise ValueError(f"bool that is neither 0 nor 1: 0x{word.hex()}")
        return bool(value)
    if t.startswith("bytes") and t != "bytes":
        n = int(t[5:])
        if not 0 < n <= 32 or any(word[n:]):
            raise ValueError(f"invalid {t}: 0x{word.hex()}")
        return bytes(word[:n])
    raise ValueError(f"ABI type {t} is not supported here")


def _decode_at(p: ABIParam, data: bytes, pos: int, checksum: bool) -> Any:
    """The value of `p` whose encoding starts at `pos` (a dynamic value's tail)."""
    t = str(p["type"])
    arr = _array(t)
    if arr is not None:
        inner, n = arr
        if n is None:
            n, pos = int.from_bytes(_word(data, pos), "big"), pos + 32
            if n > len(data):
                raise ValueError(f"ABI array length {n} longer than the data")
        return tuple(_decode_sequence([{**p, "type": inner}] * n, data, pos, checksum))
    if t == "tuple":
        return tuple(_decode_sequence(p["components"], data, pos, checksum))
    if t in ("string", "bytes"):
        length = int.from_bytes(_word(data, pos), "big")
        if pos + 32 + length > len(data):
            raise ValueError(f"ABI {t} of {length} bytes runs past the data")
        raw = bytes(data[pos + 32:pos + 32 + length])
        return raw.decode("utf-8") if t == "string" else raw
    return _decode_word(t, _word(data, pos), checksum)


def _decode_sequence(params: Sequence[ABIParam], data: bytes, base: int, checksum: bool) -> list[Any]:
    values, pos = [], base
    for p in params:
        if _is_dynamic(p):
            offset = int.from_bytes(_word(data, pos), "big")
            if offset > len(data):
                raise ValueError(f"ABI offset {offset} past the data")
            values.append(_decode_at(p, data, base + offset, checksum))
        else:
            values.append(_decode_at(p, data, pos, checksum))
        pos += _head_size(p)
    return values


def abi_decode(params: Sequence[ABIParam], data: bytes, *, checksum: bool = True) -> list[Any]:
    """Values of ABI `params` (dicts with "type", tuples with "components") encoded in `data`.

    Addresses come checksummed (as web3 returns them), or lower-case with `checksum=False` (as
    eth_abi does); bytesN and bytes as `bytes`; tuples and arrays as tuples. ValueError on bad data.
    """
    return _decode_sequence(params, bytes(data), 0, checksum)


def _encode_word(t: str, value: Any) -> bytes:
    if t.startswith("uint"):
        n = _bits(t, "uint")
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < (1 << n):
            raise ValueError(f"{value!r} is not a {t}")
        return value.to_bytes(32, "big")
    if t.startswith("int"):
        n = _bits(t, "int")
        if isinstance(value, bool) or not isinstance(value, int) or not -(1 << (n - 1)) <= value < (1 << (n - 1)):
            raise ValueError(f"{value!r} is not an {t}")
        return (value % (1 << 256)).to_bytes(32, "big")
    if t == "address":
        body = _hex_body(value) if isinstance(value, str) else None
        if body is None:
            raise ValueError(f"{value!r} is not an address")
        return bytes(12) + bytes.fromhex(body)
    if t == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"{value!r} is not a bool")
        return int(value).to_bytes(32, "big")
    if t.startswith("bytes") and t != "bytes":
        n = int(t[5:])
        if not isinstance(value, (bytes, bytearray)) or len(value) != n:
            raise ValueError(f"{value!r} is not {n} bytes")
        return bytes(value) + bytes(32 - n)
    raise ValueError(f"encoding ABI type {t} is not supported here")


def abi_encode(params: Sequence[ABIParam], values: Sequence[Any]) -> bytes:
    """Static arguments (uint/int/address/bool/bytesN) encoded for a call or a topic."""
    if len(params) != len(values):
        raise ValueError(f"{len(params)} arguments expected, {len(values)} given")
    return b"".join(_encode_word(str(p["type"]), v) for p, v in zip(params, values))


ERROR_STRING = bytes.fromhex("08c379a0")  # Error(string): require/revert with a message
PANIC = bytes.fromhex("4e487b71")  # Panic(uint256): assert, overflow, division by zero


#: What to do about the reverts a command meets in normal use, by the custom error's name; the
#: error's arguments fill the braces (times as UTC).
REVERT_HINTS: dict[str, str] = {
    "SonarAuditNotRevealed": "the bounty is auditable: publish its audit bundle first (`mine bounty reveal {bountyId}`)",
    "SonarDeadlineNotPassed": "bounty {bountyId} runs until {deadline}; close it after that",
    "SonarStillInWindow": "a submission of bounty {bountyId} can still be settled until {until}: settle it "
                          "(`mine evaluate {bountyId}`) or wait",
    "SonarDeadlinePassed": "bounty {bountyId} stopped taking submissions at {deadline}",
    "SonarNotBountyOwner": "only the account that posted bounty {bountyId} can do this, not {caller}",
    "SonarStillVesting": "it vests until bounty {bountyId} ends ({until})",
}
_HINT_TIMES = ("deadline", "until", "due")


class ErrorDecoder:
    """Turns revert data into `ErrorName(arg=value, …)` using the ABI's custom errors, followed by what
    to do about it where :data:`REVERT_HINTS` knows."""

    def __init__(self, abi: Sequence[ABIParam]) -> None:
        self._abi = [item for item in abi if item.get("type") == "error"]
        self._errors: dict[bytes, ABIParam] | None = None  # hashed on the first revert

    def describe(self, data: str | bytes | None) -> str:
        raw = _hex_bytes(data) if isinstance(data, str) else data
        if not raw or len(raw) < 4:
            return "reverted without a reason"
        if self._errors is None:
            self._errors = {selector(item): item for item in self._abi}
        item = self._errors.get(raw[:4])
        if item is None:
            return f"reverted with data 0x{raw.hex()}"
        values = abi_decode(item["inputs"], raw[4:], checksum=False)
        args = ", ".join(
            f"{i['name']}={v.hex() if isinstance(v, bytes) else v}" for i, v in zip(item["inputs"], values)
        )
        hint = REVERT_HINTS.get(item["name"])
        if hint is not None:
            named = {i["name"]: _utc(v) if i["name"] in _HINT_TIMES else v for i, v in zip(item["inputs"], values)}
            return f"{item['name']}({args}): {hint.format(**named)}"
        return f"{item['name']}({args})"


def _utc(timestamp: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(int(timestamp)))


def _hex_bytes(text: str) -> bytes:
    return bytes.fromhex(text[2:] if text[:2] in ("0x", "0X") else text)


def _int(value: Any) -> int:
    return int(value, 16) if isinstance(value, str) else int(value)


# ---------------------------------------------------------------------- JSON-RPC over urllib


class RpcError(ValueError):
    """The node answered a request with a JSON-RPC error (a revert, a refused range, ...)."""

    def __init__(self, method: str, error: Mapping[str, Any]) -> None:
        self.method = method
        self.code = error.get("code")
        self.message = str(error.get("message", ""))
        self.data = error.get("data")
        super().__init__(f"{self.message} (JSON-RPC error {self.code} on {method})")


#: Answers that never change for one endpoint (web3's provider caches the same).
_CACHED_METHODS = frozenset({"eth_chainId", "net_version", "web3_clientVersion"})


class JsonRpc:
    """JSON-RPC 2.0 over HTTP(S), on one kept-alive connection (one TLS handshake per command, as
    web3's pooled session), or through urllib when the environment names a proxy for the URL.

    Rate limits (HTTP 429 and the like, or a JSON-RPC "limit exceeded"), timeouts and dropped
    connections are retried with the backoff of `policy` (honouring `Retry-After`); after the last
    attempt the error is raised: an `OSError` if the node did not answer, `RpcError` if it refused.
    `retried` counts the retries made.
    """

    def __init__(self, url: str, *, timeout: float = 30.0, policy: RetryPolicy | None = None,
                 headers: dict[str, str] | None = None) -> None:
        self.url = url
        self.timeout = timeout
        self.policy = policy or RetryPolicy()
        self.headers = {"Content-Type": "application/json", "User-Agent": "sonar-mine", **(headers or {})}
        self.retried = 0
        self._ids = itertools.count(1)
        self._cache: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._conn: http.client.HTTPConnection | None = None
        self._opener: urllib.request.OpenerDirector | None = None
        parts = urllib.parse.urlsplit(url)
        self._parts = parts
        proxied = bool(urllib.request.getproxies().get(parts.scheme)) and not urllib.request.proxy_bypass(
            parts.hostname or "")
        self._direct = parts.scheme in ("http", "https") and bool(parts.hostname) and not proxied
        if parts.username is not None:  # http://user:password@host, as requests accepts it
            import base64

            user = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
            self.headers.setdefault("Authorization", "Basic " + base64.b64encode(user.encode()).decode())

    def request(self, method: str, params: Sequence[Any] = ()) -> Any:
        """The `result` of `method(params)`."""
        if method in _CACHED_METHODS and method in self._cache:
            return self._cache[method]
        body = json.dumps({"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": list(params)})
        attempt = 0
        while True:
            retry_after = None
            try:
                answer = self._post(body.encode())
            except urllib.error.HTTPError as exc:
                if exc.code not in RETRY_STATUSES or self.policy.gives_up(attempt):
                    raise
                retry_after = parse_retry_after(exc.headers.get("Retry-After") if exc.headers else None)
            except OSError as exc:  # refused, reset, timed out, DNS: the node did not answer
                if self.policy.gives_up(attempt, exc):
                    raise
            else:
                error = answer.get("error")
                if error is None:
                    result = answer.get("result")
                    if method in _CACHED_METHODS:
                        self._cache[method] = result
                    return result
                if not is_rate_limited(error) or self.policy.gives_up(attempt):
                    raise RpcError(method, error if isinstance(error, Mapping) else {"message": str(error)})
            with self._lock:
                self.retried += 1
            time.sleep(self.policy.delay(attempt, retry_after))
            attempt += 1

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _post(self, body: bytes) -> dict[str, Any]:
        try:
            raw = self._exchange(body) if self._direct else self._exchange_urllib(body)
        except http.client.HTTPException as exc:  # a half-answer (IncompleteRead, BadStatusLine): an outage
            raise ConnectionError(f"{type(exc).__name__}: {exc}") from exc
        try:
            answer = json.loads(raw)
        except ValueError:
            raise ConnectionError(f"{self.url} answered something that is not JSON-RPC: {raw[:80]!r}") from None
        if not isinstance(answer, dict):
            raise ConnectionError(f"{self.url} answered something that is not JSON-RPC: {raw[:80]!r}")
        return answer

    def _exchange_urllib(self, body: bytes) -> bytes:
        request = urllib.request.Request(self.url, data=body, headers=self.headers, method="POST")
        if self._opener is None:  # its own, with the proxies of the environment now (urlopen's is built once)
            self._opener = urllib.request.build_opener()
        with self._opener.open(request, timeout=self.timeout) as response:
            return bytes(response.read())

    def _exchange(self, body: bytes) -> bytes:
        """POST on the kept-alive connection; one that the server closed meanwhile is reopened once."""
        parts = self._parts
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        with self._lock:
            for fresh in (self._conn is None, True):
                if self._conn is None:
                    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
                    self._conn = kind(parts.hostname or "", parts.port, timeout=self.timeout)
                try:
                    self._conn.request("POST", path, body, self.headers)
                    response = self._conn.getresponse()
                    raw = response.read()
                except (OSError, http.client.HTTPException) as exc:
                    self._conn.close()
                    self._conn = None
                    stale = isinstance(exc, (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError))
                    if fresh or not stale:
                        raise
                    continue  # the server closed an idle kept-alive connection: once more on a new one
                if response.will_close:
                    self._conn.close()
                    self._conn = None
                if response.status >= 400:
                    raise urllib.error.HTTPError(self.url, response.status, response.reason, response.headers, None)
                return raw
        raise AssertionError("unreachable")  # the loop returns or raises


# ---------------------------------------------------------------------- the reader


class ChainView(Protocol):
    """What `mine.overview` reads: offered by `ChainReader` (light) and `mine.chain.SonarClient` (full)."""

    address: str

    def bounty_count(self) -> int: ...

    def bounty(self, bounty_id: int) -> Bounty: ...

    def submission(self, bounty_id: int, index: int) -> Submission: ...

    def model_version(self, bounty_id: int, version: int) -> ModelVersion: ...

    def credits(self, account: str, token: str = ZERO_ADDRESS) -> int: ...

    def vesting(self, bounty_id: int, miner: str) -> Vesting: ...

    def events(self, name: str, *, from_block: int | None = None, to_block: int | None = None,
               **filters: Any) -> list[Any]: ...

    def now(self) -> int: ...

    def block_time(self, block: int) -> int: ...

    def tx_events(self, tx_hash: bytes | str, name: str) -> list[Any]: ...

    def token_meta(self, token: str) -> tuple[int, str]: ...


_ERC20_DECIMALS = {"name": "decimals", "inputs": [], "outputs": [{"name": "", "type": "uint8"}]}
_ERC20_SYMBOL = {"name": "symbol", "inputs": [], "outputs": [{"name": "", "type": "string"}]}


class ChainReader(SonarViews):
    """Read-only Sonar views over plain JSON-RPC: the same answers as `SonarClient`, without web3.

    `account` is always None: reading needs no key (`mine.chain.SonarClient` signs).
    """

    account = None

    def __init__(self, rpc: JsonRpc, address: str, *, start_block: int = 0, log_range: int = DEFAULT_MAX_RANGE,
                 abi: Sequence[ABIParam] | None = None) -> None:
        self.rpc = rpc
        self.address = to_checksum_address(address)
        self.start_block = start_block  # first block `events` reads (the deployment's)
        self.log_range = log_range  # blocks per eth_getLogs request
        abi = contract_abi("Sonar") if abi is None else abi
        self._functions = {item["name"]: item for item in abi if item.get("type") == "function"}
        self._events = {item["name"]: item for item in abi if item.get("type") == "event"}
        self._decoder = ErrorDecoder(abi)
        self._hashes: dict[str, bytes] = {}
        self._token_meta: dict[str, tuple[int, str]] = {}

    @classmethod
    def open(cls, rpc_url: str, address: str | None, *, expected_chain_id: int | None = None,
             start_block: int | None = None, timeout: float = 30.0, retry: RetryPolicy | None = None,
             headers: dict[str, str] | None = None) -> ChainReader:
        """Connect and check the chain id and that a contract is at `address` (as `SonarClient.open`)."""
        rpc = JsonRpc(rpc_url, timeout=timeout, policy=retry, headers=headers)
        try:
            chain_id = _int(rpc.request("eth_chainId"))
        except (OSError, ValueError) as exc:
            raise unreachable(rpc_url, exc) from None
        if expected_chain_id is not None and chain_id != expected_chain_id:
            raise wrong_chain(rpc_url, chain_id, expected_chain_id)
        address = address or recorded_deployment(chain_id)
        if not address:
            raise no_address(chain_id)
        if not is_address(address):
            raise not_an_address(address)
        try:
            code = rpc.request("eth_getCode", [to_checksum_address(address), "latest"])
        except (OSError, ValueError) as exc:
            raise unreachable(rpc_url, exc) from None
        if _hex_bytes(code or "0x") in (b"", b"\x00"):
            raise no_contract(address, chain_id)
        if start_block is None:
            start_block = recorded_deployment_block(chain_id, address)
        return cls(rpc, address, start_block=start_block)

    # ------------------------------------------------------------------ views

    def _address(self, value: str) -> str:
        return _checked_address(value)

    def now(self) -> int:
        """Timestamp of the latest block."""
        return self._block("latest")

    def block_time(self, block: int) -> int:
        """Timestamp of block number `block`."""
        return self._block(hex(block))

    def token_meta(self, token: str) -> tuple[int, str]:
        """`(decimals, symbol)` of a bounty's currency, as `mine.amounts.token_meta` reads them."""
        if is_eth(token):
            return ETH_DECIMALS, "ETH"
        token = _checked_address(token)
        if token not in self._token_meta:
            try:
                decimals = int(self._contract_call(token, _ERC20_DECIMALS))
            except (OSError, ValueError) as exc:
                raise ChainError(f"token {token} does not answer decimals() ({type(exc).__name__}); "
                                 "is it an ERC-20?") from None
            try:
                symbol = str(self._contract_call(token, _ERC20_SYMBOL))[:12] or token[:10]
            except (OSError, ValueError):
                symbol = token[:10]
            self._token_meta[token] = (decimals, symbol)
        return self._token_meta[token]

    # ------------------------------------------------------------------ events

    def events(self, name: str, *, from_block: int | None = None, to_block: int | None = None,
               **filters: Any) -> list[dict[str, Any]]:
        """Logs of event `name` whose arguments equal `filters` (a list: any of), read in bounded block ranges."""
        item = self._event(name)
        inputs = {i["name"]: i for i in item["inputs"]}
        unknown = sorted(set(filters) - set(inputs))
        if unknown:
            raise ValueError(f"event {name} has no argument {', '.join(unknown)}")
        topics: list[Any] = [_hex(self._hash(item))]
        for p in (i for i in item["inputs"] if i["indexed"]):
            value = filters.get(p["name"])
            if value is None:
                topics.append(None)
            elif isinstance(value, (list, tuple)):
                topics.append([_hex(self._topic(p, v)) for v in value])
            else:
                topics.append(_hex(self._topic(p, value)))
        while topics[-1] is None:
            topics.pop()
        unindexed = {k: v for k, v in filters.items() if v is not None and not inputs[k]["indexed"]}
        try:
            last = _int(self.rpc.request("eth_blockNumber")) if to_block is None else to_block
        except (OSError, ValueError) as exc:
            raise ChainUnreachableError(f"could not read {name} events: the node did not answer ({exc})") from None
        first = self.start_block if from_block is None else from_block

        def fetch(lo: int, hi: int) -> list[dict[str, Any]]:
            logs = self.rpc.request("eth_getLogs", [{"address": self.address, "fromBlock": hex(lo),
                                                     "toBlock": hex(hi), "topics": topics}])
            entries = [self._decode_log(item, log) for log in logs]
            return [e for e in entries if all(_matches(e["args"][k], v) for k, v in unindexed.items())]

        return read_logs(fetch, first, last, max_range=self.log_range, what=f"{name} events")

    def tx_events(self, tx_hash: bytes | str, name: str) -> list[dict[str, Any]]:
        """Events `name` in the receipt of transaction `tx_hash`."""
        tx = tx_hash if isinstance(tx_hash, str) else _hex(bytes(tx_hash))
        try:
            receipt = self.rpc.request("eth_getTransactionReceipt", [tx])
        except (OSError, ValueError) as exc:
            raise ChainUnreachableError(f"could not read the receipt of {tx}: the node did not answer ({exc})") from None
        if receipt is None:
            raise ChainError(f"no receipt for transaction {tx}: not mined (or dropped by a reorg)")
        return self.receipt_events(receipt, name)

    def receipt_events(self, receipt: Mapping[str, Any], name: str) -> list[dict[str, Any]]:
        """Events `name` in a receipt, logs of other shapes skipped (as web3's `process_receipt(errors=DISCARD)`)."""
        item = self._event(name)
        found = []
        for log in receipt.get("logs", []):
            try:
                found.append(self._decode_log(item, log))
            except ValueError:
                continue
        return found

    # ------------------------------------------------------------------ plumbing

    def _hash(self, item: ABIParam) -> bytes:
        sig = signature(item)
        if sig not in self._hashes:
            self._hashes[sig] = keccak256(sig.encode())
        return self._hashes[sig]

    def _event(self, name: str) -> ABIParam:
        try:
            return self._events[name]
        except KeyError:
            raise ValueError(f"the Sonar ABI has no event {name}") from None

    @staticmethod
    def _topic(p: ABIParam, value: Any) -> bytes:
        if _is_dynamic(p):  # indexed strings/bytes are stored as their hash
            return keccak256(value.encode() if isinstance(value, str) else bytes(value))
        return abi_encode([p], [value])

    def _decode_log(self, item: ABIParam, log: Mapping[str, Any]) -> dict[str, Any]:
        topics = [_hex_bytes(t) for t in log["topics"]]
        if not item.get("anonymous"):
            if not topics or topics[0] != self._hash(item):
                raise ValueError(f"not a {item['name']} log")
            topics = topics[1:]
        indexed = [i for i in item["inputs"] if i["indexed"]]
        if len(topics) != len(indexed):
            raise ValueError(f"{item['name']}: expected {len(indexed)} topics, got {len(topics)}")
        args = {p["name"]: (topic if _is_dynamic(p) else _decode_at(p, topic, 0, True))
                for p, topic in zip(indexed, topics)}
        plain = [i for i in item["inputs"] if not i["indexed"]]
        args.update(zip((p["name"] for p in plain), abi_decode(plain, _hex_bytes(log.get("data") or "0x"))))
        return {
            "args": args, "event": item["name"], "logIndex": _int(log["logIndex"]),
            "transactionIndex": _int(log["transactionIndex"]), "transactionHash": _hex_bytes(log["transactionHash"]),
            "address": to_checksum_address(log["address"]), "blockHash": _hex_bytes(log["blockHash"]),
            "blockNumber": _int(log["blockNumber"]),
        }

    def _block(self, tag: str) -> int:
        try:
            block = self.rpc.request("eth_getBlockByNumber", [tag, False])
        except (OSError, ValueError) as exc:
            raise ChainUnreachableError(f"could not read block {tag}: the node did not answer ({exc})") from None
        if block is None:
            raise ChainError(f"block {tag} not found on this chain")
        return _int(block["timestamp"])

    def _contract_call(self, to: str, item: ABIParam, *args: Any) -> Any:
        """`item(*args)` on contract `to`: its single output or tuple of outputs. OSError/RpcError/ValueError."""
        data = self._hash_selector(item) + abi_encode(item["inputs"], args)
        raw = self.rpc.request("eth_call", [{"to": to, "data": _hex(data)}, "latest"])
        values = abi_decode(item["outputs"], _hex_bytes(raw or "0x"))
        return values[0] if len(values) == 1 else tuple(values)

    def _hash_selector(self, item: ABIParam) -> bytes:
        return self._hash(item)[:4]

    def _call(self, fn: str, *args: Any) -> Any:
        try:
            return self._contract_call(self.address, self._functions[fn], *args)
        except RpcError as exc:
            reason = self._revert_reason(exc)
            if reason is not None:
                raise ChainError(f"{fn}: {reason}") from None
            raise ChainUnreachableError(f"{fn}: the node did not answer ({exc})") from None
        except OSError as exc:
            raise ChainUnreachableError(f"{fn}: the node did not answer ({exc})") from None
        except ValueError as exc:
            raise ChainError(f"{fn}: unexpected answer ({exc})") from None

    def _revert_reason(self, exc: RpcError) -> str | None:
        """What a reverted call says (custom errors decoded), or None if the error is no revert."""
        data = exc.data.get("data") if isinstance(exc.data, Mapping) else exc.data
        try:
            raw = _hex_bytes(data) if isinstance(data, str) else b""
        except ValueError:
            raw = b""
        if raw[:4] == ERROR_STRING:
            try:
                return f"execution reverted: {abi_decode([{'type': 'string'}], raw[4:])[0]}"
            except ValueError:
                return f"execution reverted with data 0x{raw.hex()}"
        if raw[:4] == PANIC and len(raw) >= 36:
            return f"execution reverted: panic 0x{int.from_bytes(raw[4:36], 'big'):02x}"
        if len(raw) >= 4:
            return self._decoder.describe(raw)
        if exc.code == 3 or "revert" in exc.message.lower():
            return exc.message or "execution reverted"
        return None


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


def _matches(actual: Any, wanted: Any) -> bool:
    options = wanted if isinstance(wanted, (list, tuple)) else [wanted]
    return any(actual == (to_checksum_address(w) if isinstance(w, str) and is_address(w) else w) for w in options)


def _checked_address(value: str) -> str:
    if not is_address(value):
        raise ConfigError(f"{value!r} is not an Ethereum address")
    return to_checksum_address(value)
