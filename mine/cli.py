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
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
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
    _warned: bool = field(default=False, init=False, repr=False)  # the dev-account warning, once

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
        spec = self._store_spec(config)
        gateway = os.environ.get("MINE_IPFS_GATEWAY") or (config.extra.get("gateway") if config else None)
        timeout = config.extra.get("store_timeout") if config else None
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0):
            raise ConfigError(f"store_timeout in {home.config_path} must be a positive number of seconds, got {timeout!r}")
        return open_store(spec, home.root, gateway=gateway, timeout=float(timeout or 10))

    def _store_spec(self, config: Any) -> str | None:
        return self.store_spec or (config.store if config else None)

    def private_store(self) -> Path | None:
        """This mine's own embedded store, if that is the store in use: no other mine reads it."""
        from mine.store import is_own_store

        home = self.home()
        config = home.load_config() if home.exists() else None
        return home.root / "blocks" if is_own_store(self._store_spec(config)) else None

    def _chain(self) -> tuple[Any, Any, dict[str, Any]]:
        """The home, its config, and where the chain is: `rpc`, `address`, `expected_chain_id`, `start_block`."""
        from mine.home import Config

        home = self.home()
        config = home.load_config() if home.exists() else Config()
        start = config.extra.get("sonar_block") if not self.sonar or self.sonar == config.sonar else None
        where = {"rpc": self.rpc or config.rpc, "address": self.sonar or config.sonar,
                 "expected_chain_id": config.chain_id if not self.rpc else None,
                 "start_block": start if isinstance(start, int) else None}
        return home, config, where

    def _warn_dev_account(self) -> None:
        if self.dev_account is not None and not self._warned:
            self._warned = True
            err_console.print(f"[yellow]using dev account {self.dev_account} (public test key: local chains only)[/]")

    def client(self, *, with_account: bool = True) -> Any:
        """The full web3 client, able to sign (asks for the keystore password)."""
        from mine.chain import SonarClient
        from mine.home import resolve_account
        from mine.tx import TxSettings

        home, config, where = self._chain()
        account = None
        if with_account:
            self._warn_dev_account()
            password = None
            if self.dev_account is None:
                password = os.environ.get("MINE_PASSWORD")
                if password is None and sys.stdin.isatty():
                    password = getpass.getpass("keystore password: ")
            account = resolve_account(home, config, dev_index=self.dev_account, password=password)
        # fees, confirmations and the per-account nonce lock (shared with other processes of this mine)
        tx = TxSettings.from_config(config.extra, lock_dir=home.root / "locks" if home.exists() else None)
        return SonarClient.open(where["rpc"], where["address"], account, expected_chain_id=where["expected_chain_id"],
                                tx=tx, start_block=where["start_block"])

    def reader(self) -> Any:
        """A read-only view of the chain without web3 (`mine.views.ChainReader`): fast to start."""
        from mine.views import ChainReader

        _, _, where = self._chain()
        return ChainReader.open(where["rpc"], where["address"], expected_chain_id=where["expected_chain_id"],
                                start_block=where["start_block"])

    def address(self) -> str:
        """The account's address, without deriving or decrypting its key (no password asked)."""
        from mine.home import resolve_address

        home, config, _ = self._chain()
        self._warn_dev_account()
        return resolve_address(home, config, dev_index=self.dev_account)


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


def working(description: str) -> AbstractContextManager[Any]:
    """A spinner on stderr while something waits (transactions, their confirmations); silent when
    stderr is not a terminal."""
    return err_console.status(description) if err_console.is_terminal else nullcontext()


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


def _when(timestamp: int) -> str:
    """A chain timestamp as UTC date and time."""
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(timestamp))


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
@click.option("--store", "store_spec", help="Content store: embedded, shared, embedded:DIR, an IPFS API multiaddr "
              "like /ip4/127.0.0.1/tcp/5001, or https://HOST (remote Kubo RPC; token in MINE_IPFS_AUTH).")
@click.option("--ipfs-api", "ipfs_api", help="Shorthand for --store MULTIADDR.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.version_option(package_name="sonar-mine")
@click.pass_context
def cli(ctx: click.Context, home_dir: Path | None, rpc: str | None, sonar: str | None, dev_account: int | None,
        store_spec: str | None, ipfs_api: str | None, debug: bool) -> None:
    """mine — keep your data in a local mine, train bounty models on it, get paid for improvements.

    \b
    Data owner:   init, account, vault, bounties, train, privacy check, submit, status, withdraw, watch, ui
    Model owner:  model template|import, bounty create|reveal|close, evaluate [--watch --all], audit
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
@click.option("--store-timeout", type=click.FloatRange(min=0.1), default=None,
              help="Seconds an IPFS node may take to deliver content before a fetch counts as missed (default 10; "
                   "the owner tries 4 times before an update waits).")
@click.option("--offline", is_flag=True, help="Do not contact the chain (record settings only).")
@pass_ctx
def init(obj: Ctx, rpc_opt: str | None, sonar_opt: str | None, store_opt: str, gateway: str | None,
         confirmations: int | None, max_fee_gwei: float | None, store_timeout: float | None, offline: bool) -> None:
    """Create the mine home (mode 0700) with its config file."""
    from mine.chain import connect, recorded_deployment
    from mine.home import DEFAULT_RPC, Config

    home = obj.home()
    rpc = rpc_opt or obj.rpc or DEFAULT_RPC
    extra = {k: v for k, v in (("gateway", gateway), ("confirmations", confirmations),
                               ("max_fee_gwei", max_fee_gwei), ("store_timeout", store_timeout)) if v is not None}
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
@click.option("--group", default=None,
              help="A column that is a subgroup key (e.g. site, age band), not a feature: the owner's subgroup "
                   "rule protects each of its values; it never reaches the model.")
@pass_ctx
def vault_add(obj: Ctx, name: str, file: Path, target: str, group: str | None) -> None:
    """Register FILE (CSV with a header row, or NPZ) as dataset NAME."""
    from mine.vault import Vault

    home = obj.home()
    home.load_config()
    ds = Vault(home).add(name, file, target=target, group=group)
    grouped = f", groups by {ds.group}" if ds.group else ""
    out_console.print(f"added {ds.name}: {ds.rows} rows, {len(ds.features)} features, target {ds.target}{grouped}, "
                      f"sha256 {ds.sha256[:16]}…")


def _validation_with_groups(vault_: Any, name: str, manifest: Any) -> Any:
    """The owner's validation set ``name`` for ``manifest``, with its subgroup labels if it was added
    with ``--group`` (the group column is not among the model's inputs)."""
    from mine.owner import Validation

    return Validation.from_vault(vault_, name, manifest)


@vault.command("list")
@pass_ctx
def vault_list(obj: Ctx) -> None:
    """List registered datasets."""
    from mine.vault import Vault

    table = Table("name", "rows", "features", "target", "group", "path")
    for ds in Vault(obj.home()).list():
        table.add_row(ds.name, str(ds.rows), str(len(ds.features)), ds.target, ds.group or "-", ds.path)
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
    from mine.overview import MODEL_MISSING_HINT, list_bounties

    client = obj.reader()
    table = Table("id", "status", "escrow left", "stake", "window", "audit", "deadline", "best → target", "model",
                  "owner", "fits")
    owners_shown: list[str] = []
    history: dict[str, dict[str, int]] = {}
    rows = list_bounties(client, obj.store(), obj.home(), show_all=show_all)
    for b in rows:
        if b.owner not in owners_shown:
            owners_shown.append(b.owner)
            history[b.owner] = b.owner_history
        fit = (", ".join(b.fits) or "-") if b.features is not None else "?"
        table.add_row(str(b.id), b.status, b.amount(b.escrow), b.amount(b.stake), f"{b.eval_window // 60} min",
                      b.auditable, f"{b.deadline_in // 60} min", f"{b.best:.4f} → {b.target:.4f}", b.model,
                      f"{b.owner[:8]}…", fit)
    out_console.print(table)
    owners = Table("owner", "bounties closed", "audits revealed", "audited mismatches (my audits)", title="Owners")
    for owner in owners_shown:
        h = history[owner]
        audited = f"{h['mismatches']} in {h['audited']} audits" if h["audited"] else "not audited"
        owners.add_row(owner, str(h["closed"]), str(h["revealed"]), audited)
    if owners_shown:
        out_console.print(owners)
    if any(b.model_missing for b in rows):
        err_console.print(f"note: {MODEL_MISSING_HINT}", style="yellow", markup=False)


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
    overrides = {k: v for k, v in {"target_epsilon": epsilon, "noise_multiplier": noise_multiplier,
                                   "max_grad_norm": max_grad_norm, "sample_rate": sample_rate, "steps": steps,
                                   "delta": delta}.items() if v is not None}
    if no_dp and overrides:
        raise click.UsageError(f"--no-dp trains without DP; drop {', '.join(sorted(overrides))}")
    if not no_dp and batch_size is not None:
        raise click.UsageError("with DP each example joins a step with probability --sample-rate; "
                               "--batch-size applies to --no-dp only")
    home = obj.home()
    config = home.load_config()
    # the update names its miner (checked by the owner: a copied CID is worthless); training signs
    # nothing, so the keystore stays locked and no password is asked
    miner = _miner_address(obj, home, config)

    from mine.dp import default_settings
    from mine.miner import train_update
    from mine.vault import Vault
    from mine.versions import load_version

    X, y, columns = Vault(home).load(dataset)
    client = obj.client(with_account=False)
    store = obj.store()
    settings = None
    base = load_version(client, store, bounty_id)
    if overrides:
        settings = default_settings(base.manifest).replace(**overrides)
    with progress("training", None) as advance:
        upd = train_update(home, client, store, bounty_id, X, y, columns, epochs=epochs, lr=lr,
                           batch_size=batch_size, seed=seed, on_batch=lambda done, total: advance(done, total),
                           base=base, dp_settings=settings, no_dp=no_dp, dataset=dataset,
                           miner=miner)
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
        from mine.devnet import dev_address

        return dev_address(obj.dev_account)
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
    """Seal an update to the bounty owner, store it, submit it with the stake (one tx; crash-safe, rerun to finish).

    UPDATE is an update file from `mine train`; without it, the newest one for BOUNTY_ID in the outbox.
    """
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
    with working(f"sealing, storing and submitting {update.name}"):
        entry = do_submit(home, client, store, bounty_id, update)
    out_console.print(f"submitted {entry.cid} to bounty {bounty_id} as #{entry.index} ({entry.state})")


@cli.command()
@pass_ctx
def status(obj: Ctx) -> None:
    """My submissions and their states, with why each was paid what it was (finishes interrupted submissions first)."""
    from mine.amounts import format_amount
    from mine.miner import resume_all, unfinished
    from mine.overview import my_submissions, vesting

    home = obj.home()
    home.load_config()
    me = obj.address()
    reader = obj.reader()
    if unfinished(home, me):  # only finishing a submission signs: then unlock the account
        _, problems = resume_all(home, obj.client(), obj.store())
        for problem in problems:
            err_console.print(f"warning: could not finish {problem}", style="yellow", markup=False)
    table = Table("bounty", "#", "cid", "state", "detail")
    for row in my_submissions(reader, home, me):
        detail = row.why if row.state in ("accepted", "rejected", "reclaimed", "abandoned") else ""
        table.add_row(str(row.bounty), str(row.index), row.cid, row.state, detail)
    out_console.print(table)
    out_console.print(f"withdrawable: {fmt_eth(reader.credits(me))}")
    now = reader.now()
    for bid, v in vesting(reader, me).items():
        decimals, symbol = reader.token_meta(reader.bounty(bid).token)
        when = ("releasable now (`mine withdraw` releases it)" if v.releasable_after <= now
                else f"until the bounty ends ({_when(v.releasable_after)})")
        out_console.print(f"vesting in bounty {bid}: {format_amount(v.total, decimals, symbol)} "
                          f"(rewards {format_amount(v.rewards, decimals, symbol)} + stakes "
                          f"{format_amount(v.stakes, decimals, symbol)}), {when}")


@cli.command()
@click.option("--token", default=None, help="ERC-20 address (default: ETH).")
@pass_ctx
def withdraw(obj: Ctx, token: str | None) -> None:
    """Withdraw everything credited to this account (rewards, stakes, refunds).

    Rewards and stakes of accepted updates vest until their bounty ends (so a miner caught later by
    the owner's pooled evidence cannot leave with them); this first releases the vesting of every
    bounty that has ended, then withdraws.
    """
    from mine.amounts import format_amount
    from mine.contract import ZERO_ADDRESS
    from mine.overview import vesting, withdraw_credits

    token = token or ZERO_ADDRESS
    reader, me = obj.reader(), obj.address()
    # one scan of the history: what vests in this token (the release below looks only there)
    held = {bid: v for bid, v in vesting(reader, me).items() if reader.bounty(bid).token.lower() == token.lower()}
    now = reader.now()
    # nothing to sign: answer without web3 or a password
    if reader.credits(me, token) == 0 and all(v.releasable_after > now for v in held.values()):
        later = f" (still vesting in bount{'y' if len(held) == 1 else 'ies'} {', '.join(map(str, held))}: " \
                "released once the bounty ends; `mine status` shows when)" if held else ""
        out_console.print(f"nothing to withdraw{later}")
        return
    client = obj.client()
    with working("releasing and withdrawing"):
        amount = withdraw_credits(client, token, bounties=held)
    if amount == 0:
        out_console.print("nothing to withdraw")
        return
    decimals, symbol = client.token_meta(token)
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
@click.option("--max-epsilon", type=float, default=None,
              help="Reject updates trained without DP or with a DP epsilon above this; at most 16 (the policy's "
                   "concentration_max_epsilon) lets every update take the backdoor test (code 9).")
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
    from mine.round_policy import RoundPolicy
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
    val = _validation_with_groups(Vault(home), validation, manifest)
    private = obj.private_store()
    if private is not None:
        err_console.print(f"warning: this mine's store is its own ({private}): no miner can fetch the model from it, "
                          "and you cannot read their updates. Post through an IPFS node they reach (`mine --store "
                          "/ip4/HOST/tcp/5001 bounty create …` or `mine init --store …`); mines of one user on one "
                          "machine can use `--store shared`", style="yellow", markup=False)
    client = obj.client()
    try:
        with working("publishing the model and posting the bounty"):
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
    untested = RoundPolicy(**settings, max_epsilon=max_epsilon).untested_for_backdoors(manifest)
    if untested:
        err_console.print(f"warning: {untested}", style="yellow", markup=False)


def verdict_line(v: dict[str, Any]) -> str:
    """One settled submission as `mine evaluate` prints it; the stake's fate once, even where the
    reason already tells it."""
    if v["share_bps"]:
        return f"#{v['index']} {v['miner'][:10]}…: accepted, share {v['share_bps'] / 100:.2f}%"
    stake = f"stake {'returned' if v['refund'] else 'forfeited'}"
    return (f"#{v['index']} {v['miner'][:10]}…: rejected [{v['reason_code']}] {v['reason']}"
            + ("" if stake in v["reason"] else f" ({stake})"))


def _owner_validation(obj: Ctx, bounty_id: int) -> tuple[Any, Any, Any, Any, Any]:
    from mine.owner import OwnedBounty, Validation
    from mine.vault import Vault
    from mine.versions import load_version

    home = obj.home()
    owned = OwnedBounty.load(home, bounty_id)
    client = obj.client()
    store = obj.store()
    current = load_version(client, store, bounty_id)
    val = _validation_with_groups(Vault(home), owned.validation, current.manifest)
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
@click.argument("bounty_id", type=int, required=False)
@click.option("--watch", is_flag=True, help="Keep settling rounds as updates arrive (Ctrl-C to stop; one per mine home).")
@click.option("--all", "serve_all", is_flag=True, help="Serve every open bounty this mine owns (new ones too).")
@click.option("--min-round", type=click.IntRange(1, 32), default=4, show_default=True,
              help="With --watch: settle when this many submissions are queued ...")
@click.option("--max-wait", type=click.FloatRange(0.0, 1.0), default=0.5, show_default=True,
              help="... or when the oldest has waited this fraction of its window.")
@click.option("--interval", type=float, default=2.0, show_default=True, help="Seconds between polls with --watch.")
@click.option("--hold/--no-hold", default=True, show_default=True,
              help="With --watch: a round that makes no new version waits for more updates of the same version "
                   "(judged again together) until its oldest has waited --max-wait of its window.")
@click.option("--json", "as_json", is_flag=True, help="With --watch: log JSON lines.")
@pass_ctx
def evaluate_cmd(obj: Ctx, bounty_id: int | None, watch: bool, serve_all: bool, min_round: int, max_wait: float,
                 interval: float, hold: bool, as_json: bool) -> None:
    """Settle the queued submissions in rounds: judge each round's updates together, one transaction per round."""
    if (bounty_id is None) == (not serve_all):
        raise click.UsageError("give a BOUNTY_ID or --all")
    if watch or serve_all:
        from mine.watch import WatchLog, evaluate_loop, home_lock

        home = obj.home()
        home.load_config()
        client = obj.client()
        stop = _stop_on_signals()
        with home_lock(home, "evaluate"):
            log = WatchLog(home, as_json=as_json, name="evaluate")
            ok, total = evaluate_loop(client, obj.store(), home, None if serve_all else [bounty_id], log,
                                      min_round=min_round, max_wait=max_wait, interval=interval, once=not watch,
                                      hold=hold, stop=stop)
        out_console.print(f"accepted {ok} of {total} updates")
        return
    from mine.owner import settle_round

    owned, client, store, current, val = _owner_validation(obj, bounty_id)
    home = obj.home()
    accepted = total = 0
    started = time.perf_counter()
    while True:
        with working("fetching, judging and settling the next round"):
            result, current = settle_round(client, store, home, owned, val, current=current)
        if result is not None and result.count:
            for v in result.verdicts:
                out_console.print(verdict_line(v))
            out_console.print(f"round #{result.first}..#{result.first + result.count - 1}: score "
                              f"{result.score_before:.4f} → {result.score_after:.4f}"
                              + (f", version {result.version}" if result.version else ", no new version"))
            if result.retracted:
                out_console.print(f"version {result.version} takes back out what the earlier accepted updates of "
                                  f"{', '.join(result.retracted)} put on the inputs their code-9 forfeits named")
            accepted += sum(1 for v in result.verdicts if v["share_bps"])
            total += result.count
            continue  # more may be queued behind a full round
        if result is not None and result.waiting:
            err_console.print(f"warning: {result.waiting} submission(s) could not be fetched from the store; they wait "
                              "for the next try (never rejected for an outage)", style="yellow", markup=False)
        break
    out_console.print(f"accepted {accepted} of {total} updates in {time.perf_counter() - started:.1f} s")
    _print_group_scores(current, val)


def _print_group_scores(current: Any, val: Any) -> None:
    """Per-subgroup scores of the current model version, when the validation set has a group column."""
    if val.groups is None:
        return
    from mine.owner import score_model

    score, per_group = score_model(current.manifest, current.state, val)
    groups = ", ".join(f"{k} {v:.4f}" for k, v in sorted(per_group.items()))
    out_console.print(f"version {current.version} ({current.manifest.metric} {score:.4f}) per group: {groups}",
                      markup=False, highlight=False)


def _stop_on_signals() -> Any:
    """A stop() for daemons: true after SIGTERM or SIGINT (the current step finishes first)."""
    import signal

    stopped = {"flag": False}

    def handler(signum: int, frame: Any) -> None:
        stopped["flag"] = True

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return lambda: stopped["flag"]


@cli.command("watch")
@click.option("--once", is_flag=True, help="Run one pass and exit (tests, cron).")
@click.option("--json", "as_json", is_flag=True, help="Log JSON lines instead of text.")
@click.option("--interval", type=float, default=2.0, show_default=True, help="Seconds between passes.")
@click.option("--seed", type=int, default=None, help="Training seed (default: derived from the account).")
@pass_ctx
def watch_cmd(obj: Ctx, once: bool, as_json: bool, interval: float, seed: int | None) -> None:
    """Earn unattended: discover bounties, decide under config.json's `watch` rules, train, submit, follow, withdraw."""
    from mine.watch import Watcher, WatchLog, home_lock

    home = obj.home()
    home.load_config()
    client = obj.client()
    stop = _stop_on_signals()
    with home_lock(home, "watch"):
        log = WatchLog(home, as_json=as_json)
        watcher = Watcher(home, client, obj.store(), log, seed=seed)
        log("start", f"watching for {client.account.address} on {client.address} (home {home.root})")
        watcher.run(interval=interval, once=once, stop=stop)
        log("stop", f"stopped after {watcher.passes} pass(es)")


@cli.command("ui")
@click.option("--port", type=int, default=8765, show_default=True, help="Port on 127.0.0.1.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface (keep the default: the page can withdraw).")
@pass_ctx
def ui_cmd(obj: Ctx, port: int, host: str) -> None:
    """Serve this mine's page on http://127.0.0.1:PORT (datasets, bounties, submissions, earnings, withdraw)."""
    from mine.ui import serve

    home = obj.home()
    home.load_config()
    out_console.print(f"mine ui on http://{host}:{port}/ (Ctrl-C to stop)")
    serve(obj, host=host, port=port)


@cli.command()
@click.argument("bounty_id", type=int)
@click.option("--validation", "validation_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Use this validation file instead of the one in the revealed audit bundle.")
@click.option("--group", "group_col", default=None,
              help="The owner's subgroup column (default: the one the audit bundle names, if any).")
@pass_ctx
def audit(obj: Ctx, bounty_id: int, validation_file: Path | None, group_col: str | None) -> None:
    """Replay every round (verdicts, shares, score, weights) from chain + store + audit bundle; exit 7 on a mismatch."""
    import tempfile

    from mine.datasets import read_table, select_features
    from mine.owner import Validation, audit as do_audit, fetch_audit_bundle, save_audit_result
    from mine.vault import group_labels
    from mine.versions import load_version

    client = obj.client(with_account=False)
    store = obj.store()
    manifest = load_version(client, store, bounty_id, 0).manifest
    data, secret_key, bundle_group = fetch_audit_bundle(client, store, bounty_id)
    if group_col or bundle_group:
        out_console.print(f"subgroups by column {group_col or bundle_group}"
                          + (" (named by the audit bundle)" if not group_col else ""), markup=False, highlight=False)
    group_col = group_col or bundle_group
    if validation_file is not None:
        data = validation_file.read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "validation.csv"
        path.write_bytes(data)
        X, y, columns = read_table(path, target=manifest.target)
        val = Validation.from_file(path, X, y, columns, manifest)
        if group_col:
            val.groups = group_labels(group_col, select_features(X, columns, [group_col])[:, 0])
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


def _int_list(text: str | None, what: str) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of integers like {what}") from None


@model.command("template")
@click.argument("dataset", required=False, type=click.Choice(["digits", "breast_cancer", "diabetes"]))
@click.option("--from-dataset", "from_dataset", default=None,
              help="Vault dataset: a manifest for its columns, target, class count and statistics.")
@click.option("--hidden", default=None, help="Hidden widths, e.g. 64,32 (with --image: conv channels, e.g. 16,32).")
@click.option("--task", type=click.Choice(["classification", "regression"]), default=None,
              help="Default: classification for a target of at most 100 integer classes 0..K-1, else regression.")
@click.option("--image", default=None, help="C,H,W: the features are an image (row-major); the model is a small CNN.")
@click.option("--model", "arch", type=click.Choice(["mlp", "cnn"]), default="mlp", show_default=True,
              help="Architecture for a bundled DATASET (cnn: digits only).")
@click.option("--normalize-from", "vault_name", default=None,
              help="Vault dataset whose column mean/std become the manifest's input normalization (bundled schemas).")
@click.option("--metric", type=click.Choice(["accuracy", "cross_entropy", "mse"]), default=None,
              help="Validation metric of versions (default: accuracy for classification, mse for regression). "
                   "cross_entropy (classification, lower is better) still resolves gains on a small validation set.")
@pass_ctx
def model_template(obj: Ctx, dataset: str | None, from_dataset: str | None, hidden: str | None, task: str | None,
                   image: str | None, arch: str, vault_name: str | None, metric: str | None) -> None:
    """Print a manifest: a bundled DATASET's standard one, or one for any vault dataset (--from-dataset)."""
    import dataclasses

    from mine.datasets import select_features
    from mine.model import default_manifest, template_manifest, with_normalization
    from mine.vault import Vault

    if (dataset is None) == (from_dataset is None):
        raise click.UsageError("give either a bundled DATASET or --from-dataset NAME")
    if from_dataset:
        vault_ = Vault(obj.home())
        X, y, columns = vault_.load(from_dataset)
        widths = _int_list(hidden, "64,32")
        manifest = template_manifest(from_dataset, X, y, columns, vault_.get(from_dataset).target, task=task,
                                     hidden=(16, 32) if widths is None and image else (64, 32) if widths is None
                                     else widths, image=_int_list(image, "1,8,8"))
    else:
        assert dataset is not None
        manifest = default_manifest(dataset, arch)
        if vault_name:
            X, _y, columns = Vault(obj.home()).load(vault_name)
            manifest = with_normalization(manifest, select_features(X, columns, list(manifest.features)))
    if metric is not None:
        try:
            manifest = dataclasses.replace(manifest, metric=metric)
        except ValidationError as exc:
            raise click.BadParameter(str(exc), param_hint="--metric") from None
    click.echo(manifest.to_json().decode())


@model.command("import")
@click.argument("source")
@click.option("--dataset", required=True, help="Vault dataset giving the input columns, target and statistics.")
@click.option("--weights", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Weights for the model: .safetensors, or a state_dict saved by torch.save (.pt/.pth).")
@click.option("--task", type=click.Choice(["classification", "regression"]), default=None,
              help="Default: inferred from the dataset's target.")
@click.option("--name", default=None, help="Model name (default: the object's name).")
@click.option("--normalize/--no-normalize", default=True, show_default=True,
              help="Normalize inputs with the dataset's column mean/std (off if your model expects raw inputs).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for manifest.json and weights.safetensors.")
@pass_ctx
def model_import(obj: Ctx, source: str, dataset: str, weights: Path | None, task: str | None, name: str | None,
                 normalize: bool, out_dir: Path) -> None:
    """Turn your own torch.nn.Sequential (SOURCE = my_models.py:net) into a manifest + safetensors weights.

    \b
    This RUNS your Python file: use it with your own code, on your own machine. What you publish is
    only the resulting JSON and safetensors; miners never execute code. Modules outside the layer
    whitelist are refused by name.
    """
    import torch
    from safetensors.torch import load_file

    from mine.model import import_sequential, state_to_bytes, with_normalization
    from mine.templates import infer_task, load_owner_module
    from mine.vault import Vault

    vault_ = Vault(obj.home())
    X, y, columns = vault_.load(dataset)
    task_, num_classes = infer_task(y, task)
    net = load_owner_module(source)
    state = None
    if weights is not None:
        if weights.suffix == ".safetensors":
            state = load_file(str(weights))
        else:
            loaded = torch.load(weights, map_location="cpu", weights_only=True)
            if not isinstance(loaded, dict):
                raise ValidationError(f"{weights} does not hold a state_dict (a dict of tensors)")
            state = loaded
    manifest, state = import_sequential(net, name=name or source.rpartition(":")[2], features=columns,
                                        target=vault_.get(dataset).target, task=task_, num_classes=num_classes,
                                        state=state)
    if normalize and not manifest.token_inputs:
        manifest = with_normalization(manifest, X)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "manifest.json").write_bytes(manifest.to_json())
    (out_dir / "weights.safetensors").write_bytes(state_to_bytes(state))
    out_console.print(f"wrote {out_dir / 'manifest.json'} and {out_dir / 'weights.safetensors'}: "
                      f"{len(manifest.layers)} layers, {manifest.parameter_count} parameters, "
                      f"{manifest.flops_per_example} FLOPs per example")


# ---------------------------------------------------------------------- privacy


@cli.group()
def privacy() -> None:
    """What an update gives away: run the standard attacks on your own update before sending it."""


def _public_reference(manifest: Any, X: Any) -> tuple[Any, Any] | None:
    """The bundled dataset with the manifest's schema, without the miner's own rows (or None)."""
    import numpy as np

    from mine import datasets

    for name in datasets.DATASETS:
        names, target = datasets.schema(name)
        if names == list(manifest.features) and target == manifest.target:
            ds = datasets.load(name)
            mine_rows = {row.tobytes() for row in np.asarray(X, np.float32)}
            keep = np.array([row.tobytes() not in mine_rows for row in ds.X])
            return ds.X[keep], ds.y[keep]
    return None


@privacy.command("check")
@click.argument("update", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dataset", required=True, help="Vault dataset the update was trained on.")
@click.option("--reference", default=None,
              help="Vault dataset of rows NOT in the update (re-identification population, membership "
                   "non-members). Default: the bundled dataset with the same schema, minus your rows.")
@click.option("--model", "model_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Manifest JSON of the base model (with --base; default: fetch the update's base version).")
@click.option("--base", "base_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Base weights (safetensors) the update was trained from (with --model).")
@click.option("--steps", type=click.IntRange(10, 5000), default=300, show_default=True,
              help="Optimisation steps of the gradient inversion.")
@pass_ctx
def privacy_check(obj: Ctx, update: Path, dataset: str, reference: str | None, model_path: Path | None,
                  base_path: Path | None, steps: int) -> None:
    """Attack UPDATE (an outbox file) as anyone who reads it could, and say what it leaks."""
    import numpy as np

    from mine import leakage
    from mine.datasets import select_features
    from mine.model import Manifest, load_weights, read_metadata, read_update
    from mine.vault import Vault

    data = update.read_bytes()
    metadata = read_metadata(data)
    if (model_path is None) != (base_path is None):
        raise click.BadParameter("give both --model and --base, or neither (then the base version is fetched)")
    if model_path is not None and base_path is not None:
        manifest = Manifest.from_json(model_path.read_bytes())
        base = load_weights(manifest, base_path.read_bytes())
    else:
        from mine.versions import load_version

        if "bounty" not in metadata or "base_version" not in metadata:
            raise ValidationError(f"{update.name} does not name its bounty and base version; pass --model and --base")
        loaded = load_version(obj.client(with_account=False), obj.store(), int(metadata["bounty"]),
                              int(metadata["base_version"]))
        manifest, base = loaded.manifest, loaded.state
    delta, metadata = read_update(manifest, data)
    dp, optimizer = None, str(manifest.training["optimizer"])
    if metadata.get("dp", "off") != "off":
        from mine.dp import default_settings, parse_dp_metadata

        dp = parse_dp_metadata(metadata["dp"])
        optimizer = default_settings(manifest).optimizer or optimizer  # what `mine train` used
    vault = Vault(obj.home())
    X, y, columns = vault.load(dataset)
    X = select_features(X, columns, list(manifest.features)).astype(np.float32, copy=False)
    if reference is not None:
        X_r, y_r, cols_r = vault.load(reference)
        ref = (select_features(X_r, cols_r, list(manifest.features)).astype(np.float32, copy=False), y_r)
    else:
        ref = _public_reference(manifest, X)
    with progress("attacking the update", None):
        findings = leakage.check_update(manifest, base, delta, X, y, dp=dp, X_ref=ref[0] if ref else None,
                                        y_ref=ref[1] if ref else None, steps=steps, optimizer=optimizer)
    colour = {"exposed": "red", "partial": "yellow"}
    table = Table("attack", "result", "reference", "verdict",
                  title=f"{update.name}: {len(y)} rows, " + (f"DP ε = {dp.epsilon:.2f}, δ = {dp.delta:.1e}" if dp else "no DP"))
    for f in findings:
        style = colour.get(f.verdict)
        table.add_row(f.attack, f.result, f.reference, f"[{style}]{f.verdict}[/]" if style else f.verdict)
    out_console.print(table)
    exposed = [f.attack for f in findings if f.verdict in ("exposed", "partial")]
    if exposed:
        out_console.print(f"verdict: LEAKS — {', '.join(exposed)}. Train with DP (without --no-dp), a smaller ε, "
                          "or pool more rows before sending this update.")
    else:
        out_console.print("verdict: no measured leak — every attack is at chance or within the DP bound.")


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
@click.option("--model", "demo_model", type=click.Choice(["mlp", "cnn"]), default="mlp", show_default=True,
              help="cnn: digits as 1x8x8 images through a small CNN.")
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
@click.option("--metric", type=click.Choice(["accuracy", "cross_entropy"]), default=None,
              help="The bounty's validation metric (classification; default: accuracy for digits, cross_entropy for "
                   "breast_cancer). cross_entropy scores the mean validation loss, which a small validation set still "
                   "resolves where one row is a whole accuracy step.")
@pass_ctx
def demo(obj: Ctx, dataset: str, demo_model: str, miners: int, malicious: int, attack: str, rounds: int, seed: int,
         out_dir: Path, demo_rpc: str | None, demo_ipfs: str | None, use_dp: bool, metric: str | None) -> None:
    """Run the whole marketplace locally: 1 owner, N miners (K malicious), R rounds; writes a report."""
    from mine.demo import DemoSettings, run_demo

    if malicious > miners:
        raise click.BadParameter("--malicious cannot exceed --miners")
    if demo_model == "cnn" and dataset != "digits":
        raise click.BadParameter("--model cnn needs --dataset digits (the only image dataset)")
    if metric is not None and dataset == "diabetes":
        raise click.BadParameter("--metric is for the classification datasets; diabetes (regression) is scored by MSE")
    settings = DemoSettings(dataset=dataset, model=demo_model, miners=miners, malicious=malicious, attack=attack, rounds=rounds,
                            seed=seed, out=out_dir, rpc=demo_rpc or obj.rpc, ipfs_api=demo_ipfs or obj.store_spec,
                            sonar=obj.sonar, dp=use_dp, metric=metric)
    run_demo(settings, console=out_console, progress_console=err_console)


def main() -> None:
    cli(prog_name="mine")


if __name__ == "__main__":
    main()
