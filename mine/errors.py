"""One exception tree for the whole client. Every message says what to do next."""

from __future__ import annotations

import enum


class ExitStatus(enum.IntEnum):
    """Process exit codes of the `mine` command, one per failure kind."""

    OK = 0
    ERROR = 1
    USAGE = 2
    CHAIN_UNREACHABLE = 3
    CHAIN = 4
    STORE = 5
    VAULT = 6
    VALIDATION = 7
    CONFIG = 8
    FUNDS = 9
    INTERRUPTED = 130


class MineError(Exception):
    """Root of every error the client raises on purpose."""

    exit_status: ExitStatus = ExitStatus.ERROR


class ConfigError(MineError):
    """The mine home, config file or an account is missing or wrong."""

    exit_status = ExitStatus.CONFIG


class ChainError(MineError):
    """A contract call or transaction failed, or the chain state forbids the action."""

    exit_status = ExitStatus.CHAIN


class ChainUnreachableError(ChainError, ConnectionError):
    """The RPC endpoint does not answer."""

    exit_status = ExitStatus.CHAIN_UNREACHABLE


class InsufficientFundsError(ChainError):
    """The account cannot pay for the transaction (value plus gas)."""

    exit_status = ExitStatus.FUNDS


class StoreError(MineError, OSError):
    """The content store is unreachable, or content is missing or does not match its CID."""

    exit_status = ExitStatus.STORE


class ContentNotFoundError(StoreError):
    """No block for a CID could be found in time."""


class IntegrityError(StoreError):
    """Bytes do not hash to the CID they were fetched by."""


class VaultError(MineError):
    """A dataset in the vault is missing, changed since it was added, or does not fit a model."""

    exit_status = ExitStatus.VAULT


class ValidationError(MineError, ValueError):
    """A manifest, weights file or update failed validation (unknown layer, shape, NaN, size)."""

    exit_status = ExitStatus.VALIDATION
