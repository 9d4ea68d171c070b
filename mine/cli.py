"""The `mine` command: a thin click layer over the library.

Errors: every `MineError` is caught once here, printed as `error: …` on stderr, and turned into the
exit code of its kind (`mine.errors.ExitStatus`); tracebacks only with `--debug`. Progress bars go to
stderr and stay silent when stderr is not a terminal.
"""

from __future__ import annotations

import getpass
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from mine.errors import ConfigError, ExitStatus, MineError, ValidationError

err_console = Console(stderr=True, soft_wrap=True)
out_console = Console(soft_wrap=True)
if not out_console.is_terminal:
    out_console.width = 120  # piped output (logs, files): tables wide enough not to wrap


# ---------------------------------------------------------------------- context


@dataclass
class Ctx:
    home_dir: Path | None
    rpc: str | None
    sonar: str | None
    dev_account: int | None
    store_spec: str | None
    debug: bool

    def home(self) -> Any:
        from mine.home import MineHome

        return MineHome(self.home_dir)

    def config(self) -> Any:
        return self.home().load_config()

    def store(self) -> Any:
        """The configured store; `embedded:DIR` shares one embedded block store between mines."""
        from mine.store import EmbeddedStore, open_store

        home = self.home()
        spec = self.store_spec or (home.load_config().store if home.exists() else None)
        if spec and spec.startswith("embedded:"):
            return EmbeddedStore(Path(spec.split(":", 1)[1]).expanduser())
        return open_store(spec, home.root)

    def client(self, *, with_account: bool = True) -> Any:
        from mine.chain import SonarClient
        from mine.home import Config, resolve_account

        home = self.home()
        config = home.load_config() if home.exists() else Config()
        account = None
        if with_account:
            if self.dev_account is not None:
                err_console.print(f"[yellow]using dev account {self.dev_account} (public test key: local chains only)[/]")
            password = None
            if self.dev_account is None:
                password = os.environ.get("MINE_PASSWORD")
                if password is None and sys.stdin.isatty():
                    password = getpass.getpass("keystore password: ")
            account = resolve_account(home, config, dev_index=self.dev_account, password=password)
        rpc = self.rpc or config.rpc
        expected = config.chain_id if not self.rpc else None
        return SonarClient.open(rpc, self.sonar or config.sonar, account, expected_chain_id=expected)


pass_ctx = click.make_pass_decorator(Ctx)


@contextmanager
def progress(description: str, total: int | None) -> Iterator[Any]:
    """A rich progress bar on stderr (silent when stderr is not a terminal)."""
    bar = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err_console, disable=not err_console.is_terminal, transient=True,
    )
    with bar:
        task = bar.add_task(description, total=total)
        yield lambda done, total_=None: bar.update(task, completed=done, total=total_ or total)


def parse_amount(text: str) -> int:
    """`1ether`, `0.5 ether`, `10gwei`, `123` (wei) -> wei."""
    from decimal import Decimal, InvalidOperation

    units = {"ether": 10**18, "eth": 10**18, "gwei": 10**9, "wei": 1}
    t = text.strip().lower().replace(" ", "")
    for unit, scale in units.items():
        if t.endswith(unit):
            t, mult = t[: -len(unit)], scale
            break
    else:
        mult = 1
    try:
        value = Decimal(t) * mult
    except InvalidOperation:
        raise click.BadParameter(f"{text!r} is not an amount like 1ether, 0.01ether, 10gwei or 1000 (wei)") from None
    if value < 0 or value != value.to_integral_value():
        raise click.BadParameter(f"{text!r} is not a whole, non-negative number of wei")
    return int(value)


def parse_duration(text: str) -> int:
    """`2h`, `30m`, `45s`, `1d`, `90` (seconds) -> seconds."""
    units = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    t = text.strip().lower()
    mult = units.get(t[-1:], None)
    number = t[:-1] if mult else t
    try:
        value = float(number) * (mult or 1)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a duration like 2h, 30m, 45s") from None
    if value <= 0:
        raise click.BadParameter(f"{text!r} must be positive")
    return int(value)


def fmt_eth(wei: int) -> str:
    return f"{wei / 10**18:.6g} ETH"


# ---------------------------------------------------------------------- root


class MineGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MineError as exc:
            obj = ctx.find_object(Ctx)
            if obj is not None and obj.debug:
                raise
            err_console.print(f"error: {exc}", style="red", markup=False, highlight=False)
            ctx.exit(int(exc.exit_status))
        except KeyboardInterrupt:
            err_console.print("interrupted; run the same command again to finish (the journal kept your place)")
            ctx.exit(int(ExitStatus.INTERRUPTED))


@click.group(cls=MineGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--home", "home_dir", type=click.Path(path_type=Path), envvar="MINE_HOME",
              help="Mine home folder (default ~/.mine; env MINE_HOME).")
@click.option("--rpc", help="JSON-RPC URL of the chain (default: from config).")
@click.option("--sonar", help="Sonar contract address (default: from config or the recorded deployment).")
@click.option("--dev-account", type=int, help="Use the local chain's N-th well-known dev key (demos only).")
@click.option("--store", "store_spec", help="Content store: 'embedded' or an IPFS API multiaddr like /ip4/127.0.0.1/tcp/5001.")
@click.option("--ipfs-api", "ipfs_api", help="Shorthand for --store MULTIADDR.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.version_option(package_name="sonar-mine")
@click.pass_context
def cli(ctx: click.Context, home_dir: Path | None, rpc: str | None, sonar: str | None, dev_account: int | None,
        store_spec: str | None, ipfs_api: str | None, debug: bool) -> None:
    """mine — keep your data in a local mine, train bounty models on it, get paid for improvements.

    \b
    Data owner:   init, account, vault, bounties, train, submit, status, withdraw
    Model owner:  model template, bounty create|close, evaluate, audit
    Content:      ipfs add|cat|export
    Everything:   demo
    """
    ctx.obj = Ctx(home_dir, rpc, sonar, dev_account, ipfs_api or store_spec, debug)


# ---------------------------------------------------------------------- init & accounts


@cli.command()
@click.option("--rpc", "rpc_opt", default=None, help="Chain RPC URL to record (default http://127.0.0.1:8545).")
@click.option("--sonar", "sonar_opt", default=None, help="Sonar address (default: the deployment recorded for the chain).")
@click.option("--store", "store_opt", default="embedded", show_default=True, help="Store backend: embedded or an IPFS API multiaddr.")
@click.option("--offline", is_flag=True, help="Do not contact the chain (record settings only).")
@pass_ctx
def init(obj: Ctx, rpc_opt: str | None, sonar_opt: str | None, store_opt: str, offline: bool) -> None:
    """Create the mine home (mode 0700) with its config file."""
    from mine.chain import connect, recorded_deployment
    from mine.home import DEFAULT_RPC, Config

    home = obj.home()
    rpc = rpc_opt or obj.rpc or DEFAULT_RPC
    config = Config(rpc=rpc, sonar=sonar_opt or obj.sonar, store=store_opt)
    if not offline:
        w3 = connect(rpc)
        config.chain_id = int(w3.eth.chain_id)
        config.sonar = config.sonar or recorded_deployment(config.chain_id)
    home.init(config)
    out_console.print(f"mine at {home.root}: chain {config.chain_id} via {rpc}, Sonar {config.sonar or '(not set)'}, store {store_opt}")


@cli.group()
def account() -> None:
    """Manage this mine's accounts (encrypted keystores)."""


def _new_password() -> str:
    password = os.environ.get("MINE_PASSWORD")
    if password is None:
        if not sys.stdin.isatty():
            raise ConfigError("set MINE_PASSWORD to encrypt the keystore when not in a terminal")
        password = getpass.getpass("new keystore password: ")
    return password


def _make_default(home: Any, config: Any, address: str) -> None:
    """The first account of a mine becomes its default (`config.account`)."""
    if config.account is None:
        config.account = address
        home.save_config(config)


@account.command("new")
@pass_ctx
def account_new(obj: Ctx) -> None:
    """Create a new key, stored encrypted (password from MINE_PASSWORD or a prompt)."""
    home = obj.home()
    config = home.load_config()
    acct = home.new_account(_new_password())
    _make_default(home, config, acct.address)
    out_console.print(acct.address)


@account.command("import")
@click.argument("private_key_file", type=click.File("r"))
@pass_ctx
def account_import(obj: Ctx, private_key_file: Any) -> None:
    """Import a hex private key from a file ('-' for stdin) into an encrypted keystore."""
    home = obj.home()
    config = home.load_config()
    acct = home.import_account(private_key_file.read().strip(), _new_password())
    _make_default(home, config, acct.address)
    out_console.print(acct.address)


@account.command("list")
@pass_ctx
def account_list(obj: Ctx) -> None:
    """List the accounts in this mine."""
    for address in obj.home().list_accounts():
        out_console.print(address)


# ---------------------------------------------------------------------- vault


@cli.group()
def vault() -> None:
    """Register datasets. The vault records path, hash and schema; data never leaves the file."""


@vault.command("add")
@click.argument("name")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--target", required=True, help="Name of the label/target column.")
@pass_ctx
def vault_add(obj: Ctx, name: str, file: Path, target: str) -> None:
    """Register FILE (CSV with a header row, or NPZ) as dataset NAME."""
    from mine.vault import Vault

    home = obj.home()
    home.load_config()
    ds = Vault(home).add(name, file, target=target)
    out_console.print(f"added {ds.name}: {ds.rows} rows, {len(ds.features)} features, target {ds.target}, sha256 {ds.sha256[:16]}…")


@vault.command("list")
@pass_ctx
def vault_list(obj: Ctx) -> None:
    """List registered datasets."""
    from mine.vault import Vault

    table = Table("name", "rows", "features", "target", "path")
    for ds in Vault(obj.home()).list():
        table.add_row(ds.name, str(ds.rows), str(len(ds.features)), ds.target, ds.path)
    out_console.print(table)


@vault.command("show")
@click.argument("name")
@pass_ctx
def vault_show(obj: Ctx, name: str) -> None:
    """Show one dataset's record (never its rows)."""
    from mine.vault import Vault

    ds = Vault(obj.home()).get(name)
    out_console.print_json(data={**ds.__dict__})


@vault.command("remove")
@click.argument("name")
@pass_ctx
def vault_remove(obj: Ctx, name: str) -> None:
    """Forget a dataset (the file itself is left alone)."""
    from mine.vault import Vault

    ds = Vault(obj.home()).remove(name)
    out_console.print(f"removed {ds.name} (file {ds.path} left in place)")


@vault.command("budget")
@click.argument("name")
@click.option("--set", "set_to", type=float, help="Set the dataset's lifetime privacy budget (ε).")
@pass_ctx
def vault_budget(obj: Ctx, name: str, set_to: float | None) -> None:
    """Show (or --set) dataset NAME's privacy budget and the ε its updates have spent."""
    from mine.ledger import PrivacyLedger
    from mine.vault import Vault

    home = obj.home()
    home.load_config()
    ds = Vault(home).get(name)
    ledger = PrivacyLedger(home)
    status = ledger.set_budget(name, set_to, rows=ds.rows) if set_to is not None else ledger.status(name, rows=ds.rows)
    out_console.print(f"{name}: budget ε = {status.budget:g} at δ = {status.delta:g}; spent ε = {status.spent:.3f} "
                      f"over {status.updates} DP update(s); remaining {status.remaining:.3f}")
    if not status.private:
        out_console.print(f"[yellow]{status.non_private} update(s) were trained on {name} WITHOUT DP (--no-dp): "
                          "for those the data has no privacy guarantee[/]")


# ---------------------------------------------------------------------- miner


@cli.command()
@click.option("--all", "show_all", is_flag=True, help="Include closed and completed bounties.")
@pass_ctx
def bounties(obj: Ctx, show_all: bool) -> None:
    """Bounties with reward left, stake, eval window, auditability, the owner's record, and which datasets fit."""
    from mine.amounts import format_amount, token_meta
    from mine.chain import BountyStatus
    from mine.errors import ChainError, StoreError
    from mine.evaluate import score_from_chain
    from mine.home import read_json
    from mine.store import cid_from_chain
    from mine.vault import Vault, fits
    from mine.versions import fetch_manifest, fetch_record

    client = obj.client(with_account=False)
    store = obj.store()
    home = obj.home()
    datasets = Vault(home).list() if home.exists() else []
    now = client.now()
    all_bounties = [client.bounty(bid) for bid in range(1, client.bounty_count() + 1)]
    # the owner's history: bounties closed, audit bundles revealed (chain), mismatches found (my audits)
    history: dict[str, dict[str, int]] = {}
    for b in all_bounties:
        h = history.setdefault(b.owner, {"closed": 0, "revealed": 0, "audited": 0, "mismatches": 0})
        h["closed"] += b.status == BountyStatus.CLOSED
        h["revealed"] += bool(b.audit_revealed)
    audits = home.root / "audits"
    for path in sorted(audits.glob(f"{client.address}-*.json")) if audits.exists() else []:
        result = read_json(path, {})
        h = history.setdefault(result.get("owner", ""), {"closed": 0, "revealed": 0, "audited": 0, "mismatches": 0})
        h["audited"] += 1
        h["mismatches"] += len(result.get("mismatches", []))
    table = Table("id", "status", "escrow left", "stake", "window", "audit", "deadline", "best → target", "model",
                  "owner", "fits")
    owners_shown: list[str] = []
    for b in all_bounties:
        if b.status != BountyStatus.OPEN and not show_all:
            continue
        mv = client.model_version(b.id, b.latest_version)
        try:
            manifest = fetch_manifest(store, fetch_record(store, cid_from_chain(mv.digest, mv.codec)))
            model = f"{manifest.name} v{b.latest_version}"
            fit = ", ".join(d.name for d in datasets if fits(d, list(manifest.features)) is None) or "-"
        except (StoreError, ValidationError) as exc:
            model, fit = f"unavailable ({type(exc).__name__})", "?"
        try:
            decimals, symbol = token_meta(client.w3, b.token)
        except ChainError:
            decimals, symbol = 18, b.token[:10] + "?"
        left = max(0, b.deadline - now)
        if b.owner not in owners_shown:
            owners_shown.append(b.owner)
        table.add_row(str(b.id), b.status.name.lower(), format_amount(b.escrow, decimals, symbol),
                      format_amount(b.stake, decimals, symbol), f"{b.eval_window // 60} min",
                      ("revealed" if b.audit_revealed else "yes") if b.auditable else "no", f"{left // 60} min",
                      f"{score_from_chain(b.best_score):.4f} → {score_from_chain(b.target_score):.4f}", model,
                      f"{b.owner[:8]}…", fit)
    out_console.print(table)
    owners = Table("owner", "bounties closed", "audits revealed", "audited mismatches (my audits)", title="Owners")
    for owner in owners_shown:
        h = history[owner]
        audited = f"{h['mismatches']} in {h['audited']} audits" if h["audited"] else "not audited"
        owners.add_row(owner, str(h["closed"]), str(h["revealed"]), audited)
    if owners_shown:
        out_console.print(owners)


@cli.command("train")
@click.argument("bounty_id", type=int)
@click.option("--dataset", required=True, help="Vault dataset to train on.")
@click.option("--epochs", type=int, help="Local epochs (default: the manifest's / the DP default).")
@click.option("--lr", type=float, help="Learning rate (default: the manifest's / the DP default).")
@click.option("--batch-size", type=int, help="Batch size (--no-dp only; DP samples each example with --sample-rate).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of sampling and dropout (DP noise always comes from the OS's random source).")
@click.option("--no-dp", is_flag=True, help="Train without differential privacy (recorded in the update as dp=off).")
@click.option("--epsilon", type=float, help="DP: target ε of this update (the noise is solved for it).")
@click.option("--noise-multiplier", type=float, help="DP: fixed noise multiplier instead of a target ε.")
@click.option("--max-grad-norm", type=float, help="DP: per-example gradient clip norm.")
@click.option("--sample-rate", type=float, help="DP: Poisson sampling rate per step (1 = full batch).")
@click.option("--steps", type=int, help="DP: number of DP-SGD steps.")
@click.option("--delta", type=float, help="DP: δ (default min(1e-5, 1/rows)).")
@pass_ctx
def train_cmd(obj: Ctx, bounty_id: int, dataset: str, epochs: int | None, lr: float | None,
              batch_size: int | None, seed: int, no_dp: bool, epsilon: float | None, noise_multiplier: float | None,
              max_grad_norm: float | None, sample_rate: float | None, steps: int | None, delta: float | None) -> None:
    """Train BOUNTY_ID's current model on a vault dataset with DP-SGD; writes the update to the outbox.

    The update's (ε, δ) is charged to the dataset's privacy budget (`mine vault budget NAME`).
    """
    from mine.dp import default_settings
    from mine.miner import train_update
    from mine.vault import Vault
    from mine.versions import load_version

    home = obj.home()
    config = home.load_config()
    X, y, columns = Vault(home).load(dataset)
    client = obj.client()  # the update names its miner (checked by the owner: a copied CID is worthless)
    store = obj.store()
    overrides = {k: v for k, v in {"target_epsilon": epsilon, "noise_multiplier": noise_multiplier,
                                   "max_grad_norm": max_grad_norm, "sample_rate": sample_rate, "steps": steps,
                                   "delta": delta}.items() if v is not None}
    if no_dp and overrides:
        raise click.UsageError(f"--no-dp trains without DP; drop {', '.join(sorted(overrides))}")
    if not no_dp and batch_size is not None:
        raise click.UsageError("with DP each example joins a step with probability --sample-rate; "
                               "--batch-size applies to --no-dp only")
    settings = None
    base = load_version(client, store, bounty_id)
    if overrides:
        settings = default_settings(base.manifest).replace(**overrides)
    with progress("training", None) as advance:
        upd = train_update(home, client, store, bounty_id, X, y, columns, epochs=epochs, lr=lr,
                           batch_size=batch_size, seed=seed, on_batch=lambda done, total: advance(done, total),
                           base=base, dp_settings=settings, no_dp=no_dp, dataset=dataset,
                           miner=_miner_address(obj, home, config))
    out_console.print(f"update for bounty {bounty_id} (from version {upd.base_version}): {upd.path}")
    if upd.dp is None:
        out_console.print("[yellow]trained WITHOUT differential privacy (--no-dp): the update can reveal your rows "
                          "to whoever reads it[/]")
    else:
        out_console.print(f"differential privacy: ε = {upd.dp.epsilon:.2f}, δ = {upd.dp.delta:g} (noise "
                          f"{upd.dp.noise_multiplier:.3g}, clip {upd.dp.max_grad_norm:g}, {upd.dp.steps} steps at "
                          f"sample rate {upd.dp.sample_rate:g})")
    from mine.ledger import PrivacyLedger

    status = PrivacyLedger(home).status(dataset, rows=len(X))
    out_console.print(f"trained on {upd.examples} examples in {upd.seconds:.2f} s; local loss {upd.loss:.4f}, "
                      f"metric {upd.metric:.4f} (local only, not in the update); dataset {dataset!r} has spent "
                      f"ε = {status.spent:.2f} of {status.budget:g}")


def _miner_address(obj: Ctx, home: Any, config: Any) -> str:
    """The address that will submit (named inside the update), without unlocking its keystore."""
    if obj.dev_account is not None:
        from mine.devnet import dev_account

        return dev_account(obj.dev_account).address
    address = config.account or next(iter(home.list_accounts()), None)
    if address is None:
        raise ConfigError("an update names the account that submits it: run `mine account new` first "
                          "(or pass --dev-account N on a local chain)")
    return address


@cli.command()
@click.argument("bounty_id", type=int)
@click.argument("update", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@pass_ctx
def submit(obj: Ctx, bounty_id: int, update: Path | None) -> None:
    """Seal an update to the bounty owner, store it, submit it with the stake (one tx; crash-safe, rerun to finish)."""
    from mine.miner import resume_all, submit as do_submit

    home = obj.home()
    home.load_config()
    client = obj.client()
    store = obj.store()
    finished, problems = resume_all(home, client, store)
    for entry in finished:
        out_console.print(f"finished interrupted submission: bounty {entry.bounty} #{entry.index} ({entry.cid})")
    for problem in problems:
        err_console.print(f"warning: could not finish {problem}", style="yellow", markup=False)
    if update is None:
        candidates = sorted(home.outbox.glob(f"bounty{bounty_id}-*.safetensors"), key=lambda p: p.stat().st_mtime)
        if not candidates:
            raise MineError(f"no update for bounty {bounty_id} in {home.outbox}; run `mine train {bounty_id} --dataset NAME`")
        update = candidates[-1]
    entry = do_submit(home, client, store, bounty_id, update)
    out_console.print(f"submitted {entry.cid} to bounty {bounty_id} as #{entry.index} ({entry.state})")


@cli.command()
@pass_ctx
def status(obj: Ctx) -> None:
    """My submissions and their states (finishes interrupted submissions first)."""
    from mine.amounts import format_amount
    from mine.chain import SubmissionStatus
    from mine.miner import Journal, resume_all
    from mine.policy import REASONS

    home = obj.home()
    home.load_config()
    client = obj.client()
    _, problems = resume_all(home, client, obj.store())
    for problem in problems:
        err_console.print(f"warning: could not finish {problem}", style="yellow", markup=False)
    me = client.account.address
    rejected, accepted = {}, {}
    for log in client.events("UpdateRejected", miner=me):
        code = int(log["args"]["reason"])
        rejected[(log["args"]["bountyId"], log["args"]["index"])] = (
            f"{REASONS.get(code, str(code))}; stake {'returned' if log['args']['refunded'] else 'forfeited'}")
    for log in client.events("UpdateAccepted", miner=me):
        accepted[(log["args"]["bountyId"], log["args"]["index"])] = (
            f"share {log['args']['shareBps'] / 100:.2f}% of the round, reward {format_amount(log['args']['reward'], 18)}")
    table = Table("bounty", "#", "cid", "state", "detail")
    for entry in Journal(home).entries():
        if entry.miner != me:
            continue
        detail, state = "", entry.state
        if entry.index is not None:
            sub = client.submission(entry.bounty, entry.index)
            state = sub.status.name.lower()
            key = (entry.bounty, entry.index)
            if sub.status == SubmissionStatus.REJECTED:
                detail = rejected.get(key, "")
            elif sub.status == SubmissionStatus.ACCEPTED:
                detail = accepted.get(key, "")
        table.add_row(str(entry.bounty), str(entry.index), entry.cid, state, detail)
    out_console.print(table)
    out_console.print(f"withdrawable: {fmt_eth(client.credits(me))}")


@cli.command()
@click.option("--token", default=None, help="ERC-20 address (default: ETH).")
@pass_ctx
def withdraw(obj: Ctx, token: str | None) -> None:
    """Withdraw everything credited to this account (rewards, stakes, refunds)."""
    from mine.chain import ZERO_ADDRESS

    client = obj.client()
    token = token or ZERO_ADDRESS
    amount = client.credits(client.account.address, token)
    if amount == 0:
        out_console.print("nothing to withdraw")
        return
    from mine.amounts import format_amount, token_meta

    client.withdraw(token)
    decimals, symbol = token_meta(client.w3, token)
    out_console.print(f"withdrew {format_amount(amount, decimals, symbol)}")


# ---------------------------------------------------------------------- model owner


@cli.group()
def bounty() -> None:
    """Post and close bounties (model owner)."""


@bounty.command("create")
@click.option("--model", "model_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Model manifest JSON.")
@click.option("--weights", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Initial weights (safetensors); default: a seeded random init.")
@click.option("--validation", required=True, help="Vault dataset holding the private validation set.")
@click.option("--reward", required=True, help="Escrowed reward, e.g. 1ether.")
@click.option("--token", default=None, help="ERC-20 address to pay in (default ETH).")
@click.option("--target", type=float, required=True, help="Target validation score (reaching it pays the rest).")
@click.option("--deadline", default="2h", show_default=True, help="Time to accept submissions, e.g. 2h.")
@click.option("--eval-window", default="30m", show_default=True, help="Time you have to settle each submission (>= 10m).")
@click.option("--stake", default="0.01ether", show_default=True, help="Stake per submission (> 0, <= reward).")
@click.option("--auditable", is_flag=True, help="Promise to reveal the audit bundle (validation set + key) before close.")
@click.option("--max-epsilon", type=float, default=None, help="Reject updates trained with a DP epsilon above this.")
@click.option("--setting", "settings_kv", multiple=True, metavar="KEY=VALUE",
              help="Round policy setting, e.g. server_lr=1.0 (repeatable).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the initial weights.")
@pass_ctx
def bounty_create(obj: Ctx, model_path: Path, weights: Path | None, validation: str, reward: str, token: str | None,
                  target: float, deadline: str, eval_window: str, stake: str, auditable: bool,
                  max_epsilon: float | None, settings_kv: tuple[str, ...], seed: int) -> None:
    """Post a bounty: publish the model and your sealing key, escrow the reward; validation data stays in your vault."""
    import json as _json

    from mine.chain import ZERO_ADDRESS
    from mine.model import Manifest, build_model, load_weights
    from mine.owner import Validation, create_bounty
    from mine.vault import Vault

    settings: dict[str, Any] = {}
    for kv in settings_kv:
        key, sep, value = kv.partition("=")
        if not sep:
            raise click.BadParameter(f"{kv!r} is not KEY=VALUE")
        settings[key] = _json.loads(value)
    home = obj.home()
    home.load_config()
    manifest = Manifest.from_json(model_path.read_bytes())
    if weights:
        state = load_weights(manifest, weights.read_bytes(), max_bytes=manifest.max_weight_bytes)
    else:
        state = build_model(manifest, seed=seed).state_dict()
    vault_ = Vault(home)
    ds = vault_.get(validation)
    X, y, columns = vault_.load(validation)
    val = Validation.from_file(Path(ds.path), X, y, columns, manifest)
    client = obj.client()
    try:
        owned, cid, initial = create_bounty(
            client, obj.store(), home, manifest, state, val, validation_name=validation, reward=parse_amount(reward),
            target=target, deadline=client.now() + parse_duration(deadline), eval_window=parse_duration(eval_window),
            stake=parse_amount(stake), token=token or ZERO_ADDRESS, policy_settings=settings, auditable=auditable,
            max_epsilon=max_epsilon,
        )
    except TypeError as exc:
        raise ValidationError(f"bad --setting ({exc})") from None
    out_console.print(f"bounty {owned.bounty_id} posted: model {cid}, initial score {initial:.6f}, target {target}"
                      + (" (auditable: reveal with `mine bounty reveal` before closing)" if auditable else ""))


def _owner_validation(obj: Ctx, bounty_id: int) -> tuple[Any, Any, Any, Any, Any]:
    from mine.owner import OwnedBounty, Validation
    from mine.vault import Vault
    from mine.versions import load_version

    home = obj.home()
    owned = OwnedBounty.load(home, bounty_id)
    client = obj.client()
    store = obj.store()
    current = load_version(client, store, bounty_id)
    vault_ = Vault(home)
    X, y, columns = vault_.load(owned.validation)
    val = Validation.from_file(Path(vault_.get(owned.validation).path), X, y, columns, current.manifest)
    return owned, client, store, current, val


@bounty.command("reveal")
@click.argument("bounty_id", type=int)
@pass_ctx
def bounty_reveal(obj: Ctx, bounty_id: int) -> None:
    """Publish the audit bundle (validation file + decryption key) and record its CID on chain."""
    from mine.owner import reveal_audit

    owned, client, store, _, val = _owner_validation(obj, bounty_id)
    cid = reveal_audit(client, store, obj.home(), owned, val)
    out_console.print(f"bounty {bounty_id}: audit bundle {cid} revealed; anyone can now run `mine audit {bounty_id}`")


@bounty.command("close")
@click.argument("bounty_id", type=int)
@pass_ctx
def bounty_close(obj: Ctx, bounty_id: int) -> None:
    """After the deadline, end the bounty and take back the escrow left (forfeited stakes are burned)."""
    from mine.amounts import format_amount, token_meta

    client = obj.client()
    receipt = client.close(bounty_id)
    (event,) = client.receipt_events(receipt, "BountyClosed")
    decimals, symbol = token_meta(client.w3, client.bounty(bounty_id).token)
    args = event["args"]
    out_console.print(f"bounty {bounty_id} closed: paid {format_amount(args['paid'], decimals, symbol)}, refunded "
                      f"{format_amount(args['refunded'], decimals, symbol)}, burned "
                      f"{format_amount(args['burned'], decimals, symbol)} (withdraw the refund with `mine withdraw`)")


@cli.command("evaluate")
@click.argument("bounty_id", type=int)
@click.option("--watch", is_flag=True, help="Keep settling rounds as updates arrive (Ctrl-C to stop).")
@click.option("--min-round", type=click.IntRange(1, 32), default=4, show_default=True,
              help="With --watch: settle when this many submissions are queued ...")
@click.option("--max-wait", type=click.FloatRange(0.0, 1.0), default=0.5, show_default=True,
              help="... or when the oldest has waited this fraction of its window.")
@click.option("--interval", type=float, default=2.0, show_default=True, help="Seconds between polls with --watch.")
@pass_ctx
def evaluate_cmd(obj: Ctx, bounty_id: int, watch: bool, min_round: int, max_wait: float, interval: float) -> None:
    """Settle the queued submissions in rounds: judge each round's updates together, one transaction per round."""
    from mine.owner import pending_items, settle_round

    owned, client, store, current, val = _owner_validation(obj, bounty_id)
    home = obj.home()
    accepted = total = 0
    started = time.perf_counter()
    while True:
        queued, oldest = pending_items(client, bounty_id)
        ready = queued > 0 and (not watch or queued >= min_round or (
            oldest is not None and client.now() - oldest >= max_wait * client.bounty(bounty_id).eval_window))
        result = None
        if ready:
            result, current = settle_round(client, store, home, owned, val, current=current)
        if result is not None and result.count:
            for v in result.verdicts:
                verdict = (f"accepted, share {v['share_bps'] / 100:.2f}%" if v["share_bps"] else
                           f"rejected [{v['reason_code']}] {v['reason']} (stake {'returned' if v['refund'] else 'forfeited'})")
                out_console.print(f"#{v['index']} {v['miner'][:10]}…: {verdict}")
            out_console.print(f"round #{result.first}..#{result.first + result.count - 1}: score "
                              f"{result.score_before:.4f} → {result.score_after:.4f}"
                              + (f", version {result.version}" if result.version else ", no new version"))
            accepted += sum(1 for v in result.verdicts if v["share_bps"])
            total += result.count
        if result is not None and result.waiting:
            err_console.print(f"warning: {result.waiting} submission(s) could not be fetched from the store; they wait "
                              "for the next try (never rejected for an outage)", style="yellow", markup=False)
        if result is not None and result.count:
            continue  # more may be queued behind a full round
        if not watch:
            break
        time.sleep(interval)
    out_console.print(f"accepted {accepted} of {total} updates in {time.perf_counter() - started:.1f} s")


@cli.command()
@click.argument("bounty_id", type=int)
@click.option("--validation", "validation_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Use this validation file instead of the one in the revealed audit bundle.")
@pass_ctx
def audit(obj: Ctx, bounty_id: int, validation_file: Path | None) -> None:
    """Replay every round (verdicts, shares, score, weights) from chain + store + audit bundle; exit 7 on a mismatch."""
    import tempfile

    from mine.datasets import read_table
    from mine.owner import Validation, audit as do_audit, fetch_audit_bundle, save_audit_result
    from mine.versions import load_version

    client = obj.client(with_account=False)
    store = obj.store()
    manifest = load_version(client, store, bounty_id, 0).manifest
    data, secret_key = fetch_audit_bundle(client, store, bounty_id)
    if validation_file is not None:
        data = validation_file.read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "validation.csv"
        path.write_bytes(data)
        X, y, columns = read_table(path, target=manifest.target)
        val = Validation.from_file(path, X, y, columns, manifest)
    checked, findings = do_audit(client, store, bounty_id, val, secret_key)
    if obj.home().exists():
        save_audit_result(obj.home(), client, bounty_id, checked, findings)
    for finding in findings:
        out_console.print(f"MISMATCH {finding}")
    out_console.print(f"audited {checked} items (model versions and verdicts): {len(findings)} mismatch(es)")
    if findings:
        raise ValidationError(f"{len(findings)} reported result(s) of bounty {bounty_id} do not reproduce")


@cli.group()
def model() -> None:
    """Model manifests (declarative architecture, loss, metric, training defaults)."""


@model.command("template")
@click.argument("dataset", type=click.Choice(["digits", "breast_cancer", "diabetes"]))
@click.option("--normalize-from", "vault_name", default=None,
              help="Vault dataset whose column mean/std become the manifest's input normalization.")
@pass_ctx
def model_template(obj: Ctx, dataset: str, vault_name: str | None) -> None:
    """Print the standard manifest for a bundled dataset's schema (redirect it to a file)."""
    from mine.datasets import select_features
    from mine.model import default_manifest, with_normalization
    from mine.vault import Vault

    manifest = default_manifest(dataset)
    if vault_name:
        X, _y, columns = Vault(obj.home()).load(vault_name)
        manifest = with_normalization(manifest, select_features(X, columns, list(manifest.features)))
    click.echo(manifest.to_json().decode())


# ---------------------------------------------------------------------- content store


@cli.group()
def ipfs() -> None:
    """Content-addressed store: add, cat, export (Kubo-compatible CIDs)."""


@ipfs.command("add")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-n", "--only-hash", is_flag=True, help="Only compute the CID; store nothing.")
@click.option("--cid-version", type=click.IntRange(0, 1), default=0, show_default=True, help="0: Qm…; 1: raw leaves, base32.")
@pass_ctx
def ipfs_add(obj: Ctx, file: Path, only_hash: bool, cid_version: int) -> None:
    """Print FILE's CID exactly as `ipfs add` would (and store it unless -n)."""
    store = obj.store()
    cid = store.add(file.read_bytes(), cid_version=cid_version, only_hash=only_hash)
    click.echo(f"added {cid} {file.name}")


@ipfs.command("cat")
@click.argument("cid")
@pass_ctx
def ipfs_cat(obj: Ctx, cid: str) -> None:
    """Write the content of CID to stdout (verified against the CID)."""
    sys.stdout.buffer.write(obj.store().cat(cid))
    sys.stdout.buffer.flush()


@ipfs.command("export")
@click.argument("cid")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@pass_ctx
def ipfs_export(obj: Ctx, cid: str, out: Path) -> None:
    """Write CID's DAG as a CARv1 file (importable with `ipfs dag import`)."""
    obj.store().export_car(cid, out)
    click.echo(f"exported {cid} to {out} ({out.stat().st_size} bytes)")


# ---------------------------------------------------------------------- demo


@cli.command()
@click.option("--dataset", type=click.Choice(["digits", "breast_cancer", "diabetes"]), default="digits", show_default=True)
@click.option("--miners", type=click.IntRange(1, 25), default=8, show_default=True)
@click.option("--malicious", type=click.IntRange(0, 25), default=2, show_default=True)
@click.option("--attack", type=click.Choice(["label_flip", "noise", "scale", "backdoor"]), default="label_flip", show_default=True)
@click.option("--rounds", type=click.IntRange(1, 100), default=5, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("demo-out"), show_default=True)
@click.option("--rpc", "demo_rpc", default=None, help="Use this chain instead of starting anvil.")
@click.option("--ipfs-api", "demo_ipfs", default=None, help="Use this IPFS node instead of the embedded store.")
@click.option("--dp/--no-dp", "use_dp", default=True, show_default=True,
              help="Miners train with DP-SGD (the manifest's training.dp, else mine.dp's default) or plainly.")
@pass_ctx
def demo(obj: Ctx, dataset: str, miners: int, malicious: int, attack: str, rounds: int, seed: int, out_dir: Path,
         demo_rpc: str | None, demo_ipfs: str | None, use_dp: bool) -> None:
    """Run the whole marketplace locally: 1 owner, N miners (K malicious), R rounds; writes a report."""
    from mine.demo import DemoSettings, run_demo

    if malicious > miners:
        raise click.BadParameter("--malicious cannot exceed --miners")
    settings = DemoSettings(dataset=dataset, miners=miners, malicious=malicious, attack=attack, rounds=rounds,
                            seed=seed, out=out_dir, rpc=demo_rpc or obj.rpc, ipfs_api=demo_ipfs or obj.store_spec,
                            sonar=obj.sonar, dp=use_dp)
    run_demo(settings, console=out_console, progress_console=err_console)


def main() -> None:
    cli(prog_name="mine")


if __name__ == "__main__":
    main()
