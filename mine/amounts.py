"""Amounts in a bounty's currency: the token's decimals (ERC-20 ``decimals()``, 18 for ETH) and formatting."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import TYPE_CHECKING

from mine.errors import ChainError, ValidationError

if TYPE_CHECKING:  # web3 is imported where a token is asked over web3 (`mine.views` reads without it)
    from web3 import Web3

ETH_DECIMALS = 18
ZERO = "0x0000000000000000000000000000000000000000"
_ERC20_META = [
    {"type": "function", "name": "decimals", "stateMutability": "view", "inputs": [],
     "outputs": [{"name": "", "type": "uint8"}]},
    {"type": "function", "name": "symbol", "stateMutability": "view", "inputs": [],
     "outputs": [{"name": "", "type": "string"}]},
]


def is_eth(token: str) -> bool:
    return int(token, 16) == 0


@lru_cache(maxsize=256)
def _token_meta(w3: Web3, token: str) -> tuple[int, str]:
    from web3 import Web3
    from web3.exceptions import Web3Exception

    contract = w3.eth.contract(address=Web3.to_checksum_address(token), abi=_ERC20_META)
    try:
        decimals = int(contract.functions.decimals().call())
    except (OSError, Web3Exception, ValueError) as exc:
        raise ChainError(f"token {token} does not answer decimals() ({type(exc).__name__}); is it an ERC-20?") from None
    try:
        symbol = str(contract.functions.symbol().call())[:12] or token[:10]
    except (OSError, Web3Exception, ValueError):
        symbol = token[:10]
    return decimals, symbol


def token_meta(w3: Web3, token: str) -> tuple[int, str]:
    """``(decimals, symbol)`` of the bounty currency: ``(18, "ETH")`` for ETH, else the ERC-20's."""
    if is_eth(token):
        return ETH_DECIMALS, "ETH"
    from web3 import Web3

    return _token_meta(w3, Web3.to_checksum_address(token))


def format_amount(units: int, decimals: int, symbol: str = "", *, digits: int = 6) -> str:
    """``units`` of the smallest denomination as a decimal amount: ``format_amount(15 * 10**16, 18, "ETH")`` -> ``0.15 ETH``."""
    value = Decimal(int(units)).scaleb(-int(decimals))
    text = format(round(value, digits), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return f"{text} {symbol}".strip()


def parse_units(text: str, decimals: int) -> int:
    """A decimal amount in whole tokens (``"0.1"``) as smallest units; ``ValidationError`` if not exact."""
    try:
        value = Decimal(str(text).strip()).scaleb(int(decimals))
    except InvalidOperation:
        raise ValidationError(f"{text!r} is not a decimal amount") from None
    if value < 0 or value != value.to_integral_value():
        raise ValidationError(f"{text!r} is not a non-negative amount with at most {decimals} decimals")
    return int(value)
