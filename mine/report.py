"""A self-contained HTML report of a demo run: inline SVG charts, no scripts, no network."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

WIDTH, HEIGHT, PAD = 560, 240, 40
ETHER = 10**18


def _scale(values: list[float], lo_px: float, hi_px: float) -> tuple[float, float, Any]:
    lo, hi = min(values), max(values)
    if hi == lo:
        hi = lo + 1.0
    return lo, hi, lambda v: lo_px + (v - lo) / (hi - lo) * (hi_px - lo_px)


def line_chart(title: str, xs: list[float], ys: list[float], *, ref: float | None = None, ref_label: str = "") -> str:
    """An SVG line chart with points; an optional dashed reference line."""
    values = ys + ([ref] if ref is not None else [])
    _, _, sx = _scale(xs or [0.0], PAD, WIDTH - PAD)
    lo, hi, sy = _scale(values or [0.0], HEIGHT - PAD, PAD)
    points = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in zip(xs, ys))
    parts = [f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img">',
             f'<text x="{PAD}" y="20" font-weight="bold">{html.escape(title)}</text>',
             f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" stroke="#999"/>',
             f'<text x="4" y="{PAD}" font-size="11">{hi:.4g}</text>',
             f'<text x="4" y="{HEIGHT - PAD}" font-size="11">{lo:.4g}</text>',
             f'<polyline fill="none" stroke="#2563eb" stroke-width="2" points="{points}"/>']
    for x, y in zip(xs, ys):
        parts.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="#2563eb"><title>{x:g}: {y:.4f}</title></circle>')
    if ref is not None:
        parts.append(f'<line x1="{PAD}" y1="{sy(ref):.1f}" x2="{WIDTH - PAD}" y2="{sy(ref):.1f}" stroke="#16a34a" stroke-dasharray="6 4"/>')
        parts.append(f'<text x="{WIDTH - PAD - 150}" y="{sy(ref) - 4:.1f}" font-size="11" fill="#16a34a">{html.escape(ref_label)}</text>')
    parts.append(f'<text x="{WIDTH / 2}" y="{HEIGHT - 8}" font-size="11" text-anchor="middle">model version</text></svg>')
    return "".join(parts)


def bar_chart(title: str, labels: list[str], series: list[tuple[str, str, list[float]]]) -> str:
    """Stacked SVG bars; `series` is (name, colour, values per label)."""
    totals = [sum(s[2][i] for s in series) for i in range(len(labels))] or [0.0]
    top = max(totals) or 1.0
    n = max(len(labels), 1)
    slot = (WIDTH - 2 * PAD) / n
    parts = [f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img">',
             f'<text x="{PAD}" y="20" font-weight="bold">{html.escape(title)}</text>',
             f'<text x="4" y="{PAD}" font-size="11">{top:.4g}</text>']
    for i, label in enumerate(labels):
        x = PAD + i * slot + slot * 0.15
        base = HEIGHT - PAD
        for name, colour, values in series:
            h = values[i] / top * (HEIGHT - 2 * PAD)
            base -= h
            parts.append(f'<rect x="{x:.1f}" y="{base:.1f}" width="{slot * 0.7:.1f}" height="{h:.1f}" fill="{colour}">'
                         f'<title>{html.escape(label)} {html.escape(name)}: {values[i]:.4g}</title></rect>')
        parts.append(f'<text x="{x + slot * 0.35:.1f}" y="{HEIGHT - PAD + 14}" font-size="10" text-anchor="middle">{html.escape(label)}</text>')
    legend_x = WIDTH - PAD - 160
    for j, (name, colour, _) in enumerate(series):
        parts.append(f'<rect x="{legend_x}" y="{6 + 13 * j}" width="10" height="10" fill="{colour}"/>'
                     f'<text x="{legend_x + 14}" y="{15 + 13 * j}" font-size="11">{html.escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _eps(value: float | None) -> str:
    """An ε for the page: "off" for an update trained without DP (or a run without DP)."""
    return "off" if value is None else f"{float(value):.2f}"


def write_report(summary: dict[str, Any], path: Path) -> None:
    """Write `report.html` for a demo summary (the dict written to summary.json)."""
    versions = summary["model_versions"]
    score_chart = line_chart(
        f"Validation {summary['metric']} per model version", [float(v["version"]) for v in versions],
        [float(v["score"]) for v in versions], ref=float(summary["centralized_score"]), ref_label="centralized training",
    )
    miners = sorted({s["miner"] for s in summary["submissions"]}, key=lambda n: int(n[5:]))
    rewards = [sum(s["reward_wei"] for s in summary["submissions"] if s["miner"] == m) / ETHER for m in miners]
    reward_chart = bar_chart("Reward per miner (ETH)", miners, [("reward", "#2563eb", rewards)])
    per_miner = summary.get("miners_summary", {})
    net_rows = "".join(
        f"<tr class='{'' if row['honest'] else 'bad'}'><td>{html.escape(name)}</td><td>{'yes' if row['honest'] else 'no'}</td>"
        f"<td>{row['submitted']}</td><td>{row['accepted']}</td><td>{row['reward_wei'] / ETHER:.4f}</td>"
        f"<td>{row.get('clawed_back_wei', 0) / ETHER:.4f}</td><td>{row['forfeited_wei'] / ETHER:.4f}</td>"
        f"<td class='{'pos' if row['net_wei'] >= 0 else 'neg'}'>"
        f"{row['net_wei'] / ETHER:+.4f}</td><td>{_eps(row.get('epsilon_spent'))}</td></tr>"
        for name, row in sorted(per_miner.items(), key=lambda kv: int(kv[0][5:]))
    )
    rounds = sorted({s["round"] for s in summary["submissions"]})
    acc = [float(sum(1 for s in summary["submissions"] if s["round"] == r and s["accepted"])) for r in rounds]
    rej = [float(sum(1 for s in summary["submissions"] if s["round"] == r and not s["accepted"])) for r in rounds]
    round_chart = bar_chart("Accepted vs rejected per round", [f"round {r}" for r in rounds],
                            [("accepted", "#16a34a", acc), ("rejected", "#dc2626", rej)])
    rows = "".join(
        f"<tr class='{'' if s['honest'] else 'bad'}'><td>{s['round']}</td><td>{html.escape(s['miner'])}</td>"
        f"<td>{'yes' if s['honest'] else 'no'}</td><td>{'accepted' if s['accepted'] else 'rejected'}</td>"
        f"<td>{html.escape(s['reason'])}</td><td>{s['score_before']:.4f}</td><td>{s['score_after']:.4f}</td>"
        f"<td>{s['reward_wei'] / ETHER:.4f}</td><td>{'returned' if s.get('stake_returned') else 'forfeited'}</td><td>{_eps(s.get('epsilon'))}</td></tr>"
        for s in summary["submissions"]
    )
    t = summary["timings_s"]
    eps = [float(s["epsilon"]) for s in summary["submissions"] if s.get("epsilon") is not None]
    privacy = (f"DP-SGD, ε {min(eps):.2f}–{max(eps):.2f} per update (δ ≤ 1e-5); each miner's ε composed by its "
               "privacy ledger in the table below" if eps else "no DP (updates trained with --no-dp)")
    backdoor = (f"<li>backdoor success on triggered validation inputs: {summary['backdoor_success']:.1%}</li>"
                if "backdoor_success" in summary else "")
    doc = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sonar demo — {html.escape(summary['dataset'])}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #111; max-width: 1200px; }}
table {{ border-collapse: collapse; font-size: 13px; }} td, th {{ border: 1px solid #ddd; padding: 3px 8px; }}
tr.bad td {{ background: #fef2f2; }} td.pos {{ color: #15803d; }} td.neg {{ color: #b91c1c; font-weight: bold; }} .charts {{ display: flex; flex-wrap: wrap; gap: 1rem; }}
svg {{ border: 1px solid #eee; background: #fff; font-family: system-ui, sans-serif; }}
</style></head><body>
<h1>Sonar demo: {html.escape(summary['dataset'])}</h1>
<ul>
<li>{summary['miners']} miners, {summary['malicious']} malicious ({html.escape(summary['attack'])}), {summary['rounds']} rounds, seed {summary['seed']}</li>
<li>{html.escape(summary['metric'])}: initial {summary['initial_score']:.4f} → final {summary['final_score']:.4f}; centralized reference {summary['centralized_score']:.4f}{f"; final accuracy {summary['final_accuracy']:.4f}" if "final_accuracy" in summary else ""}</li>
<li>privacy: {privacy}</li>
<li>malicious updates accepted: {summary['malicious_accepted']} of {summary['malicious_submitted']}</li>{backdoor}
<li>bounty {summary['bounty_wei'] / ETHER:g} ETH: paid {summary['paid_wei'] / ETHER:.4f}, refunded {summary['refunded_wei'] / ETHER:.4f}</li>
<li>time {t['total']:.1f} s — training {t['train']:.1f} s, chain {t['chain']:.1f} s, store {t['store']:.1f} s, evaluation {t['evaluate']:.1f} s</li>
</ul>
<div class="charts">{score_chart}{reward_chart}{round_chart}</div>
<h2>Net per miner (rewards − rewards clawed back − forfeited stakes)</h2>
<table><tr><th>miner</th><th>honest</th><th>submitted</th><th>accepted</th><th>reward (ETH)</th><th>clawed back (ETH)</th><th>forfeited (ETH)</th><th>net (ETH)</th><th>ε spent (ledger)</th></tr>
{net_rows}</table>
<h2>Submissions</h2>
<table><tr><th>round</th><th>miner</th><th>honest</th><th>verdict</th><th>reason</th><th>score before</th><th>score after</th><th>reward (ETH)</th><th>stake</th><th>ε</th></tr>
{rows}</table>
</body></html>
"""
    path.write_text(doc)
