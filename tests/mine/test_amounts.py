"""mine.amounts: amounts in the bounty currency's decimals (ETH and a real ERC-20 on anvil)."""

from __future__ import annotations

import pytest

from mine.amounts import format_amount, parse_units, token_meta
from mine.chain import ZERO_ADDRESS, SonarClient, load_artifact
from mine.devnet import dev_account
from mine.errors import ChainError, ValidationError


def test_format_amount_uses_the_decimals() -> None:
    assert format_amount(15 * 10**16, 18, "ETH") == "0.15 ETH"
    assert format_amount(10 * 10**18, 18, "ETH") == "10 ETH"
    assert format_amount(1_234_567, 6, "USDC") == "1.234567 USDC"  # not 1.2e-12 as with 18 decimals
    assert format_amount(0, 18, "ETH") == "0 ETH"
    assert format_amount(-5 * 10**15, 18) == "-0.005"


def test_parse_units_is_exact() -> None:
    assert parse_units("0.1", 18) == 10**17
    assert parse_units("2", 6) == 2_000_000
    with pytest.raises(ValidationError):
        parse_units("0.0000001", 6)  # finer than the token's decimals
    with pytest.raises(ValidationError):
        parse_units("lots", 18)


def test_token_meta_reads_decimals_and_symbol_from_the_chain(sonar: SonarClient) -> None:
    assert token_meta(sonar.w3, ZERO_ADDRESS) == (18, "ETH")
    artifact = load_artifact("TestToken")
    w3, owner = sonar.w3, dev_account(0)
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    tx = factory.constructor().build_transaction(
        {"from": owner.address, "nonce": w3.eth.get_transaction_count(owner.address, "pending"), "gasPrice": w3.eth.gas_price})
    receipt = w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(owner.sign_transaction(tx).raw_transaction))
    sonar.reset_nonce()
    assert token_meta(w3, receipt["contractAddress"]) == (18, "STT")
    with pytest.raises(ChainError, match="decimals"):
        token_meta(w3, sonar.address)  # not an ERC-20
