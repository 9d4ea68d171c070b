"""A misbehaving JSON-RPC provider in front of a real anvil: rate limits, range limits, auth (tests only).

It forwards every request to the node, except that it answers HTTP 429 (with `Retry-After`) to the
first `http_429` requests, a JSON-RPC -32005 "rate limit" error to the next `rpc_limited`, refuses
`eth_getLogs` spanning more than `max_log_range` blocks like hosted providers do, and counts what it
saw by method.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class ProxyRules:
    http_429: int = 0
    rpc_limited: int = 0
    max_log_range: int | None = None
    seen: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)


@contextmanager
def rpc_proxy(upstream: str, rules: ProxyRules) -> Iterator[str]:
    """Serve the proxy on a free loopback port for the duration of the block; yields its URL."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # quiet
            pass

        def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            request = json.loads(body)
            method = request.get("method", "?") if isinstance(request, dict) else "batch"
            with rules.lock:
                rules.seen[method] += 1
                if rules.http_429 > 0:
                    rules.http_429 -= 1
                    rules.refused["http_429"] += 1
                    self._reply(429, b'{"error":"too many requests"}', {"Retry-After": "0"})
                    return
                if rules.rpc_limited > 0:
                    rules.rpc_limited -= 1
                    rules.refused["rpc_limited"] += 1
                    error = {"jsonrpc": "2.0", "id": request.get("id"),
                             "error": {"code": -32005, "message": "daily request count exceeded, request rate limited"}}
                    self._reply(200, json.dumps(error).encode())
                    return
            if method == "eth_getLogs" and rules.max_log_range is not None:
                query = request["params"][0]
                lo, hi = int(query.get("fromBlock", "0x0"), 16), int(query.get("toBlock", "0x0"), 16)
                if hi - lo + 1 > rules.max_log_range:
                    with rules.lock:
                        rules.refused["eth_getLogs"] += 1
                    error = {"jsonrpc": "2.0", "id": request.get("id"),
                             "error": {"code": -32602, "message": f"block range too large, max {rules.max_log_range}"}}
                    self._reply(200, json.dumps(error).encode())
                    return
            forwarded = urllib.request.Request(upstream, data=body, headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(forwarded, timeout=30) as response:
                self._reply(200, response.read())

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
