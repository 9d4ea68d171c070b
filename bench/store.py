"""Store throughput: CID computation and ``add``/``cat`` vs plain ``hashlib.sha256`` of the same bytes.

* ``sha256``: ``hashlib.sha256(data).digest()`` — one thread, the floor any content address pays;
* ``cid``: ``mine.store.compute_cid(data)`` as the client calls it (leaves hashed on the idle CPUs
  for inputs >= 8 MiB), and with ``workers=1`` (one thread, like sha256);
* ``embedded_add``: ``EmbeddedStore.add`` into a fresh directory (default settings: one pack for
  large content, written through the page cache; ``embedded_add_fsync``: the same, durable on return);
* ``node_add`` / ``node_cat``: ``IpfsNodeStore`` against a private js-ipfs node started with
  ``mine.store.daemon.ipfs_daemon`` (CID recomputed locally on add, every byte verified on cat).

Each timing is the best of ``repeats`` runs, in MiB/s (MiB = 2**20 bytes).
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mine.store import EmbeddedStore, IpfsNodeStore, compute_cid
from mine.store.daemon import ipfs_daemon

MIB = 1 << 20
GOAL = 0.8


def _best(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - started)
    return best, out


def _rate(size: int, seconds: float) -> float:
    return round(size / MIB / seconds, 1)


def measure_node(data: bytes, workdir: Path, *, api: str | None = None, repeats: int = 2) -> dict[str, Any]:
    """add/cat MiB/s on an IPFS node: the one at ``api``, or a js-ipfs node started under ``workdir``."""
    def on(api_addr: str) -> dict[str, Any]:
        node = IpfsNodeStore(api_addr, timeout=120)
        try:
            add_s, cid = _best(lambda: node.add(data), repeats)
            cat_s, back = _best(lambda: node.cat(cid, max_bytes=len(data)), repeats)
        finally:
            node.close()
        if back != data:
            raise RuntimeError("the node returned different bytes")
        return {"node_add_mib_s": _rate(len(data), add_s), "node_cat_mib_s": _rate(len(data), cat_s),
                "node_cid": cid}

    if api is not None:
        return on(api)
    started = time.perf_counter()
    with ipfs_daemon(workdir) as started_api:
        ready = time.perf_counter() - started
        out = on(started_api)
    out["node_start_s"] = round(ready, 2)
    out["node"] = "js-ipfs (node_modules/ipfs), offline, started by the bench"
    return out


def measure(size: int, *, repeats: int = 3, node: bool = True, api: str | None = None) -> dict[str, Any]:
    data = np.random.default_rng(0).bytes(size)
    out: dict[str, Any] = {"size_mib": round(size / MIB, 3)}
    sha_s, _ = _best(lambda: hashlib.sha256(data).digest(), repeats)
    cid_s, cid = _best(lambda: compute_cid(data), repeats)
    cid1_s, cid1 = _best(lambda: compute_cid(data, workers=1), repeats)
    if cid != cid1:
        raise RuntimeError(f"compute_cid differs with workers=1: {cid} vs {cid1}")
    out.update({
        "sha256_mib_s": _rate(size, sha_s),
        "cid_mib_s": _rate(size, cid_s),
        "cid_1thread_mib_s": _rate(size, cid1_s),
        "ratio": round(sha_s / cid_s, 3),
        "ratio_1thread": round(sha_s / cid1_s, 3),
        "cid": cid,
    })
    tmp = Path(tempfile.mkdtemp(prefix="bench-store-"))
    try:
        runs = iter(range(repeats + 1))

        def add_fresh() -> str:
            return EmbeddedStore(tmp / f"blocks{next(runs)}").add(data)  # a fresh store each run

        add_s, added = _best(add_fresh, repeats)
        if added != cid:
            raise RuntimeError(f"EmbeddedStore.add gave {added}, compute_cid {cid}")
        cat_s, back = _best(lambda: EmbeddedStore(tmp / "blocks0").cat(cid, max_bytes=size), repeats)
        if back != data:
            raise RuntimeError("EmbeddedStore.cat returned different bytes")
        fsync_s, _ = _best(lambda: EmbeddedStore(tmp / f"fsync{next(runs)}", fsync=True).add(data), 1)
        out.update({"embedded_add_mib_s": _rate(size, add_s), "embedded_cat_mib_s": _rate(size, cat_s),
                    "embedded_add_vs_sha256": round(sha_s / add_s, 3),
                    "embedded_add_fsync_mib_s": _rate(size, fsync_s)})
        if node or api is not None:
            try:
                out.update(measure_node(data, tmp / "ipfs", api=api, repeats=min(repeats, 2)))
                if out["node_cid"] != cid:
                    raise RuntimeError(f"the node store gave {out['node_cid']}, compute_cid {cid}")
            except Exception as exc:  # noqa: BLE001 - any failure to start/use the node is a skip
                out.update({"node_add_mib_s": None, "node_cat_mib_s": None,
                            "node_skipped": f"IPFS node not usable: {type(exc).__name__}: {str(exc)[:300]}"})
        else:
            out.update({"node_add_mib_s": None, "node_cat_mib_s": None, "node_skipped": "not run (--quick)"})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def goals(s: dict[str, Any]) -> dict[str, dict[str, Any]]:
    add = s.get("embedded_add_vs_sha256")
    return {"store_cid_vs_sha256": {"value": s["ratio"], "goal": f">= {GOAL}x sha256 speed", "met": s["ratio"] >= GOAL},
            "store_embedded_add_vs_sha256": {"value": add, "goal": ">= 0.5x sha256 speed",
                                             "met": add is not None and add >= 0.5}}


def run(*, quick: bool = False, api: str | None = None) -> dict[str, Any]:
    """64 MiB (full) or 1 MiB (quick; no node unless ``api`` is given)."""
    if quick:
        return measure(1 * MIB, repeats=2, node=False, api=api)
    return measure(64 * MIB, repeats=3, node=True, api=api)
