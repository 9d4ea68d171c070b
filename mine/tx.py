"""Sending transactions on real chains: fees, nonces, confirmations, reorgs, pipelining.

`Sender` sends signed transactions from one account and decides when they are done:

- **Fees.** EIP-1559 when the chain has a base fee: `maxPriorityFeePerGas` from the node
  (`eth_maxPriorityFeePerGas`, or `priority_fee_gwei`), `maxFeePerGas = 2 × baseFee + tip`, never above
  the user's cap `max_fee_gwei` (a base fee above the cap is an error that says so). Legacy
  `gasPrice` on chains without a base fee. Quotes are reused for `fee_ttl` seconds.
- **Nonces.** Several processes may send from one key (a daemon and the CLI): nonce lookup and send
  happen under a per-account file lock in `lock_dir` (the mine home's `locks/`), and the last nonce
  sent is kept beside the lock so a provider whose pending count lags cannot hand it out twice.
- **Confirmations.** A transaction is done when `confirmations` blocks are built on top of the one
  that includes it (default: 0 on an automining dev chain, `DEFAULT_CONFIRMATIONS` elsewhere).
- **Reorgs.** When its receipt's block is no longer canonical (or the receipt disappeared), the same
  signed transaction is broadcast again (same nonce: it can be mined at most once, so nothing is paid
  twice) and waited for again. If its nonce was meanwhile taken by another transaction it cannot
  come back: `TxDroppedError`, and the caller's journal decides what to redo.
- **Pipelining.** `send_many` signs and broadcasts a batch under one lock (consecutive nonces),
  `wait_many` then polls all receipts together — one round trip per block instead of one wait per
  transaction.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from web3.exceptions import TransactionNotFound, Web3Exception

from mine.errors import ChainError, ChainUnreachableError, ConfigError, InsufficientFundsError

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount
    from web3 import Web3

__all__ = ["DEFAULT_CONFIRMATIONS", "GWEI", "PendingTx", "Sender", "TxDroppedError", "TxSettings"]

GWEI = 10**9
#: Blocks on top of a transaction's block before it counts as done, on chains that do not automine.
DEFAULT_CONFIRMATIONS = 2
#: Longest pause between two receipt polls (the interval grows from `TxSettings.poll` up to this).
MAX_POLL = 1.0


class TxDroppedError(ChainError):
    """A reorg dropped the transaction and its nonce was used by another one: it will not be mined."""


@dataclass(frozen=True)
class TxSettings:
    """How transactions are sent and when they count as done (see the module docstring)."""

    confirmations: int | None = None  # None: 0 on an automining dev chain, else DEFAULT_CONFIRMATIONS
    max_fee_gwei: float | None = None  # cap on maxFeePerGas (gasPrice on legacy chains)
    priority_fee_gwei: float | None = None  # tip; default: what the node suggests
    timeout: float = 300.0  # seconds to wait for each receipt
    poll: float = 0.05  # first receipt poll interval
    fee_ttl: float = 2.0  # seconds a fee quote is reused
    lock_dir: Path | None = None  # per-account nonce lock shared by processes (None: this process only)
    max_reorgs: int = 3  # rebroadcasts after reorgs before giving up

    @classmethod
    def from_config(cls, values: Mapping[str, Any], *, lock_dir: Path | None = None) -> TxSettings:
        """Settings from a mine's config (`confirmations`, `max_fee_gwei`, `priority_fee_gwei`, `tx_timeout`)."""
        def number(key: str, kind: type) -> Any:
            value = values.get(key)
            if value is None:
                return None
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(f"config {key!r} must be a non-negative number, got {value!r}")
            return kind(value)

        timeout = number("tx_timeout", float)
        return cls(confirmations=number("confirmations", int), max_fee_gwei=number("max_fee_gwei", float),
                   priority_fee_gwei=number("priority_fee_gwei", float),
                   timeout=timeout if timeout is not None else cls.timeout, lock_dir=lock_dir)


@dataclass
class PendingTx:
    """A broadcast transaction: its hash, the signed bytes (to rebroadcast after a reorg), its nonce."""

    hash: bytes
    raw: bytes
    nonce: int
    label: str
    reorgs: int = 0
    receipt: dict[str, Any] | None = field(default=None, repr=False)


def _error_text(exc: BaseException) -> str:
    return str(exc).lower()


def classify(label: str, exc: BaseException, sender: str) -> ChainError:
    """A web3/transport error as the `ChainError` a user can act on."""
    text = _error_text(exc)
    if "insufficient funds" in text or "lack of funds" in text:
        return InsufficientFundsError(f"{label}: account {sender} cannot pay value + gas; fund it (or use another account)")
    if isinstance(exc, OSError):
        return ChainUnreachableError(f"{label}: the node did not answer ({exc})")
    return ChainError(f"{label}: {exc}")


class Sender:
    """Signs, sends and confirms transactions from `account` (see the module docstring)."""

    _process_locks: dict[str, threading.Lock] = {}
    _process_locks_guard = threading.Lock()
    _fee_quotes: dict[tuple[int, float | None, float | None], tuple[float, dict[str, int]]] = {}

    def __init__(self, w3: Web3, account: LocalAccount, settings: TxSettings | None = None, *,
                 chain_id: int | None = None) -> None:
        self.w3 = w3
        self.account = account
        self.settings = settings or TxSettings()
        self._chain_id = chain_id
        self._confirmations: int | None = self.settings.confirmations
        self._fees: tuple[float, dict[str, int]] | None = None
        self._next: int | None = None  # next nonce, when this process alone sends from the account
        self.rpc_calls: dict[str, int] = {}

    # ------------------------------------------------------------------ chain facts

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = int(self.w3.eth.chain_id)
        return self._chain_id

    @property
    def confirmations(self) -> int:
        """Blocks required on top of a transaction's block (auto: 0 when the node automines)."""
        if self._confirmations is None:
            self._confirmations = 0 if self._automines() else DEFAULT_CONFIRMATIONS
        return self._confirmations

    def _automines(self) -> bool:
        for method in ("anvil_getAutomine", "hardhat_getAutomine"):
            with contextlib.suppress(OSError, Web3Exception, ValueError):
                if self.w3.provider.make_request(method, []).get("result") is True:  # type: ignore[arg-type]
                    return True
        return False

    def fees(self) -> dict[str, int]:
        """Fee fields for the next transaction (EIP-1559 or legacy), within the user's cap."""
        now = time.monotonic()
        key = (id(self.w3.provider), self.settings.max_fee_gwei, self.settings.priority_fee_gwei)
        shared = Sender._fee_quotes.get(key)  # senders on one node share quotes (a miner per account)
        if shared is not None and now - shared[0] < self.settings.fee_ttl:
            self._fees = shared
        if self._fees is not None and now - self._fees[0] < self.settings.fee_ttl:
            return dict(self._fees[1])
        cap = None if self.settings.max_fee_gwei is None else int(self.settings.max_fee_gwei * GWEI)
        try:
            base = self.w3.eth.get_block("latest").get("baseFeePerGas")
            if base is None:
                price = int(self.w3.eth.gas_price)
                fees = {"gasPrice": price if cap is None else min(price, cap)}
            else:
                if self.settings.priority_fee_gwei is not None:
                    tip = int(self.settings.priority_fee_gwei * GWEI)
                else:
                    tip = int(self.w3.eth.max_priority_fee)
                max_fee = 2 * int(base) + tip
                if cap is not None:
                    if cap < int(base):
                        raise ChainError(
                            f"the base fee is {int(base) / GWEI:.3f} gwei, above your cap max_fee_gwei="
                            f"{self.settings.max_fee_gwei}; wait for cheaper blocks or raise the cap in config.json"
                        )
                    max_fee = min(max_fee, cap)
                fees = {"maxFeePerGas": max_fee, "maxPriorityFeePerGas": min(tip, max_fee)}
        except (OSError, Web3Exception) as exc:
            raise classify("fees", exc, self.account.address) from None
        self._fees = Sender._fee_quotes[key] = (now, fees)
        return dict(fees)

    # ------------------------------------------------------------------ nonces

    @contextlib.contextmanager
    def _account_lock(self) -> Iterator[Path | None]:
        """Held around nonce lookup + broadcast: by this process's threads, and by other processes."""
        key = f"{self.chain_id}-{self.account.address}"
        with Sender._process_locks_guard:
            local = Sender._process_locks.setdefault(key, threading.Lock())
        with local:
            lock_dir = self.settings.lock_dir
            if lock_dir is None:
                yield None
                return
            lock_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            path = lock_dir / f"{key}.lock"
            with open(path, "a+") as handle:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
                try:
                    yield path.with_suffix(".nonce")
                finally:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def _first_nonce(self, state_path: Path | None) -> int:
        if state_path is None and self._next is not None:
            return self._next
        pending = int(self.w3.eth.get_transaction_count(self.account.address, "pending"))
        if state_path is not None and state_path.exists():
            with contextlib.suppress(ValueError, KeyError, OSError):
                state = json.loads(state_path.read_text())
                if int(state["nonce"]) >= pending and self._known(bytes.fromhex(state["hash"])):
                    return int(state["nonce"]) + 1  # the provider's pending count lags our last send
        return pending

    def _known(self, tx_hash: bytes) -> bool:
        try:
            self.w3.eth.get_transaction(tx_hash)
            return True
        except TransactionNotFound:
            return False

    def reset(self) -> None:
        """Forget the cached nonce and fee quote (after a chain revert, or a failed send)."""
        self._next = None
        self._fees = None
        Sender._fee_quotes.pop((id(self.w3.provider), self.settings.max_fee_gwei, self.settings.priority_fee_gwei), None)

    # ------------------------------------------------------------------ sending

    def send(self, tx: dict[str, Any], *, label: str = "tx") -> PendingTx:
        """Sign and broadcast one transaction (nonce assigned here); does not wait."""
        return self.send_many([tx], labels=[label])[0]

    def send_many(self, txs: Sequence[dict[str, Any]], *, labels: Sequence[str] | None = None) -> list[PendingTx]:
        """Sign and broadcast `txs` with consecutive nonces, under the account lock; does not wait."""
        labels = list(labels) if labels is not None else ["tx"] * len(txs)
        sent: list[PendingTx] = []
        with self._account_lock() as state_path:
            try:
                nonce = self._first_nonce(state_path)
            except (OSError, Web3Exception) as exc:
                raise classify(labels[0] if labels else "tx", exc, self.account.address) from None
            for tx, label in zip(txs, labels):
                body = {**tx, "nonce": nonce, "chainId": self.chain_id}
                if not any(k in body for k in ("gasPrice", "maxFeePerGas")):
                    body.update(self.fees())
                body.pop("from", None)
                signed = self.account.sign_transaction(body)
                pending = PendingTx(bytes(signed.hash), bytes(signed.raw_transaction), nonce, label)
                try:
                    self._broadcast(pending)
                except ChainError:
                    self.reset()
                    if state_path is not None and sent:
                        self._save_state(state_path, sent[-1])
                    raise
                sent.append(pending)
                nonce += 1
            self._next = nonce
            if state_path is not None and sent:
                self._save_state(state_path, sent[-1])
        return sent

    def _save_state(self, path: Path, last: PendingTx) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"nonce": last.nonce, "hash": last.hash.hex()}))
        os.replace(tmp, path)

    def _broadcast(self, pending: PendingTx) -> None:
        try:
            self.w3.eth.send_raw_transaction(pending.raw)
        except (OSError, Web3Exception, ValueError) as exc:
            text = _error_text(exc)
            if "already known" in text or "known transaction" in text or "already imported" in text:
                return  # a retried request that had reached the node the first time
            raise classify(pending.label, exc, self.account.address) from None

    # ------------------------------------------------------------------ waiting

    def transact(self, tx: dict[str, Any], *, label: str = "tx") -> dict[str, Any]:
        """Send one transaction and wait until it is confirmed; returns its receipt."""
        return self.wait_many([self.send(tx, label=label)])[0]

    def wait(self, pending: PendingTx) -> dict[str, Any]:
        return self.wait_many([pending])[0]

    def wait_many(self, pendings: Sequence[PendingTx]) -> list[dict[str, Any]]:
        """Wait for every transaction's receipt and confirmations; rebroadcast what a reorg dropped.

        Raises `ChainError` for a reverted transaction (after the others are done), `TxDroppedError`
        for one that a reorg dropped for good, `ChainError` on timeout.
        """
        todo = list(pendings)
        while todo:
            self._await_receipts(todo)
            self._await_confirmations(todo)
            todo = [p for p in todo if not self._still_canonical(p)]
            for p in todo:
                self._rebroadcast(p)
        for p in pendings:
            assert p.receipt is not None
            if p.receipt["status"] != 1:
                raise ChainError(f"{p.label}: transaction 0x{p.hash.hex()} reverted")
        return [dict(p.receipt) for p in pendings if p.receipt is not None]

    def _receipt(self, tx_hash: bytes) -> dict[str, Any] | None:
        try:
            return dict(self.w3.eth.get_transaction_receipt(tx_hash))
        except TransactionNotFound:
            return None
        except (OSError, Web3Exception) as exc:
            raise classify("receipt", exc, self.account.address) from None

    def _await_receipts(self, pendings: Sequence[PendingTx]) -> None:
        deadline = time.monotonic() + self.settings.timeout
        poll = self.settings.poll
        waiting = [p for p in pendings if p.receipt is None]
        polls = 0
        while waiting:
            # in nonce order: once one is missing, the later ones of the account are too
            for i, p in enumerate(waiting):
                p.receipt = self._receipt(p.hash)
                if p.receipt is None:
                    waiting = waiting[i:]
                    break
            else:
                waiting = []
            if not waiting:
                return
            polls += 1
            if polls % 8 == 0 and not self._known(waiting[0].hash):
                self._rebroadcast(waiting[0])  # dropped from the node (a reorg, or evicted): send it again
            if time.monotonic() > deadline:
                raise ChainError(
                    f"{waiting[0].label}: transaction 0x{waiting[0].hash.hex()} not mined within "
                    f"{self.settings.timeout:.0f} s; it may still be pending (fee too low? raise max_fee_gwei)"
                )
            time.sleep(poll)
            poll = min(MAX_POLL, poll * 1.5)

    def _await_confirmations(self, pendings: Sequence[PendingTx]) -> None:
        need = self.confirmations
        if need <= 0:
            return
        target = max(int(p.receipt["blockNumber"]) for p in pendings if p.receipt is not None) + need
        deadline = time.monotonic() + self.settings.timeout
        poll = max(self.settings.poll, 0.1)
        while int(self.w3.eth.block_number) < target:
            if time.monotonic() > deadline:
                raise ChainError(f"no {need} confirmations within {self.settings.timeout:.0f} s; is the chain producing blocks?")
            time.sleep(poll)
            poll = min(MAX_POLL, poll * 1.5)

    def _still_canonical(self, p: PendingTx) -> bool:
        """Whether the receipt's block is still on the canonical chain (checked only with confirmations > 0)."""
        if self.confirmations <= 0:
            return True
        assert p.receipt is not None
        fresh = self._receipt(p.hash)
        if fresh is not None and fresh["blockHash"] == p.receipt["blockHash"]:
            try:
                block = self.w3.eth.get_block(int(fresh["blockNumber"]))
            except (OSError, Web3Exception) as exc:
                raise classify("block", exc, self.account.address) from None
            if block["hash"] == fresh["blockHash"]:
                return True
        p.receipt = fresh if fresh is not None and fresh["blockHash"] != p.receipt["blockHash"] else None
        return False

    def _rebroadcast(self, p: PendingTx) -> None:
        p.reorgs += 1
        if p.reorgs > self.settings.max_reorgs:
            raise TxDroppedError(f"{p.label}: transaction 0x{p.hash.hex()} was reorged out {p.reorgs} times; try again later")
        if p.receipt is not None:
            return  # re-mined in another block: wait for its confirmations again
        try:
            self._broadcast(p)
        except ChainError as exc:
            if "nonce too low" in str(exc).lower() and self._receipt(p.hash) is None:
                raise TxDroppedError(
                    f"{p.label}: a reorg dropped transaction 0x{p.hash.hex()} and its nonce {p.nonce} was used "
                    "by another transaction; run the command again (interrupted steps resume from the journal)"
                ) from None
            if "nonce too low" not in str(exc).lower():
                raise
        self.reset()

