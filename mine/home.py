"""The mine home: config file, encrypted keystores, outbox, journal, blocks — all under one 0700 folder.

Layout of `$MINE_HOME` (default `~/.mine`):
    config.json        chain RPC URL, chain id, Sonar address, default account, store backend
    keystores/         eth-account keystores (scrypt-encrypted), one per address
    vault.json         registered datasets (paths and hashes only; the data stays where it is)
    outbox/            updates trained here and not yet submitted
    journal.json       submissions in flight (crash-safe commit–reveal)
    owned/             bounties this mine posted as model owner
    blocks/            the embedded content store
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any


from mine.devnet import dev_account, dev_address
from mine.errors import ConfigError

if TYPE_CHECKING:  # eth_account is imported where a key is made or read (fast `mine vault`)
    from eth_account.signers.local import LocalAccount

DEFAULT_RPC = "http://127.0.0.1:8545"


def default_home() -> Path:
    return Path(os.environ.get("MINE_HOME", Path.home() / ".mine")).expanduser()


def write_json_atomic(path: Path, data: Any, *, mode: int = 0o600) -> None:
    """Write JSON so that a crash leaves either the old or the new file, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: Path, default: Any) -> Any:
    if not path.exists():
        return default
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc}); fix or remove it") from None


@dataclass
class Config:
    rpc: str = DEFAULT_RPC
    chain_id: int | None = None
    sonar: str | None = None
    account: str | None = None
    store: str = "embedded"
    extra: dict[str, Any] = field(default_factory=dict)


class MineHome:
    """One mine's folder and what is in it."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = (root or default_home()).expanduser()

    @property
    def config_path(self) -> Path:
        return self.root / "config.json"

    @property
    def keystores(self) -> Path:
        return self.root / "keystores"

    @property
    def outbox(self) -> Path:
        return self.root / "outbox"

    @property
    def owned(self) -> Path:
        return self.root / "owned"

    def exists(self) -> bool:
        return self.config_path.exists()

    def init(self, config: Config) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        for sub in (self.keystores, self.outbox, self.owned):
            sub.mkdir(exist_ok=True)
            os.chmod(sub, 0o700)
        self.save_config(config)

    def load_config(self) -> Config:
        if not self.exists():
            raise ConfigError(f"no mine at {self.root}: run `mine init` first (or set MINE_HOME)")
        data = read_json(self.config_path, {})
        known = {k: data.pop(k) for k in list(data) if k in Config.__dataclass_fields__}
        return Config(**known, extra=data)

    def save_config(self, config: Config) -> None:
        data = asdict(config)
        data.update(data.pop("extra"))
        write_json_atomic(self.config_path, data)

    # ------------------------------------------------------------------ accounts

    def new_account(self, password: str) -> LocalAccount:
        from eth_account import Account

        account = Account.create()
        self._store_key(account, password)
        return account

    def import_account(self, private_key: str, password: str) -> LocalAccount:
        from eth_account import Account

        try:
            account = Account.from_key(private_key)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"not a valid private key ({exc})") from None
        self._store_key(account, password)
        return account

    def _store_key(self, account: LocalAccount, password: str) -> None:
        from eth_account import Account

        if not password:
            raise ConfigError("an empty password would leave the key unprotected; give one")
        keystore = Account.encrypt(account.key, password)
        write_json_atomic(self.keystores / f"{account.address}.json", keystore)

    def list_accounts(self) -> list[str]:
        if not self.keystores.exists():
            return []
        return sorted(p.stem for p in self.keystores.glob("0x*.json"))

    def _keystore(self, address: str | None) -> tuple[str, Path]:
        """The address meant (default: the first keystore's) and its keystore file."""
        address = address or next(iter(self.list_accounts()), None)
        if address is None:
            raise ConfigError("no account in this mine: run `mine account new`, or pass --dev-account N on a local chain")
        path = next((p for p in self.keystores.glob("0x*.json") if p.stem.lower() == address.lower()), None)
        if path is None:
            raise ConfigError(f"no keystore for {address} in {self.keystores}; see `mine account list`")
        return address, path

    def account_address(self, address: str | None) -> str:
        """The checksummed address of the keystore `load_account` would unlock, read without decrypting it."""
        from mine.views import to_checksum_address

        address, path = self._keystore(address)
        stored = read_json(path, {}).get("address") or path.stem
        try:
            return to_checksum_address(str(stored))
        except ValueError:
            raise ConfigError(f"{path} names no valid address ({stored!r}); import the key again") from None

    def load_account(self, address: str | None, password: str | None) -> LocalAccount:
        from eth_account import Account

        address, path = self._keystore(address)
        if password is None:
            raise ConfigError("the keystore is encrypted: set MINE_PASSWORD or run in a terminal to be asked")
        try:
            key = Account.decrypt(json.loads(path.read_text()), password)
        except ValueError:
            raise ConfigError(f"wrong password for {address}") from None
        return Account.from_key(key)


def resolve_account(home: MineHome, config: Config, *, dev_index: int | None, password: str | None) -> LocalAccount:
    """The account to send from: a dev key (`--dev-account N`) or the configured keystore."""
    if dev_index is not None:
        return dev_account(dev_index)
    return home.load_account(config.account, password)


def resolve_address(home: MineHome, config: Config, *, dev_index: int | None) -> str:
    """The address `resolve_account` would send from, without deriving or decrypting its key."""
    if dev_index is not None:
        return dev_address(dev_index)
    return home.account_address(config.account)
