"""The bench's tables (rich), its goals, the machine description and ``bench/results.json``."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:  # noqa: BLE001 - not installed
        return None


def _command_version(cmd: list[str]) -> str | None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (out.stdout or out.stderr).strip().splitlines()[0] if out.returncode == 0 and (out.stdout or out.stderr) else None


def machine() -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import torch

        torch_version = torch.__version__
    except ImportError:
        torch_version = None
    versions: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch_version,
        "numpy": _version("numpy"),
        "web3": _version("web3"),
        "eth-account": _version("eth-account"),
        "rich": _version("rich"),
        "coincurve": _version("coincurve"),  # None: eth_keys signs in pure Python (~10 ms a signature)
    }
    try:
        from mine.devnet import anvil_binary

        versions["anvil"] = _command_version([anvil_binary(), "--version"])
    except Exception:  # noqa: BLE001 - no anvil: the chain sections say so themselves
        versions["anvil"] = None
    versions["node"] = _command_version(["node", "--version"])
    try:
        versions["js-ipfs"] = json.loads((PROJECT_ROOT / "node_modules/ipfs/package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        versions["js-ipfs"] = None
    try:
        versions["solc"] = json.loads((PROJECT_ROOT / "build/contracts/Sonar.json").read_text())["compiler"]["version"]
    except (OSError, ValueError, KeyError):
        versions["solc"] = None
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {"cores": os.cpu_count(), "cpu": cpu, "platform": platform.platform(), "load_avg_at_start": load,
            "versions": versions}


# --------------------------------------------------------------------------- rendering


def _n(v: Any, fmt: str = ",") -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and fmt == ",":
        return f"{v:,.2f}"
    return format(v, fmt)


def _met(goal: dict[str, Any] | None) -> str:
    if goal is None:
        return ""
    return "[green]met[/]" if goal["met"] else "[red]missed[/]"


def _failed(table: Table, section: dict[str, Any], width: int) -> bool:
    if "error" in section or "skipped" in section:
        text = section.get("error") or section.get("skipped")
        table.add_row("[red]not measured[/]", str(text)[:200], *[""] * (width - 2))
        return True
    return False


def gas_tables(g: dict[str, Any], goals: dict[str, Any]) -> list[Table]:
    t = Table("transaction", "gas", "goal", "", "reference", "ratio",
              title="Gas per transaction (receipts, 21,000 intrinsic included)")
    if _failed(t, g, 6):
        return [t]
    base_submit, base_eval = g["sonar2017_submit"], g["sonar2017_evaluate"]
    v1 = g["v1_commit_reveal"]
    # (label, key, goal key, reference, reference's name)
    rows = [
        ("post bounty (ETH)", "post_eth", None, None, ""), ("post bounty (ERC-20)", "post_erc20", None, None, ""),
        ("submit", "submit", "gas_submit", v1, "v1 commit + reveal"),
        ("submit", "submit", None, base_submit, "Sonar2017 addGradient"),
        ("submit (ERC-20 stake)", "submit_erc20", None, None, ""),
        ("settle: 1 accepted (1st vesting)", "settle_accept", None, base_eval, "Sonar2017 evalGradient"),
        ("settle: 1 rejected, stake refunded", "settle_refund", None, None, ""),
        ("settle: 1 rejected, stake forfeited", "settle_forfeit", None, None, ""),
        ("settle: 1 forfeited, vesting rewards clawed back", "settle_forfeit_clawback", None, None, ""),
        ("settle: round of 1, per update", "settle_per_update_1", None, None, ""),
        ("settle: round of 8, per update", "settle_per_update_8", None, None, ""),
        ("settle: round of 32, per update", "settle_per_update_32", "gas_settle_per_update_32", base_eval,
         "Sonar2017 evalGradient"),
        ("settle: 32 refunded, per update", "settle_per_update_32_refund", None, None, ""),
        ("settle: 32 forfeited, per update", "settle_per_update_32_forfeit", None, None, ""),
        ("revealAudit", "reveal_audit", None, None, ""), ("skip (stake back)", "skip", None, None, ""),
        ("reclaimStake", "reclaim_stake", None, None, ""),
        ("release (vesting to credits)", "release", None, None, ""),
        ("withdraw (ETH)", "withdraw", "gas_withdraw", None, ""), ("withdraw (ERC-20)", "withdraw_erc20", None, None, ""),
        ("close (burns the pool)", "close", None, None, ""),
    ]
    for label, key, goal_key, base, base_name in rows:
        value = g[key]
        goal = goals.get(goal_key) if goal_key else None
        t.add_row(label, _n(value), goal["goal"] if goal else "", _met(goal),
                  f"{base_name} {_n(base)}" if base else "", f"{value / base:.3f}x" if base else "")
    sc = g["scale"]
    s = Table("step", "1st", f"{sc['submissions']}th", "exec 1st", f"exec {sc['submissions']}th", "growth", "",
              title=f"1st vs {sc['submissions']}th submission to one bounty ({sc['open_bounties']} bounties open)")
    for key in ("submit", "settle"):
        goal = goals.get(f"gas_{key}_growth")
        s.add_row(key, _n(g[f"{key}_1st"]), _n(g[f"{key}_1000th"]), _n(g[f"{key}_1st_exec"]),
                  _n(g[f"{key}_1000th_exec"]), _n(g[f"{key}_1000th_exec"] - g[f"{key}_1st_exec"]), _met(goal))
    return [t, s]


def speed_table(r: dict[str, Any], goals: dict[str, Any]) -> Table:
    t = Table("area", "measure", "value", "baseline (same run)", "ratio", "goal", "",
              title="Throughput and overhead (each against a baseline measured in the same run)")
    cl = r.get("cli")
    if cl is not None and not _failed(t, cl, 7):
        goal = goals.get("cli_status_start")
        sec = cl["seconds"]
        web3_s = sec["python -c 'import web3'"]
        t.add_row("cli", "start: mine status", f"{sec['mine status']:.2f} s",
                  f"python -c 'import web3' {web3_s:.2f} s", f"{cl['status_over_import_web3']}x",
                  goal["goal"] if goal else "", _met(goal))
        t.add_row("", "  --help / vault list / bounties", f"{sec['mine --help']:.2f} / {sec['mine vault list']:.2f} / "
                  f"{sec['mine bounties']:.2f} s", f"python -c pass {sec['python -c pass']:.2f} s", "", "", "")
    st = r.get("store")
    if st is not None and not _failed(t, st, 7):
        goal = goals.get("store_cid_vs_sha256")
        t.add_row("store", f"compute_cid {st['size_mib']:g} MiB", f"{st['cid_mib_s']:,} MiB/s",
                  f"sha256 {st['sha256_mib_s']:,} MiB/s", f"{st['ratio']}x", goal["goal"] if goal else "", _met(goal))
        t.add_row("", "compute_cid, 1 thread", f"{st['cid_1thread_mib_s']:,} MiB/s", "sha256", f"{st['ratio_1thread']}x",
                  "", "")
        add_goal = goals.get("store_embedded_add_vs_sha256")
        t.add_row("", "embedded add / cat", f"{st['embedded_add_mib_s']:,} / {st['embedded_cat_mib_s']:,} MiB/s",
                  "sha256", f"{st['embedded_add_vs_sha256']}x", add_goal["goal"] if add_goal else "", _met(add_goal))
        if st.get("embedded_add_fsync_mib_s") is not None:
            t.add_row("", "embedded add, durable (fsync)", f"{st['embedded_add_fsync_mib_s']:,} MiB/s", "", "", "", "")
        if st.get("node_add_mib_s") is not None:
            t.add_row("", "js-ipfs node add / cat", f"{st['node_add_mib_s']:,} / {st['node_cat_mib_s']:,} MiB/s",
                      "sha256", f"{st['node_add_mib_s'] / st['sha256_mib_s']:.3f}x", "", "")
        else:
            t.add_row("", "IPFS node add / cat", "skipped", st.get("node_skipped", ""), "", "", "")
    tr = r.get("train")
    if tr is not None and not _failed(t, tr, 7):
        goal = goals.get("train_overhead")
        t.add_row("train", f"mine.train, digits MLP, {tr['epochs']} epochs (CPU, median of {tr['runs']} pairs)",
                  f"{tr['mine_s']:.4f} s", f"bare torch loop {tr['bare_torch_s']:.4f} s", f"{tr['ratio']}x",
                  goal["goal"] if goal else "", _met(goal))
        t.add_row("", "  ratio of the minima (CPU)", f"{tr['mine_min_s']:.4f} s", f"{tr['bare_torch_min_s']:.4f} s",
                  f"{tr['ratio_of_minima']}x", "", "")
        t.add_row("", "  wall time (medians)", f"{tr['mine_wall_s']:.4f} s", f"{tr['bare_torch_wall_s']:.4f} s",
                  f"{tr['ratio_wall']}x", "", "")
        t.add_row("", "  vs textbook loop (default Adam, min)", f"{tr['mine_min_s']:.4f} s",
                  f"{tr['textbook_torch_s']:.4f} s", f"{tr['mine_vs_textbook']}x", "", "")
        cnn = tr.get("cnn")
        if cnn:
            goal = goals.get("train_overhead_cnn")
            t.add_row("", f"mine.train, digits CNN, {cnn['epochs']} epochs (median of {cnn['runs']} pairs)",
                      f"{cnn['mine_s']:.4f} s", f"bare torch loop {cnn['bare_torch_s']:.4f} s", f"{cnn['ratio']}x",
                      goal["goal"] if goal else "", _met(goal))
    ch = r.get("chain")
    if ch is not None and not _failed(t, ch, 7):
        goal = goals.get("chain_client_vs_raw")
        t.add_row("chain", "SonarClient submit", f"{ch['client_submissions_per_s']} subm/s = "
                  f"{ch['client_tx_per_s']} tx/s", f"raw signed transfers {ch['raw_tx_per_s']} tx/s",
                  f"{ch['ratio']}x", goal["goal"] if goal else "", _met(goal))
        piped = ch.get("pipelined")
        if piped:
            pgoal = goals.get("chain_pipelined_client_vs_raw")
            t.add_row("", "  pipelined (send a round, then wait)", f"{piped['client_tx_per_s']} tx/s",
                      f"pipelined raw transfers {piped['raw_tx_per_s']} tx/s", f"{piped['ratio']}x",
                      pgoal["goal"] if pgoal else "", _met(pgoal))
        rpcs = ch.get("rpcs_per_tx")
        if rpcs:
            top = sorted(((v, k) for k, v in rpcs["client"].items() if k != "total"), reverse=True)[:3]
            t.add_row("", "  JSON-RPC requests per tx", f"{rpcs['client']['total']} ("
                      + ", ".join(f"{k.removeprefix('eth_')} {v:g}" for v, k in top) + ")",
                      f"raw {rpcs['raw']['total']}", "", "", "")
    return t


def _demo_row(t: Table, label: str, d: dict[str, Any]) -> None:
    ts = d["timings_s"]
    t.add_row(label, f"{d['final_score']:.4f}", f"{d['final_vs_centralized']:.3f}x of {d['centralized_score']:.4f}",
              f"{d['malicious_accepted']} of {d['malicious_submitted']}", f"{ts['total']:.1f}",
              ", ".join(f"{k} {ts[k]:.1f}" for k in ("train", "chain", "store", "evaluate", "other") if k in ts))


def demo_table(d: dict[str, Any], f: dict[str, Any] | None) -> Table:
    t = Table("run", "final score", "vs centralised", "malicious accepted", "wall (s)", "time split (s)",
              title="End to end: mine demo vs FedAvg on the same split")
    if _failed(t, d, 6):
        return t
    _demo_row(t, f"mine demo ({d['dataset']}, {d['miners']} miners, {d['malicious']} {d['attack']}, {d['rounds']} rounds)",
              d)
    if d.get("cnn"):
        _demo_row(t, "mine demo --model cnn (digits as 1x8x8 images, same split)", d["cnn"])
    if d.get("no_dp"):
        _demo_row(t, "mine demo --no-dp (same scenario, miners train without DP)", d["no_dp"])
    if f and "error" not in f and "fedavg_all" in f:
        c = d["centralized_score"]
        flower = "Flower " if f.get("flwr_version") else "re-implemented "
        bad = len(f["malicious_clients"])
        for key, what, attackers in (
                ("fedavg_all", f"FedAvg, all {f['clients']} clients", f"{bad} of {bad} (no defence)"),
                ("fedavg_honest_only", "FedAvg, honest clients only", "-"),
                ("fedtrimmedavg_all", f"FedTrimmedAvg (beta 0.2), all {f['clients']} clients", "trimmed per coordinate"),
                ("krum_all", f"Krum (f={bad}), all {f['clients']} clients", "one update chosen per round")):
            run = f.get(key)
            if run is None:
                continue
            t.add_row(flower + what, f"{run['final_accuracy']:.4f}", f"{run['final_accuracy'] / c:.3f}x",
                      attackers, f"{run['wall_s']:.1f}", "training + aggregation only, in memory")
    return t


def privacy_table(p: dict[str, Any]) -> Table:
    t = Table("update", "DP (ε)", "labels: precision / recall (chance)", "exact at n=1", "reconstruction PSNR / SSIM",
              "class-mean image", "re-identified (chance; class-mean image)", "membership AUC", "AUC bound (replace-one / add-remove)",
              title="Leakage of one miner's update (digits MLP, demo settings; mean over trials)")
    if _failed(t, p, 9):
        return t
    for r in p["rows"]:
        recon = f"IG {r['ig_psnr']:.1f} dB / {r['ig_ssim']:.2f}"
        if r.get("first_layer_psnr") is not None:
            recon += f"; 1st layer {r['first_layer_psnr']:.1f} / {r['first_layer_ssim']:.2f}"
        t.add_row(f"{r['case']}: {r['rows']} rows, {r['trials']} updates ({r['inversions']} inverted)",
                  f"on ({r['epsilon']:.2f})" if r["dp"] else "off",
                  f"{r['label_precision']:.2f} / {r['label_recall']:.2f} ({r['label_chance_precision']:.2f})",
                  f"{r['labels_exact']:.0%}" if "labels_exact" in r else "",
                  recon, f"{r['baseline_psnr']:.1f} dB / {r['baseline_ssim']:.2f}",
                  f"{r['reidentified']:.1%} ({r['reid_chance']:.2%}; {r['reid_class_mean']:.1%})", f"{r['membership_auc']:.2f}",
                  f"{r['auc_bound']:.3f} / {r['auc_bound_add_remove']:.3f}" if r["dp"] else "1 (no DP)")
    return t


def goals_table(goals: dict[str, Any]) -> Table:
    t = Table("goal", "value", "target", "", title="Goals")
    for name, g in goals.items():
        value = g["value"]
        t.add_row(name, _n(value) if isinstance(value, int) else str(value), g["goal"], _met(g))
    return t


def render(results: dict[str, Any], console: Console) -> None:
    goals = results.get("goals", {})
    m = results.get("machine", {})
    console.print(f"[bold]Sonar + mine benchmarks[/] ({'quick' if results.get('quick') else 'full'}) on "
                  f"{m.get('cores')} cores, {m.get('cpu')}; load at start {m.get('load_avg_at_start')}")
    if "gas" in results:
        for table in gas_tables(results["gas"], goals):
            console.print(table)
        g = results["gas"]
        if "sonar2017_submit" in g:
            console.print(f"Sonar2017 baseline: submit (addGradient) {g['sonar2017_submit']:,}, evaluate "
                          f"(evalGradient, improved) {g['sonar2017_evaluate']:,} gas — one global array, no "
                          "escrow, no stake.")
    if any(k in results for k in ("cli", "store", "train", "chain")):
        console.print(speed_table(results, goals))
    if "demo" in results:
        console.print(demo_table(results["demo"], results.get("flower")))
    f = results.get("flower")
    if f:
        console.print(f"FedAvg: {f.get('implementation') or f.get('error') or f.get('skipped')}")
    if "privacy" in results:
        console.print(privacy_table(results["privacy"]))
    w = results.get("watch")
    if w and "error" not in w:
        console.print(f"mine watch: idle CPU {w['idle_cpu_percent']:.2f}% of one core over {w['idle_seconds']:.0f} s "
                      f"(block every {w['block_time_s']:g} s, interval {w['interval_s']:g} s); bounty posted → first "
                      f"submission mined {w['post_to_submit_s']:.1f} s (training {w['train_s']:.1f} s, the rest "
                      f"{w['overhead_s']:.1f} s)")
    console.print(goals_table(goals))
    sections = results.get("seconds", {})
    if sections:
        console.print("time per section (s): " + ", ".join(f"{k} {v:.1f}" for k, v in sections.items()))


def write(results: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(results, indent=2, default=str) + "\n")
    os.replace(tmp, path)
