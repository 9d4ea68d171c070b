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
        """The configured store (`mine.store.open_store`), with the configured gateway for misses."""
        from mine.store import open_store

        home = self.home()
        config = home.load_config() if home.exists() else None
        spec = self.store_spec or (config.store if config else None)
        gateway = os.environ.get("MINE_IPFS_GATEWAY") or (config.extra.get("gateway") if config else None)
        return open_store(spec, home.root, gateway=gateway)

    def client(self, *, with_account: bool = True) -> Any:
        from mine.chain import SonarClient
        from mine.home import Config, resolve_account
        from mine.tx import TxSettings

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
        # fees, confirmations and the per-account nonce lock (shared with other processes of this mine)
        tx = TxSettings.from_config(config.extra, lock_dir=home.root / "locks" if home.exists() else None)
        start = config.extra.get("sonar_block") if not self.sonar or self.sonar == config.sonar else None
        return SonarClient.open(rpc, self.sonar or config.sonar, account, expected_chain_id=expected, tx=tx,
                                start_block=start if isinstance(start, int) else None)


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
@click.option("--store", "store_opt", default="embedded", show_default=True,
              help="Store: embedded (this mine's own), shared (one for all your mines), embedded:DIR, "
                   "or an IPFS node's API (/ip4/127.0.0.1/tcp/5001, https://HOST:PORT; token in MINE_IPFS_AUTH).")
@click.option("--gateway", default=None, help="IPFS HTTP gateway to fetch missing content from (verified CARs).")
@click.option("--confirmations", type=int, default=None,
              help="Blocks to wait on top of each transaction (default: 0 on an automining dev chain, else 2).")
@click.option("--max-fee-gwei", type=float, default=None, help="Never pay more than this maxFeePerGas.")
@click.option("--offline", is_flag=True, help="Do not contact the chain (record settings only).")
@pass_ctx
def init(obj: Ctx, rpc_opt: str | None, sonar_opt: str | None, store_opt: str, gateway: str | None,
         confirmations: int | None, max_fee_gwei: float | None, offline: bool) -> None:
    """Create the mine home (mode 0700) with its config file."""
    from mine.chain import connect, recorded_deployment
    from mine.home import DEFAULT_RPC, Config

    home = obj.home()
    rpc = rpc_opt or obj.rpc or DEFAULT_RPC
    extra = {k: v for k, v in (("gateway", gateway), ("confirmations", confirmations),
                               ("max_fee_gwei", max_fee_gwei)) if v is not None}
    config = Config(rpc=rpc, sonar=sonar_opt or obj.sonar, store=store_opt, extra=extra)
    if not offline:
        w3 = connect(rpc)
        config.chain_id = int(w3.eth.chain_id)
        config.sonar = config.sonar or recorded_deployment(config.chain_id)
        if config.sonar:  # event scans (status, audit) start at the contract's first block
            from mine.logs import deployment_block

            config.extra["sonar_block"] = deployment_block(w3, config.sonar)
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


# ---------------------------------------------------------------------- miner


@cli.command()
@click.option("--all", "show_all", is_flag=True, help="Include closed and completed bounties.")
@pass_ctx
def bounties(obj: Ctx, show_all: bool) -> None:
    """Open bounties, with reward left, deadline, model, and which of my datasets fit."""
    from mine.chain import BountyStatus
    from mine.errors import StoreError
    from mine.scores import score_from_chain
    from mine.vault import Vault, fits
    from mine.versions import fetch_manifest, fetch_record
    from mine.store import cid_from_chain

    client = obj.client(with_account=False)
    store = obj.store()
    datasets = Vault(obj.home()).list() if obj.home().exists() else []
    now = client.now()
    table = Table("id", "status", "escrow left", "deadline in", "best → target", "model", "fits")
    for bid in range(1, client.bounty_count() + 1):
        b = client.bounty(bid)
        if b.status != BountyStatus.OPEN and not show_all:
            continue
        mv = client.model_version(bid, b.latest_version)
        try:
            manifest = fetch_manifest(store, fetch_record(store, cid_from_chain(mv.digest, mv.codec)))
            model = f"{manifest.name} ({manifest.task}, {len(manifest.features)} features, v{b.latest_version})"
            fit = ", ".join(d.name for d in datasets if fits(d, list(manifest.features)) is None) or "-"
        except (StoreError, ValidationError) as exc:
            model, fit = f"unavailable ({type(exc).__name__})", "?"
        token = "ETH" if int(b.token, 16) == 0 else b.token[:10]
        left = max(0, b.deadline - now)
        table.add_row(str(bid), b.status.name.lower(), f"{b.escrow / 10**18:.6g} {token}", f"{left // 60} min",
                      f"{score_from_chain(b.best_score):.4f} → {score_from_chain(b.target_score):.4f}", model, fit)
    out_console.print(table)


@cli.command("train")
@click.argument("bounty_id", type=int)
@click.option("--dataset", required=True, help="Vault dataset to train on.")
@click.option("--epochs", type=int, help="Local epochs (default: the manifest's).")
@click.option("--lr", type=float, help="Learning rate (default: the manifest's).")
@click.option("--batch-size", type=int, help="Batch size (default: the manifest's).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed: same seed, same update bytes.")
@pass_ctx
def train_cmd(obj: Ctx, bounty_id: int, dataset: str, epochs: int | None, lr: float | None,
              batch_size: int | None, seed: int) -> None:
    """Train BOUNTY_ID's current model on a vault dataset; writes the update to the outbox."""
    from mine.miner import train_update
    from mine.vault import Vault

    home = obj.home()
    home.load_config()
    X, y, columns = Vault(home).load(dataset)
    client = obj.client(with_account=False)
    store = obj.store()
    with progress("training", None) as advance:
        upd = train_update(home, client, store, bounty_id, X, y, columns, epochs=epochs, lr=lr,
                           batch_size=batch_size, seed=seed, on_batch=lambda done, total: advance(done, total))
    out_console.print(f"update for bounty {bounty_id} (from version {upd.base_version}): {upd.path}")
    out_console.print(f"trained on {upd.examples} examples in {upd.seconds:.2f} s; local loss {upd.loss:.4f}, metric {upd.metric:.4f}")


@cli.command()
@click.argument("bounty_id", type=int)
@click.argument("update", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@pass_ctx
def submit(obj: Ctx, bounty_id: int, update: Path | None) -> None:
    """Put an update in the store, commit it, then reveal it (crash-safe; rerun to finish)."""
    from mine.miner import resume_all, submit as do_submit

    home = obj.home()
    home.load_config()
    client = obj.client()
    finished, problems = resume_all(home, client)
    for entry in finished:
        out_console.print(f"finished interrupted submission: bounty {entry.bounty} #{entry.index} ({entry.cid})")
    for problem in problems:
        err_console.print(f"warning: could not finish {problem}", style="yellow", markup=False)
    if update is None:
        candidates = sorted(home.outbox.glob(f"bounty{bounty_id}-*.safetensors"), key=lambda p: p.stat().st_mtime)
        if not candidates:
            raise MineError(f"no update for bounty {bounty_id} in {home.outbox}; run `mine train {bounty_id} --dataset NAME`")
        update = candidates[-1]
    entry = do_submit(home, client, obj.store(), bounty_id, update)
    out_console.print(f"submitted {entry.cid} to bounty {bounty_id} as #{entry.index} ({entry.state})")


@cli.command()
@pass_ctx
def status(obj: Ctx) -> None:
    """My submissions and their states (finishes interrupted submissions first)."""
    from mine.chain import SubmissionStatus
    from mine.miner import Journal, resume_all
    from mine.reasons import REASONS

    home = obj.home()
    home.load_config()
    client = obj.client()
    _, problems = resume_all(home, client)
    for problem in problems:
        err_console.print(f"warning: could not finish {problem}", style="yellow", markup=False)
    me = client.account.address
    rejected = {}
    for log in client.events("UpdateRejected", miner=me):
        rejected[(log["args"]["bountyId"], log["args"]["index"])] = REASONS.get(log["args"]["reason"], str(log["args"]["reason"]))
    table = Table("bounty", "#", "cid", "state", "detail")
    for entry in Journal(home).entries():
        if entry.miner != me:
            continue
        detail, state = "", entry.state
        if entry.index is not None:
            sub = client.submission(entry.bounty, entry.index)
            state = sub.status.name.lower()
            if sub.status == SubmissionStatus.REJECTED:
                detail = rejected.get((entry.bounty, entry.index), "")
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
    client.withdraw(token)
    out_console.print(f"withdrew {fmt_eth(amount) if token == ZERO_ADDRESS else f'{amount} units of {token}'}")


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
@click.option("--deadline", default="2h", show_default=True, help="Time to accept commits, e.g. 2h.")
@click.option("--eval-window", default="30m", show_default=True, help="Time to reveal, and again to evaluate.")
@click.option("--stake", default="0", show_default=True, help="Stake per submission, e.g. 0.01ether.")
@click.option("--policy", default="default", show_default=True, help="Acceptance policy.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the initial weights.")
@pass_ctx
def bounty_create(obj: Ctx, model_path: Path, weights: Path | None, validation: str, reward: str, token: str | None,
                  target: float, deadline: str, eval_window: str, stake: str, policy: str, seed: int) -> None:
    """Post a bounty: publish the model, escrow the reward; validation data stays in your vault."""
    from mine.chain import ZERO_ADDRESS
    from mine.model import Manifest, build_model, load_weights
    from mine.owner import OwnedBounty, Validation, create_bounty
    from mine.policy import POLICIES
    from mine.vault import Vault

    if policy not in POLICIES:
        raise click.BadParameter(f"unknown policy {policy!r}; choose from {', '.join(POLICIES)}")
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
    bid, cid, initial = create_bounty(
        client, obj.store(), manifest, state, val, reward=parse_amount(reward), target=target,
        deadline=client.now() + parse_duration(deadline), eval_window=parse_duration(eval_window),
        stake=parse_amount(stake), token=token or ZERO_ADDRESS, policy=policy,
    )
    OwnedBounty(bid, validation, policy, {}).save(home)
    out_console.print(f"bounty {bid} posted: model {cid}, initial score {initial:.6f}, target {target}")


@bounty.command("close")
@click.argument("bounty_id", type=int)
@pass_ctx
def bounty_close(obj: Ctx, bounty_id: int) -> None:
    """After the deadline, end the bounty and take back what is left."""
    client = obj.client()
    receipt = client.close(bounty_id)
    (event,) = client.receipt_events(receipt, "BountyClosed")
    out_console.print(f"bounty {bounty_id} closed: paid {fmt_eth(event['args']['paid'])}, refunded {fmt_eth(event['args']['refunded'])} (withdraw it with `mine withdraw`)")


@cli.command("evaluate")
@click.argument("bounty_id", type=int)
@click.option("--policy", default=None, help="Override the acceptance policy (audits replay the one recorded at posting).")
@click.option("--watch", is_flag=True, help="Keep evaluating as updates arrive (Ctrl-C to stop).")
@click.option("--interval", type=float, default=2.0, show_default=True, help="Seconds between polls with --watch.")
@pass_ctx
def evaluate_cmd(obj: Ctx, bounty_id: int, policy: str | None, watch: bool, interval: float) -> None:
    """Evaluate revealed updates in commit order; accept or reject each on chain."""
    from mine.owner import OwnedBounty, Validation, evaluate_pending
    from mine.vault import Vault
    from mine.versions import load_version

    home = obj.home()
    owned = OwnedBounty.load(home, bounty_id)
    if policy:
        owned.policy = policy
    client = obj.client()
    store = obj.store()
    current = load_version(client, store, bounty_id)
    vault_ = Vault(home)
    X, y, columns = vault_.load(owned.validation)
    val = Validation.from_file(Path(vault_.get(owned.validation).path), X, y, columns, current.manifest)
    accepted = rejected = 0
    started = time.perf_counter()

    def show(rec: Any) -> None:
        verdict = "accepted" if rec.accepted else f"rejected ({rec.reason})"
        out_console.print(f"#{rec.index} {rec.miner[:10]}…: {verdict}; score {rec.score_before:.4f} → {rec.score_after:.4f}")

    while True:
        records, current = evaluate_pending(client, store, owned, val, on_record=show, current=current)
        owned.save(home)
        accepted += sum(r.accepted for r in records)
        rejected += sum(not r.accepted for r in records)
        if not watch:
            break
        time.sleep(interval)
    out_console.print(f"accepted {accepted} of {accepted + rejected} updates in {time.perf_counter() - started:.1f} s")


@cli.command()
@click.argument("bounty_id", type=int)
@click.option("--validation", "validation_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The validation file the owner committed to.")
@click.option("--target", "target_col", default=None, help="Target column (default: the manifest's).")
@pass_ctx
def audit(obj: Ctx, bounty_id: int, validation_file: Path, target_col: str | None) -> None:
    """Replay every model version and every evaluation from chain + store; exit 7 on a mismatch."""
    from mine.datasets import read_table
    from mine.owner import Validation, audit as do_audit
    from mine.versions import load_version

    client = obj.client(with_account=False)
    store = obj.store()
    manifest = load_version(client, store, bounty_id, 0).manifest
    X, y, columns = read_table(validation_file, target=target_col or manifest.target)
    val = Validation.from_file(validation_file, X, y, columns, manifest)
    checked, findings = do_audit(client, store, bounty_id, val)
    for finding in findings:
        out_console.print(f"MISMATCH {finding}")
    out_console.print(f"audited {checked} scores (model versions and evaluations): "
                      f"{len(findings)} reported score(s) do not reproduce")
    if findings:
        raise ValidationError(f"{len(findings)} reported score(s) of bounty {bounty_id} do not reproduce")


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
    cid = store.add_file(file, cid_version=cid_version, only_hash=only_hash)
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
@pass_ctx
def demo(obj: Ctx, dataset: str, miners: int, malicious: int, attack: str, rounds: int, seed: int, out_dir: Path,
         demo_rpc: str | None, demo_ipfs: str | None) -> None:
    """Run the whole marketplace locally: 1 owner, N miners (K malicious), R rounds; writes a report."""
    from mine.demo import DemoSettings, run_demo

    if malicious > miners:
        raise click.BadParameter("--malicious cannot exceed --miners")
    settings = DemoSettings(dataset=dataset, miners=miners, malicious=malicious, attack=attack, rounds=rounds,
                            seed=seed, out=out_dir, rpc=demo_rpc or obj.rpc, ipfs_api=demo_ipfs or obj.store_spec,
                            sonar=obj.sonar)
    run_demo(settings, console=out_console, progress_console=err_console)


def main() -> None:
    cli(prog_name="mine")


if __name__ == "__main__":
    main()
