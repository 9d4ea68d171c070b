"""Access to the Sonar contract over JSON-RPC with web3.py: views, signed transactions, events.

Everything the client does on chain goes through `SonarClient`; commands that only read (`mine
status`, `mine bounties`) use the lighter `mine.views.ChainReader`, which gives the same answers. Reverts are decoded into the
contract's custom error names (`SonarDeadlinePassed(bountyId=3, deadline=…)`) and raised as
`ChainError`s; an unreachable node, a wrong chain id and a missing contract each get their own
error that says what to do.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address
from web3 import Web3
from web3.logs import DISCARD
from web3.exceptions import ContractCustomError, ContractLogicError, Web3Exception

# the contract as data (no web3) lives in mine.contract; re-exported here, where callers look for it
from mine.contract import (  # noqa: F401
    BPS,
    BURN_ADDRESS,
    MAX_EVAL_WINDOW,
    MAX_REWARD,
    MAX_ROUND,
    MAX_SHARE_BPS,
    MIN_EVAL_WINDOW,
    PROJECT_ROOT,
    SCORE_SCALE,
    SonarViews,
    ZERO_ADDRESS,
    Bounty,
    BountyStatus,
    ModelVersion,
    Submission,
    SubmissionStatus,
    Verdict,
    bounty_from_tuple,
    build_dir,
    contract_abi,
    load_artifact,
    model_version_from_tuple,
    no_address,
    no_contract,
    not_an_address,
    record_deployment,
    recorded_deployment,
    recorded_deployment_block,
    submission_from_tuple,
    unreachable,
    wrong_chain,
)
from mine.errors import ChainError, ChainUnreachableError, ConfigError, InsufficientFundsError
from mine.logs import DEFAULT_MAX_RANGE, read_logs
from mine.rpc import RetryingHTTPProvider, RetryPolicy
from mine.tx import PendingTx, Sender, TxSettings
from mine.views import ErrorDecoder

ERC20_ABI = [
    {"type": "function", "name": "approve", "stateMutability": "nonpayable",
     "inputs": [{"name": "spender", "type": "address"}, {"name": "amount", "type": "uint256"}],
     "outputs": [{"name": "", "type": "bool"}]},
    {"type": "function", "name": "allowance", "stateMutability": "view",
     "inputs": [{"name": "owner", "type": "address"}, {"name": "spender", "type": "address"}],
     "outputs": [{"name": "", "type": "uint256"}]},
]


@dataclass(frozen=True)
class BountyParams:
    token: str
    reward: int
    stake: int
    deadline: int
    eval_window: int
    initial_score: int
    target_score: int
    higher_is_better: bool
    validation_commitment: bytes
    model_digest: bytes
    model_codec: int
    auditable: bool = False

    def as_tuple(self) -> tuple[Any, ...]:
        return (
            to_checksum_address(self.token), self.reward, self.stake, self.deadline, self.eval_window,
            self.initial_score, self.target_score, self.higher_is_better, self.validation_commitment,
            self.model_digest, self.model_codec, self.auditable,
        )


def connect(rpc_url: str, *, timeout: float = 30.0, retry: RetryPolicy | None = None,
            headers: dict[str, str] | None = None) -> Web3:
    """A Web3 connected to `rpc_url` (rate limits and outages retried with backoff), or ChainUnreachableError."""
    w3 = Web3(RetryingHTTPProvider(rpc_url, timeout=timeout, policy=retry, headers=headers))
    try:
        w3.eth.chain_id
    except (OSError, Web3Exception) as exc:
        raise unreachable(rpc_url, exc) from None
    return w3


class SonarClient(SonarViews):
    """The Sonar contract at `address`, sending transactions from `account` (if given)."""

    def __init__(self, w3: Web3, address: str, account: LocalAccount | None = None, *,
                 tx: TxSettings | None = None, start_block: int = 0, log_range: int = DEFAULT_MAX_RANGE) -> None:
        self.w3 = w3
        self.tx_settings = tx or TxSettings()
        self.start_block = start_block  # first block `events` reads (the deployment's)
        self.log_range = log_range  # blocks per eth_getLogs request
        self._sender: Sender | None = None
        self.address = to_checksum_address(address)
        self.account = account
        abi = contract_abi("Sonar")
        self.contract = w3.eth.contract(address=self.address, abi=abi)
        self._decoder = ErrorDecoder(abi)  # the reader's too (mine.views)
        self._chain_id: int | None = None
        self.chain_seconds = 0.0  # time spent waiting on the chain, for the demo's timings

    # ------------------------------------------------------------------ construction

    @classmethod
    def open(
        cls,
        rpc_url: str,
        address: str | None,
        account: LocalAccount | None = None,
        *,
        expected_chain_id: int | None = None,
        tx: TxSettings | None = None,
        start_block: int | None = None,
    ) -> SonarClient:
        """Connect and check the chain id and that a Sonar contract is at `address`."""
        w3 = connect(rpc_url)
        chain_id = w3.eth.chain_id
        if expected_chain_id is not None and chain_id != expected_chain_id:
            raise wrong_chain(rpc_url, chain_id, expected_chain_id)
        address = address or recorded_deployment(chain_id)
        if not address:
            raise no_address(chain_id)
        if not Web3.is_address(address):
            raise not_an_address(address)
        if w3.eth.get_code(to_checksum_address(address)) in (b"", b"\x00"):
            raise no_contract(address, chain_id)
        if start_block is None:
            start_block = recorded_deployment_block(chain_id, address)
        client = cls(w3, address, account, tx=tx, start_block=start_block)
        client._chain_id = int(chain_id)
        return client

    @classmethod
    def deploy(cls, w3: Web3, account: LocalAccount, *, tx: TxSettings | None = None) -> SonarClient:
        """Deploy a fresh Sonar from the build artifacts (tests and `mine demo`)."""
        artifact = load_artifact("Sonar")
        factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
        sender = Sender(w3, account, tx)
        body = factory.constructor().build_transaction({"from": account.address, "nonce": 0, **sender.fees()})
        receipt = sender.transact(body, label="deploy Sonar")
        client = cls(w3, receipt["contractAddress"], account, tx=tx, start_block=int(receipt["blockNumber"]))
        client._sender = sender
        return client

    @property
    def sender(self) -> Sender:
        """Sends this client's transactions (fees, nonces, confirmations, reorgs: `mine.tx`)."""
        if self.account is None:
            raise ConfigError("no account to send from: run `mine account new` or pass --dev-account N")
        if self._sender is None or self._sender.account is not self.account:
            self._sender = Sender(self.w3, self.account, self.tx_settings, chain_id=self._chain_id)
        return self._sender

    def reset_nonce(self) -> None:
        """Forget the cached nonce (after a chain revert, or when another process sent from the account)."""
        if self._sender is not None:
            self._sender.reset()

    def with_account(self, account: LocalAccount) -> SonarClient:
        """The same contract, sending from another account."""
        clone = SonarClient.__new__(SonarClient)
        clone.__dict__.update(self.__dict__)
        clone.account = account
        clone._sender = None
        clone.chain_seconds = 0.0
        return clone

    # ------------------------------------------------------------------ views

    def _address(self, value: str) -> str:
        return to_checksum_address(value)

    def receipt_events(self, receipt: dict[str, Any], name: str) -> list[Any]:
        """Events `name` emitted by this contract in a receipt."""
        return list(getattr(self.contract.events, name)().process_receipt(receipt, errors=DISCARD))

    def tx_events(self, tx_hash: bytes | str, name: str) -> list[Any]:
        """Events `name` in the receipt of transaction `tx_hash`."""
        return self.receipt_events(self.w3.eth.get_transaction_receipt(tx_hash), name)

    def token_meta(self, token: str) -> tuple[int, str]:
        """`(decimals, symbol)` of a bounty's currency (`mine.amounts.token_meta`)."""
        from mine.amounts import token_meta

        return token_meta(self.w3, token)

    def events(self, name: str, *, from_block: int | None = None, to_block: int | None = None,
               **filters: Any) -> list[Any]:
        """Logs of event `name` whose indexed arguments equal `filters`, read in bounded block ranges."""
        event = getattr(self.contract.events, name)
        try:
            last = int(self.w3.eth.block_number) if to_block is None else to_block
        except (OSError, Web3Exception) as exc:
            raise ChainUnreachableError(f"could not read {name} events: the node did not answer ({exc})") from None
        first = self.start_block if from_block is None else from_block
        return read_logs(
            lambda lo, hi: list(event.get_logs(from_block=lo, to_block=hi, argument_filters=filters or None)),
            first, last, max_range=self.log_range, what=f"{name} events", errors=(OSError, Web3Exception, ValueError),
        )

    def now(self) -> int:
        """Timestamp of the latest block."""
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def block_time(self, block: int) -> int:
        """Timestamp of block number `block`."""
        return int(self.w3.eth.get_block(block)["timestamp"])

    # ------------------------------------------------------------------ transactions

    def ensure_allowance(self, token: str, amount: int) -> None:
        """Approve Sonar to pull `amount` of an ERC-20 from this account, if not approved already."""
        if int(token, 16) == 0 or amount == 0 or self.account is None:
            return
        erc20 = self.w3.eth.contract(address=to_checksum_address(token), abi=ERC20_ABI)
        if erc20.functions.allowance(self.account.address, self.address).call() >= amount:
            return
        tx = erc20.functions.approve(self.address, amount).build_transaction(
            {"from": self.account.address, "nonce": 0, **self.sender.fees()}
        )
        self.sender.transact(tx, label="approve")

    def post_bounty(self, params: BountyParams) -> tuple[int, dict[str, Any]]:
        value = params.reward if int(params.token, 16) == 0 else 0
        self.ensure_allowance(params.token, params.reward)
        receipt = self._transact("postBounty", params.as_tuple(), value=value)
        (event,) = self.contract.events.BountyPosted().process_receipt(receipt, errors=DISCARD)
        return int(event["args"]["bountyId"]), receipt

    def submit(
        self, bounty_id: int, digest: bytes, codec: int, base_version: int, *, stake: int, token: str = ZERO_ADDRESS
    ) -> tuple[int, dict[str, Any]]:
        """Submit an update's CID (`digest`, `codec`) trained from `base_version`, paying `stake`
        (the bounty's stake). Returns the submission's index in the bounty's queue and the receipt."""
        value = stake if int(token, 16) == 0 else 0
        self.ensure_allowance(token, stake)
        receipt = self._transact("submit", bounty_id, digest, codec, base_version, value=value)
        (event,) = self.contract.events.UpdateSubmitted().process_receipt(receipt, errors=DISCARD)
        return int(event["args"]["index"]), receipt

    def settle(
        self, bounty_id: int, verdicts: list[Verdict], score: int = 0, digest: bytes = b"\x00" * 32, codec: int = 0
    ) -> dict[str, Any]:
        """Settle the next len(verdicts) submissions of the queue (1..MAX_ROUND). With an accepted
        verdict, `score` and the new model version's CID (`digest`, `codec`) are required."""
        if not 1 <= len(verdicts) <= MAX_ROUND:
            raise ChainError(f"settle: a round has 1 to {MAX_ROUND} verdicts, not {len(verdicts)}")
        return self._transact("settle", bounty_id, [v.as_tuple() for v in verdicts], score, digest, codec)

    def reclaim_stake(self, bounty_id: int, index: int) -> dict[str, Any]:
        return self._transact("reclaimStake", bounty_id, index)

    def skip(self, bounty_id: int) -> dict[str, Any]:
        return self._transact("skip", bounty_id)

    def reveal_audit(self, bounty_id: int, digest: bytes, codec: int) -> dict[str, Any]:
        """Reveal the audit bundle's CID (its digest must be the bounty's validation commitment)."""
        return self._transact("revealAudit", bounty_id, digest, codec)

    def close(self, bounty_id: int) -> dict[str, Any]:
        return self._transact("close", bounty_id)

    def release(self, bounty_id: int, miner: str | None = None) -> dict[str, Any]:
        """Move `miner`'s (default: this account's) vesting rewards and stakes of an ended bounty to its credits."""
        if miner is None:
            if self.account is None:
                raise ChainError("releasing for this account needs an account")
            miner = self.account.address
        return self._transact("release", bounty_id, to_checksum_address(miner))

    def withdraw(self, token: str = ZERO_ADDRESS) -> dict[str, Any]:
        return self._transact("withdraw", to_checksum_address(token))

    # ------------------------------------------------------------------ plumbing

    def _call(self, fn: str, *args: Any) -> Any:
        try:
            return getattr(self.contract.functions, fn)(*args).call()
        except ContractCustomError as exc:
            raise ChainError(f"{fn}: {self._decoder.describe(exc.data)}") from None
        except ContractLogicError as exc:
            raise ChainError(f"{fn}: {exc}") from None
        except (OSError, Web3Exception) as exc:
            raise ChainUnreachableError(f"{fn}: the node did not answer ({exc})") from None

    def build(self, fn: str, *args: Any, value: int = 0) -> dict[str, Any]:
        """The unsigned transaction calling `fn(*args)` (gas estimated: a revert surfaces here, decoded).

        The nonce is a placeholder; `Sender` assigns the real one when it sends.
        """
        if self.account is None:
            raise ConfigError("no account to send from: run `mine account new` or pass --dev-account N")
        sender = self.sender
        call = getattr(self.contract.functions, fn)(*args)
        try:
            return dict(call.build_transaction({
                "from": self.account.address, "value": value, "nonce": 0, "chainId": sender.chain_id,
                **sender.fees(),
            }))
        except ContractCustomError as exc:
            raise ChainError(f"{fn} would revert: {self._decoder.describe(exc.data)}") from None
        except ContractLogicError as exc:
            raise ChainError(f"{fn} would revert: {exc}") from None
        except (OSError, Web3Exception) as exc:
            raise _classify(fn, exc, self.account.address) from None

    def _transact(self, fn: str, *args: Any, value: int = 0) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            return self.sender.transact(self.build(fn, *args, value=value), label=fn)
        finally:
            self.chain_seconds += time.perf_counter() - started

    def send_many(self, calls: list[tuple[str, tuple[Any, ...], int]]) -> list[PendingTx]:
        """Broadcast independent calls `(fn, args, value)` back to back without waiting (pipelined).

        Each is gas-estimated against the current state, so only calls that do not depend on each
        other belong in one batch (e.g. one round's submissions). Wait with `wait_many`.
        """
        started = time.perf_counter()
        try:
            txs = [self.build(fn, *args, value=value) for fn, args, value in calls]
            return self.sender.send_many(txs, labels=[fn for fn, _, _ in calls])
        finally:
            self.chain_seconds += time.perf_counter() - started

    def wait_many(self, pending: list[PendingTx]) -> list[dict[str, Any]]:
        """Receipts of `send_many`'s transactions once confirmed (reorgs handled by `mine.tx`)."""
        started = time.perf_counter()
        try:
            return self.sender.wait_many(pending)
        finally:
            self.chain_seconds += time.perf_counter() - started


def _classify(fn: str, exc: Exception, sender: str) -> ChainError:
    text = str(exc)
    if "insufficient funds" in text.lower() or "lack of funds" in text.lower():
        return InsufficientFundsError(
            f"{fn}: account {sender} cannot pay value + gas; fund it (or use another --account)"
        )
    if isinstance(exc, OSError):
        return ChainUnreachableError(f"{fn}: the node did not answer ({text})")
    return ChainError(f"{fn}: {text}")


def _send_signed(w3: Web3, account: LocalAccount, tx: dict[str, Any], *, timeout: float = 120) -> dict[str, Any]:
    """Send one transaction and wait for its receipt (a `Sender` with default settings)."""
    return Sender(w3, account, TxSettings(timeout=timeout)).transact(tx, label=str(tx.get("data", "tx"))[:10])
