"""The Sonar contract as data, without web3: constants, enums, view results, build artifacts, deployments.

`mine.chain.SonarClient` (web3, signs transactions) and `mine.views.ChainReader` (read-only, light)
both build their results here, from the same ABI tuples, so the two cannot disagree; they also share
the errors a user sees when the node, the chain id or the contract is wrong.
"""

from __future__ import annotations

import enum
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from mine.errors import ChainError, ChainUnreachableError, ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
SCORE_SCALE = 10**6
# ISonar constants (checked against the contract by tests/mine/test_chain.py)
BPS = 10_000  # basis points of a whole (shares)
MIN_EVAL_WINDOW = 600  # seconds
MAX_EVAL_WINDOW = 30 * 86400
MAX_REWARD = 2**96 - 1
MAX_ROUND = 32  # most submissions one settle() may settle
MAX_SHARE_BPS = 3500  # most of the reward one accepted update earns (unless it alone reaches the target)
BURN_ADDRESS = "0x000000000000000000000000000000000000dEaD"
#: EIP-170: the largest runtime code a public chain accepts (anvil and ganache enforce it too)
CODE_SIZE_LIMIT = 24_576


class BountyStatus(enum.IntEnum):
    NONE = 0
    OPEN = 1
    COMPLETED = 2
    CLOSED = 3


class SubmissionStatus(enum.IntEnum):
    NONE = 0
    SUBMITTED = 1
    ACCEPTED = 2
    REJECTED = 3
    RECLAIMED = 4


@dataclass(frozen=True)
class Bounty:
    id: int
    owner: str
    token: str
    status: BountyStatus
    higher_is_better: bool
    auditable: bool
    audit_revealed: bool
    deadline: int
    eval_window: int
    stake: int
    reward: int
    escrow: int  # reward not yet paid (refunded to the owner at close)
    forfeit_pool: int  # forfeited stakes waiting for later accepted contributors
    paid: int  # rewards credited to miners (stakes excluded)
    burned: int  # forfeit pool burned at close
    initial_score: int
    target_score: int
    best_score: int
    latest_version: int
    next_eval: int  # queue head: the next submission to settle
    submissions: int
    pending: int
    last_due: int
    validation_commitment: bytes


@dataclass(frozen=True)
class Submission:
    """A submission's on-chain state; its update's CID is only in the UpdateSubmitted event."""

    bounty_id: int
    index: int
    miner: str
    base_version: int
    submitted_at: int
    status: SubmissionStatus


@dataclass(frozen=True)
class Verdict:
    """The owner's verdict on one submission of a round (ISonar.Verdict).

    share_bps > 0: accepted, its share of the round's pot in basis points (the accepted shares of a
    round sum to BPS); reward and stake vest until the bounty ends. share_bps == 0: rejected with
    `reason`; `refund` returns the stake (honest but unhelpful), otherwise it is forfeited to the
    bounty's pool, and `clawback` also burns the miner's vesting rewards of the bounty.
    """

    share_bps: int = 0
    reason: int = 0
    refund: bool = False
    clawback: bool = False

    def __post_init__(self) -> None:
        if self.clawback and (self.share_bps or self.refund):
            raise ValueError("a clawback belongs to a forfeited verdict only")

    @property
    def accepted(self) -> bool:
        return self.share_bps > 0

    def as_tuple(self) -> tuple[int, int, bool, bool]:
        return (self.share_bps, self.reason, self.refund, self.clawback)


@dataclass(frozen=True)
class Vesting:
    """What a miner has vesting in a bounty (accepted rewards and their stakes) and when it can be released.

    `releasable_after`: the time after which `release` can move it to the miner's credits (0: now).
    """

    rewards: int
    stakes: int
    releasable_after: int

    @property
    def total(self) -> int:
        return self.rewards + self.stakes


@dataclass(frozen=True)
class ModelVersion:
    bounty_id: int
    version: int
    digest: bytes
    codec: int
    score: int
    submission: int  # first submission of the round that produced it (0 for version 0)
    created_at: int


def build_dir() -> Path:
    """Where brownie writes contract artifacts (override with SONAR_BUILD_DIR)."""
    return Path(os.environ.get("SONAR_BUILD_DIR", PROJECT_ROOT / "build"))


def load_artifact(name: str) -> dict[str, Any]:
    """ABI and bytecode of a compiled contract from the build directory."""
    path = build_dir() / "contracts" / f"{name}.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"no build artifact {path}: run `make setup` (compiles the contracts)") from None


def recorded_deployment(chain_id: int) -> str | None:
    """The Sonar address `scripts/deploy.py` recorded for `chain_id`, if any."""
    path = build_dir() / "deployments" / f"sonar-{chain_id}.json"
    if not path.exists():
        return None
    return str(json.loads(path.read_text())["address"])


def recorded_deployment_block(chain_id: int, address: str) -> int:
    """The block `scripts/deploy.py` recorded for the deployment at `address` (0 if unknown): logs start there."""
    path = build_dir() / "deployments" / f"sonar-{chain_id}.json"
    if not path.exists():
        return 0
    record = json.loads(path.read_text())
    if str(record.get("address", "")).lower() != address.lower():
        return 0
    return int(record.get("block", 0))


def record_deployment(chain_id: int, address: str, block: int | None = None) -> Path:
    """Remember a Sonar deployment (and its block, where event scans start) so `mine init` can find it."""
    from mine.home import write_json_atomic

    path = build_dir() / "deployments" / f"sonar-{chain_id}.json"
    record: dict[str, Any] = {"chain_id": chain_id, "address": address}
    if block is not None:
        record["block"] = block
    write_json_atomic(path, record, mode=0o644)  # a reader (`mine init`, another process) never sees half a file
    return path


@lru_cache(maxsize=8)
def _abi(path: str, version: tuple[int, int] = (0, 0)) -> list[dict[str, Any]]:
    # A brownie artifact is megabytes (AST, source maps) and starts with its ABI: parse only that.
    with open(path, encoding="utf-8") as f:
        head = f.read(1 << 18)
    key = head.find('"abi"')
    start = head.find("[", key)
    if key > 0 and head[:key].strip() == "{" and head[key + 5:start].strip() == ":":  # {"abi": [ ... first
        try:
            abi, _ = json.JSONDecoder().raw_decode(head, start)
            if isinstance(abi, list):
                return abi
        except json.JSONDecodeError:
            pass  # an ABI longer than the head: parse the whole file
    return list(json.loads(Path(path).read_text())["abi"])


def contract_abi(name: str = "Sonar") -> list[dict[str, Any]]:
    """The ABI of a compiled contract (read once per artifact version; the rest of the artifact is skipped)."""
    path = build_dir() / "contracts" / f"{name}.json"
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"no build artifact {path}: run `make setup` (compiles the contracts)") from None
    return _abi(str(path), (stat.st_mtime_ns, stat.st_size))


# ---------------------------------------------------------------------- view results from ABI tuples


def bounty_from_tuple(bounty_id: int, t: Any) -> Bounty:
    """`getBounty`'s tuple as a `Bounty`."""
    return Bounty(
        bounty_id, t[0], t[1], BountyStatus(t[2]), t[3], t[4], t[5], t[6], t[7], t[8], t[9], t[10], t[11],
        t[12], t[13], t[14], t[15], t[16], t[17], t[18], t[19], t[20], t[21], bytes(t[22]),
    )


def submission_from_tuple(bounty_id: int, index: int, t: Any) -> Submission:
    """`getSubmission`'s tuple as a `Submission`."""
    return Submission(bounty_id, index, t[0], t[1], t[2], SubmissionStatus(t[3]))


def model_version_from_tuple(bounty_id: int, version: int, t: Any) -> ModelVersion:
    """`getModelVersion`'s tuple as a `ModelVersion`."""
    return ModelVersion(bounty_id, version, bytes(t[0]), t[1], t[2], t[3], t[4])


# ---------------------------------------------------------------------- what to do when opening fails


class SonarViews:
    """Sonar's typed views over a subclass's `_call(fn, *args)` (the web3 client and the light reader)."""

    def _call(self, fn: str, *args: Any) -> Any:
        raise NotImplementedError

    def _address(self, value: str) -> str:
        """An address argument as the transport wants it (checksummed)."""
        raise NotImplementedError

    def bounty_count(self) -> int:
        return int(self._call("bountyCount"))

    def bounty(self, bounty_id: int) -> Bounty:
        return bounty_from_tuple(bounty_id, self._call("getBounty", bounty_id))

    def submission(self, bounty_id: int, index: int) -> Submission:
        return submission_from_tuple(bounty_id, index, self._call("getSubmission", bounty_id, index))

    def model_version(self, bounty_id: int, version: int) -> ModelVersion:
        return model_version_from_tuple(bounty_id, version, self._call("getModelVersion", bounty_id, version))

    def credits(self, account: str, token: str = ZERO_ADDRESS) -> int:
        return int(self._call("credits", self._address(token), self._address(account)))

    def preview_reward(self, bounty_id: int, score: int) -> int:
        return int(self._call("previewReward", bounty_id, score))

    def vesting(self, bounty_id: int, miner: str) -> Vesting:
        rewards, stakes, after = self._call("getVesting", bounty_id, self._address(miner))
        return Vesting(int(rewards), int(stakes), int(after))


def unreachable(rpc_url: str, exc: BaseException) -> ChainUnreachableError:
    return ChainUnreachableError(
        f"no Ethereum node answers at {rpc_url} ({type(exc).__name__}); start one "
        "(`anvil`, or `make demo` which starts its own) or pass --rpc URL"
    )


def wrong_chain(rpc_url: str, chain_id: int, expected: int) -> ChainError:
    return ChainError(
        f"{rpc_url} is chain {chain_id}, but this mine is configured for chain {expected}; "
        "pass the right --rpc or run `mine init` again"
    )


def no_address(chain_id: int) -> ConfigError:
    return ConfigError(
        f"no Sonar address for chain {chain_id}: deploy with `brownie run scripts/deploy.py` "
        "or pass --sonar ADDRESS"
    )


def not_an_address(address: str) -> ConfigError:
    return ConfigError(f"{address!r} is not an Ethereum address")


def no_contract(address: str, chain_id: int) -> ChainError:
    return ChainError(
        f"no contract at {address} on chain {chain_id}: the chain was probably restarted; "
        "deploy again (`brownie run scripts/deploy.py`) and run `mine init --sonar NEW_ADDRESS`"
    )
