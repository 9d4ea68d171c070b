"""mine.views.ChainReader gives exactly what SonarClient gives, without web3.

A real anvil runs a market with every kind of event (ETH and ERC-20 bounties, accepted, rejected,
forfeited, reclaimed and skipped submissions, new model versions, a reached target, an audit reveal,
a close, withdrawals); then every Bounty/Submission/ModelVersion field, credits, block times, each
event (with and without filters) and the receipts' events are compared between the two clients,
value by value and type by type, and so are the rows `mine.overview` builds from either. The
reader's own parts are checked against the libraries web3 uses: keccak-256 and checksums against
eth_utils, the ABI codec against eth_abi, the dev-address table against eth_account.
"""

from __future__ import annotations

import dataclasses
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_abi import decode as eth_abi_decode
from eth_abi import encode as eth_abi_encode
from eth_utils import event_abi_to_log_topic, function_abi_to_4byte_selector, keccak, to_checksum_address
from web3 import Web3

from mine.amounts import token_meta
from mine.chain import BountyParams, SonarClient, Verdict, ZERO_ADDRESS, load_artifact
from mine.devnet import DEV_ADDRESSES, dev_account, dev_address, free_port
from mine.errors import ChainError, ChainUnreachableError, ConfigError, MineError
from mine.home import Config, MineHome, write_json_atomic
from mine.retry import RetryPolicy
from mine.views import ChainReader, abi_decode, abi_encode, is_address, keccak256, selector, signature
from mine.views import to_checksum_address as light_checksum
from tests.mine.fixtures_chain import bounty_params
from tests.mine.rpc_proxy import ProxyRules, rpc_proxy

FAST = RetryPolicy(retries=2, base=0.01)


# ---------------------------------------------------------------------- the reader's own parts


def test_keccak256_is_ethereums_keccak() -> None:
    rng = random.Random(0)
    for n in [*range(0, 140), 271, 272, 273, 1000, 4096]:  # around the 136-byte rate, and several blocks
        data = bytes(rng.getrandbits(8) for _ in range(n))
        assert keccak256(data) == keccak(data), n
    assert keccak256(b"").hex() == "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"


def test_checksums_and_address_checks_match_eth_utils() -> None:
    for _ in range(100):
        raw = "0x" + os.urandom(20).hex()
        assert light_checksum(raw) == to_checksum_address(raw)
        assert light_checksum(raw.upper().replace("0X", "0x")) == to_checksum_address(raw)
    checksummed = to_checksum_address("0x" + "ab" * 20)
    broken = checksummed[:2] + checksummed[2:].swapcase()
    for value in (checksummed, checksummed.lower(), checksummed[2:], broken, "0x1234", "0x" + "zz" * 20, 5, None):
        assert is_address(value) == Web3.is_address(value), value
    with pytest.raises(ValueError):
        light_checksum("0x1234")


def test_dev_address_table_matches_the_derived_keys() -> None:
    for index, address in enumerate(DEV_ADDRESSES):
        assert dev_account(index).address == address, index
    assert dev_address(len(DEV_ADDRESSES)) == dev_account(len(DEV_ADDRESSES)).address  # past the table: derived


def _random_value(rng: random.Random, t: str) -> Any:
    if t.endswith("[]"):
        return [_random_value(rng, t[:-2]) for _ in range(rng.randrange(4))]
    if t.endswith("]"):
        inner, n = t[:-1].rsplit("[", 1)
        return [_random_value(rng, inner) for _ in range(int(n))]
    if t.startswith("("):
        return tuple(_random_value(rng, c) for c in _split(t[1:-1]))
    if t.startswith("uint"):
        return rng.getrandbits(int(t[4:] or 256))
    if t.startswith("int"):
        bits = int(t[3:] or 256)
        return rng.getrandbits(bits) - (1 << (bits - 1))
    if t == "address":
        return to_checksum_address("0x" + rng.randbytes(20).hex())
    if t == "bool":
        return rng.random() < 0.5
    if t == "string":
        return "".join(rng.choice("aé€😀 z") for _ in range(rng.randrange(70)))
    if t == "bytes":
        return rng.randbytes(rng.randrange(70))
    return rng.randbytes(int(t[5:]))  # bytesN


def _split(inner: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(inner):
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            parts.append(inner[start:i])
            start = i + 1
    return [*parts, inner[start:]]


def _param(t: str) -> dict[str, Any]:
    if t.startswith("("):
        tail = t[t.rindex(")") + 1:]
        return {"type": "tuple" + tail, "components": [_param(c) for c in _split(t[1:t.rindex(")")])]}
    return {"type": t}


def _lists_to_tuples(value: Any) -> Any:
    return tuple(_lists_to_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


@pytest.mark.parametrize("types", [
    ["uint256", "uint8", "uint40", "uint96", "int256", "int8", "address", "bool", "bytes32", "bytes4"],
    ["string", "bytes", "uint256", "string"],
    ["(address,address,uint8,bool,bool,bool,uint40,uint32,uint96,uint128,uint64,bytes32)"],  # like Bounty
    ["(uint256,string,bytes)", "uint256[]", "string[]", "(bool,uint16)[2]", "uint8[3]", "(string,uint8)[]"],
])
def test_abi_decode_matches_eth_abi(types: list[str]) -> None:
    rng = random.Random(len(types))
    params = [_param(t) for t in types]
    for _ in range(20):
        values = [_random_value(rng, t) for t in types]
        data = eth_abi_encode(types, values)
        assert _lists_to_tuples(abi_decode(params, data)) == _lists_to_tuples(values)
        assert abi_decode(params, data, checksum=False) == [
            _lists_to_tuples(v) for v in eth_abi_decode(types, data)]
        if all(t in ("uint256", "uint8", "uint40", "uint96", "int256", "int8", "address", "bool", "bytes32", "bytes4")
               for t in types):
            assert abi_encode(params, values) == data
    with pytest.raises(ValueError):
        abi_decode([{"type": "uint256"}], b"\x00" * 31)  # short
    with pytest.raises(ValueError):
        abi_decode([{"type": "uint8"}], (256).to_bytes(32, "big"))  # dirty padding
    with pytest.raises(ValueError):
        abi_decode([{"type": "bool"}], (2).to_bytes(32, "big"))


def test_selectors_and_topics_match_eth_utils() -> None:
    abi = load_artifact("Sonar")["abi"]
    for item in abi:
        if item["type"] in ("function", "error"):
            assert selector(item) == function_abi_to_4byte_selector(item), item["name"]
        elif item["type"] == "event":
            assert keccak256(signature(item).encode()) == event_abi_to_log_topic(item), item["name"]


# ---------------------------------------------------------------------- a market with every event


@dataclasses.dataclass
class Market:
    sonar: SonarClient
    reader: ChainReader
    token: str
    bounties: list[int]
    miners: list[str]
    txs: list[bytes]


def _params(sonar: SonarClient, **overrides: Any) -> BountyParams:
    return bounty_params(sonar, **{"model_codec": 0x70, **overrides})


def _deploy_token(sonar: SonarClient) -> str:
    artifact = load_artifact("TestToken")
    w3, owner = sonar.w3, dev_account(0)
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])

    def send(tx: dict[str, Any]) -> Any:
        signed = owner.sign_transaction(tx)
        return w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(signed.raw_transaction))

    nonce = lambda: w3.eth.get_transaction_count(owner.address, "pending")  # noqa: E731
    address = send(factory.constructor().build_transaction({"from": owner.address, "nonce": nonce(), "gasPrice": 0}))[
        "contractAddress"]
    token = w3.eth.contract(address=address, abi=artifact["abi"])
    for who in (owner.address, *(dev_address(i) for i in (1, 2, 3))):
        send(token.functions.mint(who, 10**21).build_transaction({"from": owner.address, "nonce": nonce(), "gasPrice": 0}))
    sonar.reset_nonce()
    return str(address)


@pytest.fixture(scope="module")
def market(sonar: SonarClient, rpc_url: str) -> Iterator[Market]:
    snap = sonar.w3.provider.make_request("evm_snapshot", [])["result"]
    w3 = sonar.w3
    later = lambda seconds: (w3.provider.make_request("evm_increaseTime", [seconds]),  # noqa: E731
                             w3.provider.make_request("evm_mine", []))
    token = _deploy_token(sonar)
    m1, m2, m3 = (sonar.with_account(dev_account(i)) for i in (1, 2, 3))
    txs: list[bytes] = []
    # 1: ETH, auditable: one accepted + one refunded rejection, then a forfeited one; revealed and closed
    b1, _ = sonar.post_bounty(_params(sonar, auditable=True, deadline=sonar.now() + 1800))
    m1.submit(b1, b"\x01" * 32, 0x55, 0, stake=10**15)
    m2.submit(b1, b"\x02" * 32, 0x55, 0, stake=10**15)
    m3.submit(b1, b"\x03" * 32, 0x70, 0, stake=10**15)
    w3.provider.make_request("anvil_mine", [5, 0])  # spread the logs over blocks
    txs.append(bytes(sonar.settle(b1, [Verdict(share_bps=10_000), Verdict(reason=2, refund=True)],
                                  600_000, b"\x09" * 32, 0x70)["transactionHash"]))
    txs.append(bytes(sonar.settle(b1, [Verdict(reason=3)])["transactionHash"]))
    m1.submit(b1, b"\x04" * 32, 0x55, 1, stake=10**15)
    txs.append(bytes(sonar.settle(b1, [Verdict(share_bps=10_000)], 650_000, b"\x0a" * 32, 0x55)["transactionHash"]))
    sonar.reveal_audit(b1, b"\x11" * 32, 0x55)
    # 2: ERC-20: a reclaimed stake and a skipped expired one
    b2, _ = sonar.post_bounty(_params(sonar, token=token, reward=5 * 10**18, stake=10**16))
    m1.submit(b2, b"\x05" * 32, 0x55, 0, stake=10**16, token=token)
    m2.submit(b2, b"\x06" * 32, 0x55, 0, stake=10**16, token=token)
    # 3: reaches its target (completed), lower is better; m3's reward is clawed back by its later forfeit
    b3, _ = sonar.post_bounty(_params(sonar, initial_score=500_000, target_score=100_000, higher_is_better=False))
    m3.submit(b3, b"\x0c" * 32, 0x55, 0, stake=10**15)
    txs.append(bytes(sonar.settle(b3, [Verdict(share_bps=10_000)], 400_000, b"\x0d" * 32, 0x55)["transactionHash"]))
    m3.submit(b3, b"\x0e" * 32, 0x55, 1, stake=10**15)
    m2.submit(b3, b"\x07" * 32, 0x55, 1, stake=10**15)
    txs.append(bytes(sonar.settle(b3, [Verdict(reason=9, clawback=True), Verdict(share_bps=10_000)], 50_000,
                                  b"\x0b" * 32, 0x55)["transactionHash"]))
    later(1801)
    m1.reclaim_stake(b2, 0)
    sonar.skip(b2)  # the next one expired: its stake goes back, and it is skipped
    sonar.close(b1)
    m1.release(b1)  # the accepted rewards and stakes vested until the close
    m1.withdraw()
    m1.withdraw(token)
    # 4: still open
    b4, _ = sonar.post_bounty(_params(sonar))
    reader = ChainReader.open(rpc_url, sonar.address, start_block=sonar.start_block)
    yield Market(sonar, reader, token, [b1, b2, b3, b4], [m.account.address for m in (m1, m2, m3)], txs)
    w3.provider.make_request("evm_revert", [snap])
    sonar.reset_nonce()


def _plain(value: Any) -> Any:
    """web3's AttributeDicts and HexBytes as plain dicts and bytes, each leaf tagged with its type."""
    if isinstance(value, dict) or hasattr(value, "items") and not isinstance(value, (bytes, str)):
        return [(k, _plain(v)) for k, v in value.items()]  # key order too
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bytes):
        return ("bytes", bytes(value))
    return (type(value).__name__, value)


def _fields(obj: Any) -> list[tuple[str, str, Any]]:
    return [(f.name, type(getattr(obj, f.name)).__name__, getattr(obj, f.name)) for f in dataclasses.fields(obj)]


def test_every_view_field_is_identical(market: Market) -> None:
    sonar, reader = market.sonar, market.reader
    assert reader.address == sonar.address and reader.start_block == sonar.start_block
    assert reader.bounty_count() == sonar.bounty_count() == len(market.bounties)
    seen_statuses = set()
    for bid in market.bounties:
        b = sonar.bounty(bid)
        assert _fields(reader.bounty(bid)) == _fields(b)
        seen_statuses.add(b.status.name)
        for index in range(b.submissions):
            assert _fields(reader.submission(bid, index)) == _fields(sonar.submission(bid, index))
        for version in range(b.latest_version + 1):
            assert _fields(reader.model_version(bid, version)) == _fields(sonar.model_version(bid, version))
        assert reader.preview_reward(bid, 700_000) == sonar.preview_reward(bid, 700_000)
        for miner in market.miners:
            assert reader.vesting(bid, miner) == sonar.vesting(bid, miner)
    # m2's reward in the completed bounty 3 vests, releasable now (nothing pending, no submissions taken)
    vest = reader.vesting(market.bounties[2], market.miners[1])
    assert vest.rewards > 0 and vest.stakes == 10**15 and vest.releasable_after == 0
    assert seen_statuses == {"OPEN", "COMPLETED", "CLOSED"}
    for who in [*market.miners, dev_address(0), sonar.address]:
        for token in (ZERO_ADDRESS, market.token):
            assert reader.credits(who, token) == sonar.credits(who, token)
            assert reader.credits(who.lower(), token.lower()) == sonar.credits(who, token)
    assert any(reader.credits(who, market.token) for who in market.miners)
    assert reader.now() == sonar.now()
    for block in (0, 1, sonar.start_block, int(sonar.w3.eth.block_number)):
        assert reader.block_time(block) == sonar.block_time(block)


EVENTS = ["AuditRevealed", "BountyClosed", "BountyPosted", "ModelVersionRecorded", "Released", "RewardsClawedBack",
          "RoundSettled", "Skipped", "StakeReclaimed", "TargetReached", "UpdateAccepted", "UpdateRejected",
          "UpdateSubmitted", "Withdrawn"]


def test_every_event_is_identical(market: Market) -> None:
    sonar, reader = market.sonar, market.reader
    assert sorted(i["name"] for i in sonar.contract.abi if i["type"] == "event") == EVENTS
    for name in EVENTS:
        full = sonar.events(name)
        assert full, f"the market emitted no {name}"
        assert _plain(reader.events(name)) == _plain(full), name


@pytest.mark.parametrize("name, filters", [
    ("UpdateSubmitted", {"bountyId": 1}),
    ("UpdateSubmitted", {"miner": "m1"}),
    ("UpdateSubmitted", {"bountyId": 1, "miner": "m2"}),
    ("UpdateSubmitted", {"index": 1}),
    ("UpdateAccepted", {"miner": "m1"}),
    ("UpdateRejected", {"miner": "m2"}),
    ("UpdateRejected", {"bountyId": 2}),  # none
    ("Withdrawn", {"account": "m1", "token": ZERO_ADDRESS}),
    ("Withdrawn", {"token": "token"}),
    ("StakeReclaimed", {"miner": "m2"}),
    ("ModelVersionRecorded", {"bountyId": 1, "version": 2}),
    ("BountyPosted", {"owner": "owner", "token": "token"}),
])
def test_filtered_events_are_identical(market: Market, name: str, filters: dict[str, Any]) -> None:
    names = {"m1": market.miners[0], "m2": market.miners[1], "owner": dev_address(0), "token": market.token}
    filters = {k: names.get(v, v) if isinstance(v, str) else v for k, v in filters.items()}
    full = market.sonar.events(name, **filters)
    light = market.reader.events(name, **filters)
    assert _plain(light) == _plain(full)
    assert _plain(market.reader.events(name, **{k: v.lower() if isinstance(v, str) else v
                                                 for k, v in filters.items()})) == _plain(full)


def test_block_ranges_and_windows_give_the_same_events(market: Market) -> None:
    sonar, reader = market.sonar, market.reader
    head = int(sonar.w3.eth.block_number)
    middle = (sonar.start_block + head) // 2
    for lo, hi in ((sonar.start_block, middle), (middle + 1, head), (0, head)):
        assert _plain(reader.events("UpdateSubmitted", from_block=lo, to_block=hi)) == \
            _plain(sonar.events("UpdateSubmitted", from_block=lo, to_block=hi))
    narrow = ChainReader(reader.rpc, reader.address, start_block=reader.start_block, log_range=3)
    assert _plain(narrow.events("UpdateSubmitted")) == _plain(sonar.events("UpdateSubmitted"))


def test_receipt_events_are_identical(market: Market) -> None:
    for tx in market.txs:
        for name in ("RoundSettled", "UpdateAccepted", "UpdateRejected", "ModelVersionRecorded", "TargetReached",
                     "Withdrawn"):
            assert _plain(market.reader.tx_events(tx, name)) == _plain(market.sonar.tx_events(tx, name))
            assert _plain(market.reader.tx_events("0x" + tx.hex(), name)) == _plain(market.sonar.tx_events(tx, name))
    with pytest.raises(ChainError, match="no receipt"):
        market.reader.tx_events(b"\x00" * 32, "RoundSettled")


def test_token_meta_and_errors_are_the_same(market: Market) -> None:
    sonar, reader = market.sonar, market.reader
    for token in (ZERO_ADDRESS, market.token, market.token.lower()):
        assert reader.token_meta(token) == sonar.token_meta(token) == token_meta(sonar.w3, token)
    with pytest.raises(ChainError, match="does not answer decimals"):
        reader.token_meta(sonar.address)
    with pytest.raises(ChainError) as full:
        sonar.bounty(999)
    with pytest.raises(ChainError) as light:
        reader.bounty(999)
    assert str(light.value) == str(full.value) == "getBounty: SonarUnknownBounty(bountyId=999)"
    with pytest.raises(ConfigError, match="not an Ethereum address"):
        reader.credits("0x1234")


def test_opening_fails_with_the_same_actionable_errors(market: Market, rpc_url: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import mine.chain
    import mine.views

    address = market.sonar.address
    for module in (mine.chain, mine.views):  # whatever deployment this checkout recorded for anvil's chain id
        monkeypatch.setattr(module, "recorded_deployment", lambda chain_id: None)
    for kwargs in ({"expected_chain_id": 1}, {}):
        for target in (address, "0x000000000000000000000000000000000000dEaD", "not-an-address", None):
            if not kwargs and target in (address, None):
                continue
            with pytest.raises(MineError) as full:
                SonarClient.open(rpc_url, target, **kwargs)
            with pytest.raises(MineError) as light:
                ChainReader.open(rpc_url, target, **kwargs)
            assert (type(light.value), str(light.value)) == (type(full.value), str(full.value))
    with pytest.raises(ConfigError, match="not an Ethereum address"):
        ChainReader.open(rpc_url, "not-an-address")
    with pytest.raises(ConfigError, match="no Sonar address for chain 31337"):
        ChainReader.open(rpc_url, None)  # (monkeypatched: no deployment recorded)
    with pytest.raises(ChainUnreachableError, match="no Ethereum node answers"):
        ChainReader.open(f"http://127.0.0.1:{free_port()}", address, retry=FAST)


def test_rate_limits_outages_and_refused_ranges_are_handled(market: Market, rpc_url: str) -> None:
    rules = ProxyRules(http_429=3, rpc_limited=2)
    with rpc_proxy(rpc_url, rules) as url:
        reader = ChainReader.open(url, market.sonar.address, retry=RetryPolicy(base=0.01))
        assert reader.bounty_count() == market.sonar.bounty_count()
    assert rules.refused == {"http_429": 3, "rpc_limited": 2} and reader.rpc.retried == 5
    with rpc_proxy(rpc_url, ProxyRules(http_429=100)) as url, pytest.raises(ChainUnreachableError, match="no Ethereum node"):
        ChainReader.open(url, market.sonar.address, retry=FAST)
    rules = ProxyRules(max_log_range=4)
    with rpc_proxy(rpc_url, rules) as url:
        reader = ChainReader.open(url, market.sonar.address, start_block=market.sonar.start_block)
        assert _plain(reader.events("UpdateSubmitted")) == _plain(market.sonar.events("UpdateSubmitted"))
    assert rules.refused["eth_getLogs"] >= 1  # refused the wide window; the reader narrowed it


# ---------------------------------------------------------------------- what mine.overview builds


@pytest.fixture
def home(tmp_path: Path, market: Market) -> MineHome:
    home = MineHome(tmp_path / "mine")
    home.init(Config(sonar=market.sonar.address))
    miner = market.miners[0]
    entries = []
    for log in market.sonar.events("UpdateSubmitted", miner=miner):
        args = log["args"]
        entries.append({"bounty": args["bountyId"], "update": f"u{args['index']}", "sealed": "s", "cid": f"cid{args['index']}",
                        "digest": bytes(args["digest"]).hex(), "codec": args["codec"], "base_version": args["baseVersion"],
                        "miner": miner, "state": "submitted", "index": args["index"]})
    entries.append({"bounty": 4, "update": "u-prepared", "sealed": "s", "cid": "cid-p", "digest": "00" * 32, "codec": 0x55,
                    "base_version": 0, "miner": miner, "state": "abandoned", "index": None})
    write_json_atomic(home.root / "journal.json", entries)
    return home


def test_overview_rows_are_identical(market: Market, home: MineHome) -> None:
    from mine.overview import earnings, list_bounties, my_submissions, withdrawn
    from mine.store import open_store

    store = open_store("embedded", home.root)
    miner = market.miners[0]
    for show_all in (False, True):
        assert list_bounties(market.reader, store, home, show_all=show_all) == \
            list_bounties(market.sonar, store, home, show_all=show_all)
    light = my_submissions(market.reader, home, miner)
    assert light == my_submissions(market.sonar.with_account(dev_account(1)), home)
    assert {row.state for row in light} >= {"accepted", "reclaimed", "abandoned"}
    assert [row.why for row in light] == [row.why for row in my_submissions(market.sonar, home, miner)]
    assert earnings(market.reader, miner) == earnings(market.sonar, miner)
    assert withdrawn(market.reader, miner) == withdrawn(market.sonar, miner) > 0


def test_one_kept_alive_connection_reopened_when_the_server_dropped_it(market: Market, rpc_url: str) -> None:
    import socket

    reader = ChainReader.open(rpc_url, market.sonar.address, retry=FAST)
    conn = reader.rpc._conn
    assert conn is not None  # kept for the next request: one TCP (and TLS) handshake per command
    reader.bounty_count()
    assert reader.rpc._conn is conn
    conn.sock.shutdown(socket.SHUT_RDWR)  # as a server closing an idle connection
    assert reader.bounty_count() == market.sonar.bounty_count()
    assert reader.rpc.retried == 0 and reader.rpc._conn is not conn
    reader.rpc.close()


def test_a_proxy_named_by_the_environment_is_used(market: Market, rpc_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    rules = ProxyRules()
    with rpc_proxy(rpc_url, rules) as proxy:  # forwards whatever it is sent: enough of an HTTP proxy here
        for name in ("no_proxy", "NO_PROXY", "http_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", proxy)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # the proxy itself reaches anvil directly
        reader = ChainReader.open("http://sonar-node.invalid:8545", market.sonar.address, retry=FAST)
        assert reader.bounty_count() == market.sonar.bounty_count()
    assert rules.seen["eth_chainId"] == 1 and rules.seen["eth_call"] == 1


def test_a_revert_says_what_to_do_about_it() -> None:
    """The reverts a command meets in normal use name the next step (encoded with eth_abi, as a node
    returns them); an error without a hint is decoded as it is."""
    from mine.contract import contract_abi
    from mine.views import REVERT_HINTS, ErrorDecoder

    abi = contract_abi("Sonar")
    errors = {item["name"]: item for item in abi if item.get("type") == "error"}
    assert set(REVERT_HINTS) <= set(errors)  # every hint names an error the contract has

    def revert(name: str, *values: Any) -> bytes:
        types = [i["type"] for i in errors[name]["inputs"]]
        return keccak(text=f"{name}({','.join(types)})")[:4] + eth_abi_encode(types, list(values))

    decoder = ErrorDecoder(abi)
    assert decoder.describe(revert("SonarAuditNotRevealed", 4)) == (
        "SonarAuditNotRevealed(bountyId=4): the bounty is auditable: publish its audit bundle first "
        "(`mine bounty reveal 4`)")
    assert decoder.describe(revert("SonarDeadlineNotPassed", 7, 1_800_000_000)).endswith(
        "bounty 7 runs until 2027-01-15 08:00:00 UTC; close it after that")
    assert decoder.describe(revert("SonarNothingToSkip", 3)) == "SonarNothingToSkip(bountyId=3)"
