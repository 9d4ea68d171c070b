"""`mine ui`: this mine's page, served on 127.0.0.1 with Starlette; server-rendered HTML, inline SVG charts.

It reads the market through the same library functions as the CLI (`mine.overview`, `mine.vault`,
`mine.owner`) and shows no row of data, only schemas and counts. The one write action (withdraw)
needs the per-session CSRF token that only this page knows: another local page cannot trigger it.
While `mine watch` runs on the same home, a small inline script polls `/api/state` and reloads the
page when the chain or the daemon's log moved on.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mine.ui.charts import line_chart

HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "mine_session"


@dataclass
class MineView:
    """What the page reads: a mine home, its chain client (with an account to withdraw) and its store."""

    home: Any
    client: Any
    store: Any

    @property
    def me(self) -> str | None:
        return self.client.account.address if self.client.account is not None else None


def _short(text: str, n: int = 10) -> str:
    return text if len(text) <= n + 1 else text[:n] + "…"


def gather(view: MineView) -> dict[str, Any]:
    """Everything the page shows, from the library functions the CLI uses."""
    from mine.amounts import format_amount
    from mine.chain import BountyStatus
    from mine.scores import score_from_chain
    from mine.overview import earnings, list_bounties, my_submissions, vesting, withdrawn
    from mine.owner import OwnedBounty, audit_results
    from mine.vault import Vault
    from mine.watch import lock_holder, recent_log

    home, client = view.home, view.client
    me = view.me
    eth = lambda wei: format_amount(wei, 18, "ETH")  # noqa: E731
    budgets: dict[str, str] = {}
    from mine.ledger import PrivacyLedger

    ledger = PrivacyLedger(home)
    for d in Vault(home).list():
        st = ledger.status(d.name, rows=d.rows)
        budgets[d.name] = (f"ε {st.spent:.2f} of {st.budget:g} ({st.updates} update{'s' if st.updates != 1 else ''})" if st.private
                           else f"non-private updates (budget ε {st.budget:g})")
    datasets = [{"name": d.name, "rows": d.rows, "features": len(d.features), "target": d.target,
                 "schema": ", ".join(d.features[:6]) + (f" … (+{len(d.features) - 6})" if len(d.features) > 6 else ""),
                 "budget": budgets.get(d.name, "not tracked")} for d in Vault(home).list()]
    bounties = [{
        "id": b.id, "model": b.model_detail, "escrow": b.amount(b.escrow), "stake": b.amount(b.stake),
        "expected": b.amount(b.expected_reward), "window": f"{b.eval_window // 60} min",
        "deadline": f"{b.deadline_in // 60} min", "score": f"{b.best:.4f} → {b.target:.4f}",
        "fits": ", ".join(b.fits) or "none", "fit": bool(b.fits), "owner": _short(b.owner),
        "auditable": b.auditable, "mine": me is not None and b.owner == me,
    } for b in list_bounties(client, view.store, home)]
    subs = my_submissions(client, home, me) if me else []
    submissions = [{
        "bounty": s.bounty, "index": "-" if s.index is None else s.index, "state": s.state, "why": s.why,
        "paid": format_amount(s.reward, s.decimals, s.symbol),
        "cid": _short(s.cid, 14),
    } for s in reversed(subs)]
    points = earnings(client, me) if me else []
    vests = vesting(client, me) if me else {}
    now = client.now()
    vesting_wei = sum(v.total for v in vests.values() if v.releasable_after > now)
    # what `withdraw` sends: credits, and the vesting of bounties that have ended (released first)
    credits = (client.credits(me) if me else 0) + sum(v.total for v in vests.values() if v.releasable_after <= now)
    total_withdrawn = withdrawn(client, me) if me else 0
    earned = points[-1][1] if points else 0
    if points:  # the curve starts from zero just before the first reward
        points = [(points[0][0] - 60, 0), *points]
    chart = line_chart([(t, w / 1e18) for t, w in points], title="rewards earned (ETH, cumulative)",
                       x_is_time=True, empty="no reward yet") if points else ""
    owned = []
    audits = {int(a.get("bounty", 0)): a for a in audit_results(home, client.address)}
    for path in sorted(home.owned.glob("*.json")) if home.owned.exists() else []:
        if not path.stem.isdigit():
            continue
        ob = OwnedBounty.load(home, int(path.stem))
        b = client.bounty(ob.bounty_id)
        versions = [client.model_version(b.id, v) for v in range(b.latest_version + 1)]
        lineage = line_chart([(mv.version, score_from_chain(mv.score)) for mv in versions],
                             title="validation score per model version", x_label="version")
        audit = audits.get(b.id)
        group_scores = ob.group_scores()
        groups = sorted({g for _, scores in group_scores for g in scores})
        owned.append({
            "groups": groups,
            "group_scores": [{"version": v, "scores": [f"{scores[g]:.4f}" if g in scores else "-" for g in groups]}
                             for v, scores in group_scores],
            "id": b.id, "status": b.status.name.lower(), "versions": len(versions), "lineage": lineage,
            "escrow": eth(b.escrow), "paid": eth(b.paid), "burned": eth(b.burned),
            "pool": eth(b.forfeit_pool), "queued": b.submissions - b.next_eval,
            "rounds": [{"first": r["first"], "count": r["count"], "version": r["version"] or "-",
                        "before": f"{r['score_before']:.4f}", "after": f"{r['score_after']:.4f}",
                        "accepted": sum(1 for v in r["verdicts"] if v["share_bps"])} for r in ob.rounds[::-1]],
            "audit": ("revealed; " if b.audit_revealed else ("promised, not revealed; " if b.auditable else "not auditable; "))
                     + (f"my audit: {len(audit['mismatches'])} mismatch(es) in {audit['checked']} items" if audit
                        else "no audit run here"),
            "open": b.status == BountyStatus.OPEN,
        })
    pid = lock_holder(home)
    return {
        "me": me, "sonar": client.address, "home": str(home.root), "block": int(client.w3.eth.block_number),
        "datasets": datasets, "bounties": bounties, "submissions": submissions, "chart": chart,
        "earned": eth(earned), "credits": eth(credits), "credits_wei": credits, "withdrawn": eth(total_withdrawn),
        "vesting": eth(vesting_wei), "vesting_bounties": sum(1 for v in vests.values() if v.releasable_after > now),
        "owned": owned, "watch_pid": pid, "log": recent_log(home, 12),
        "accepted": sum(1 for s in subs if s.state == "accepted"),
        "rejected": sum(1 for s in subs if s.state == "rejected"), "now": time.strftime("%H:%M:%S"),
    }


def create_app(view: MineView, *, secret: bytes | None = None) -> Any:
    """The Starlette app for one mine."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    from mine.amounts import format_amount
    from mine.errors import MineError
    from mine.watch import lock_holder, recent_log

    key = secret or secrets.token_bytes(32)
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]))
    page = env.get_template("page.html")

    def csrf_for(session: str) -> str:
        return hmac.new(key, session.encode(), hashlib.sha256).hexdigest()

    def index(request: Request) -> Response:
        session = request.cookies.get(SESSION_COOKIE) or secrets.token_urlsafe(24)
        try:
            data = gather(view)
            error = ""
        except MineError as exc:
            data, error = {"me": view.me, "sonar": "", "home": str(view.home.root), "block": 0}, str(exc)
        html = page.render(**data, error=error, message=request.query_params.get("msg", ""),
                           csrf=csrf_for(session))
        response = HTMLResponse(html)
        response.set_cookie(SESSION_COOKIE, session, httponly=True, samesite="strict")
        response.headers["Content-Security-Policy"] = (
            "default-src 'none'; style-src 'self'; img-src 'self' data:; script-src 'unsafe-inline'; "
            "connect-src 'self'; form-action 'self'; frame-ancestors 'none'")
        response.headers["X-Frame-Options"] = "DENY"
        return response

    async def withdraw(request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool

        from mine.overview import withdraw_credits

        form = await request.form()
        session = request.cookies.get(SESSION_COOKIE, "")
        token = str(form.get("csrf", ""))
        if not session or not hmac.compare_digest(token, csrf_for(session)):
            return PlainTextResponse("forbidden: missing or wrong CSRF token (reload the page)", status_code=403)
        if view.client.account is None:
            return PlainTextResponse("this page was started without an account; it cannot withdraw", status_code=403)
        try:
            amount = await run_in_threadpool(withdraw_credits, view.client)
        except MineError as exc:
            return RedirectResponse(f"/?msg=withdraw failed: {exc}", status_code=303)
        msg = f"withdrew {format_amount(amount, 18, 'ETH')}" if amount else "nothing to withdraw"
        return RedirectResponse(f"/?msg={msg}", status_code=303)

    def state(request: Request) -> Response:
        log = recent_log(view.home, 1)
        return JSONResponse({"block": int(view.client.w3.eth.block_number), "watch_pid": lock_holder(view.home),
                             "log": log[0]["time"] + log[0]["message"] if log else ""})

    routes = [Route("/", index), Route("/withdraw", withdraw, methods=["POST"]), Route("/api/state", state),
              Mount("/static", StaticFiles(directory=HERE / "static"), name="static")]
    return Starlette(routes=routes)


def serve(obj: Any, *, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Run the page for the CLI context `obj` until Ctrl-C (uvicorn)."""
    import uvicorn

    from mine.errors import ConfigError

    home = obj.home()
    try:
        client = obj.client()
    except ConfigError:
        client = obj.client(with_account=False)  # read-only page
    app = create_app(MineView(home, client, obj.store()))
    uvicorn.run(app, host=host, port=port, log_level="warning")
