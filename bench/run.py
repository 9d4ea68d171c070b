"""Run the benchmarks: ``python -m bench.run [--quick] [--out bench/results.json] [--only gas,train]``.

Sections run in order — cli, gas, chain, store, train, demo, flower, privacy, watch — each on its own anvil / temp dirs.
A section that fails is recorded as ``{"error": ...}`` and the others still run; results.json is
rewritten after every section, so an interrupted run keeps what it measured. Exit status: 0 when
every section ran (goals met or not: they are reported, not enforced), 1 when one failed.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from bench import report

SECTIONS = ("cli", "gas", "chain", "store", "train", "demo", "flower", "privacy", "watch")
DEFAULT_OUT = Path(__file__).resolve().parent / "results.json"
# what each section's goals are called, to mark them missed when the section could not run
GOAL_NAMES = {
    "cli": ("cli_status_start",),
    "gas": ("gas_submit", "gas_settle_per_update_32", "gas_withdraw", "gas_submit_growth", "gas_settle_growth",
            "sonar_code_size"),
    "chain": ("chain_client_vs_raw", "chain_pipelined_client_vs_raw"),
    "store": ("store_cid_vs_sha256", "store_embedded_add_vs_sha256"),
    "train": ("train_overhead", "train_overhead_cnn"),
    "demo": ("demo_no_malicious_accepted", "demo_cnn_no_malicious_accepted", "demo_score_no_dp", "demo_score_dp"),
    "flower": (),
    "privacy": ("privacy_labels_at_chance", "privacy_reidentification_at_chance",
                "privacy_reconstruction_below_class_mean", "privacy_membership_within_bound"),
    "watch": ("watch_idle_cpu", "watch_post_to_submit"),
}


def _section(name: str, results: dict[str, Any], *, quick: bool, rpc_url: str | None,
             ipfs_api: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run one section (its module is imported only now); returns (its results, its goals)."""
    if name not in SECTIONS:
        raise ValueError(f"unknown section {name!r}; choose from {', '.join(SECTIONS)}")
    module = importlib.import_module(f"bench.{name}")
    if name == "flower":
        demo_result = results.get("demo")
        return module.run(quick=quick, demo=demo_result if demo_result and "error" not in demo_result else None), {}
    kwargs: dict[str, Any] = ({"rpc_url": rpc_url} if name in ("cli", "gas", "chain")
                              else {"api": ipfs_api} if name == "store" else {})
    r = module.run(quick=quick, **kwargs)
    return r, module.goals(r)


def run_all(*, quick: bool = False, out: Path | None = DEFAULT_OUT, only: tuple[str, ...] = SECTIONS,
            rpc_url: str | None = None, ipfs_api: str | None = None, console: Console | None = None,
            on_section: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the sections in ``only`` and return the results dict (also written to ``out``, if given).

    ``rpc_url``: run gas and chain on this node (snapshot/revert around each) instead of a fresh anvil;
    ``ipfs_api``: measure this IPFS node instead of starting a js-ipfs node.
    """
    if console is None:
        console = Console()
        if not console.is_terminal or console.width < 140:
            console = Console(width=140)  # the tables need the room (piped output defaults to 80)
    unknown = [s for s in only if s not in SECTIONS]
    if unknown:
        raise ValueError(f"unknown section(s) {unknown}; choose from {', '.join(SECTIONS)}")
    started = time.perf_counter()
    results: dict[str, Any] = {"quick": quick, "machine": report.machine(), "goals": {}, "seconds": {}}
    for name in (s for s in SECTIONS if s in only):
        if on_section:
            on_section(name)
        console.print(f"[dim]running {name}…[/]")
        t0 = time.perf_counter()
        try:
            section, goals = _section(name, results, quick=quick, rpc_url=rpc_url, ipfs_api=ipfs_api)
        except Exception as exc:  # noqa: BLE001 - record and carry on with the other sections
            section = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(limit=8)}
            goals = {g: {"value": None, "goal": f"({name} failed)", "met": False} for g in GOAL_NAMES[name]}
            console.print(f"[red]{name} failed:[/] {section['error']}")
        results[name] = section
        results["goals"].update(goals)
        results["seconds"].pop("total", None)
        results["seconds"][name] = round(time.perf_counter() - t0, 2)
        results["seconds"]["total"] = round(time.perf_counter() - started, 2)
        if out is not None:
            report.write(results, out)
    report.render(results, console)
    if out is not None:
        console.print(f"written to {out}")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (seconds; what the smoke test runs)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results JSON (default bench/results.json)")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections to run (default all: {','.join(SECTIONS)})")
    parser.add_argument("--rpc", default=None, help="run gas/chain on this node instead of a fresh anvil")
    parser.add_argument("--ipfs-api", default=None, help="measure this IPFS node instead of starting js-ipfs")
    args = parser.parse_args(argv)
    only = tuple(s.strip() for s in args.only.split(",") if s.strip())
    try:
        results = run_all(quick=args.quick, out=args.out, only=only, rpc_url=args.rpc, ipfs_api=args.ipfs_api)
    except ValueError as exc:
        parser.error(str(exc))
    failed = [s for s in SECTIONS if isinstance(results.get(s), dict) and "error" in results[s]]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
