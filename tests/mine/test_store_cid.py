"""CID computation and encodings, without any node: known vectors, DAG shape, chain round trips, CAR headers."""

from __future__ import annotations

import hashlib
import io
import random
from pathlib import Path

import pytest

from mine.errors import StoreError
from mine.store import CHUNK_SIZE, CID, InvalidCIDError, cid_from_chain, cid_to_chain, compute_cid, compute_cid_file
from mine.store.car import CarFormatError, decode_header, encode_header, read_car
from mine.store.cid import DAG_PB, RAW, b58encode, decode_varint, encode_varint
from mine.store.unixfs import DagBuilder, decode_dag_pb, iter_chunks, rechunk

HELLO = b"hello world\n"


def _bytes(size: int, seed: int = 7) -> bytes:
    return random.Random(seed).randbytes(size)


def _blocks(data: bytes, cid_version: int) -> tuple[CID, dict[CID, bytes]]:
    """Build the DAG of ``data`` and capture every block."""
    blocks: dict[CID, bytes] = {}
    builder = DagBuilder(cid_version=cid_version, sink=lambda cid, parts: blocks.__setitem__(cid, b"".join(parts)))
    for chunk in iter_chunks(data):
        builder.add_chunk(chunk)
    return builder.finish().cid, blocks


@pytest.mark.parametrize(
    ("data", "version", "expected"),
    [
        (HELLO, 0, "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"),
        (b"", 0, "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"),
        (HELLO, 1, "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"),
        (b"", 1, "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"),
    ],
)
def test_known_vectors(data: bytes, version: int, expected: str) -> None:
    assert compute_cid(data, cid_version=version) == expected


def test_v0_leaf_is_byte_exact_unixfs_file() -> None:
    root, blocks = _blocks(HELLO, 0)
    assert blocks[root] == b"\x0a\x12\x08\x02\x12\x0c" + HELLO + b"\x18\x0c"
    _, empty = _blocks(b"", 0)
    assert list(empty.values()) == [b"\x0a\x04\x08\x02\x18\x00"]


def test_v1_single_chunk_is_the_raw_block() -> None:
    data = _bytes(CHUNK_SIZE)
    cid = CID.parse(compute_cid(data, cid_version=1))
    assert (cid.version, cid.codec, cid.digest) == (1, RAW, hashlib.sha256(data).digest())
    assert str(cid).startswith("bafkrei")


@pytest.mark.parametrize("version", [0, 1])
def test_two_chunks_root_layout(version: int) -> None:
    data = _bytes(CHUNK_SIZE + 1)
    root, blocks = _blocks(data, version)
    node = decode_dag_pb(blocks[root])
    assert root.codec == DAG_PB and root.version == version
    assert node.data == b"" and node.filesize == CHUNK_SIZE + 1 and node.blocksizes == (CHUNK_SIZE, 1)
    assert [blocks[link] if link.codec == RAW else decode_dag_pb(blocks[link]).data for link in node.links] == [
        data[:CHUNK_SIZE], data[CHUNK_SIZE:]]
    # go-merkledag order: Links (field 2) first, Data (field 1) last; PBLink Name present and empty
    raw = blocks[root]
    assert raw[0] == 0x12 and b"\x12\x00\x18" in raw
    assert raw.rindex(b"\x0a") > raw.rindex(node.links[-1].to_bytes())


def test_tree_gains_a_level_after_174_chunks() -> None:
    full = b"\x01" * (174 * CHUNK_SIZE)  # identical chunks: few distinct blocks, fast
    root, blocks = _blocks(full, 0)
    assert len(decode_dag_pb(blocks[root]).links) == 174
    root, blocks = _blocks(full + b"\x02", 0)
    top = decode_dag_pb(blocks[root])
    assert len(top.links) == 2 and top.filesize == 174 * CHUNK_SIZE + 1
    first, second = (decode_dag_pb(blocks[link]) for link in top.links)
    assert len(first.links) == 174 and len(second.links) == 1  # the lone last leaf still gets a parent
    assert top.blocksizes == (174 * CHUNK_SIZE, 1)


def test_parallel_and_streaming_hashing_agree(tmp_path: Path) -> None:
    data = _bytes(9 * CHUNK_SIZE + 123)
    path = tmp_path / "blob"
    path.write_bytes(data)
    for version in (0, 1):
        serial = compute_cid(data, cid_version=version, workers=1)
        assert compute_cid(data, cid_version=version, workers=2) == serial
        assert compute_cid_file(path, cid_version=version) == serial
        pieces = [data[i:i + 1000] for i in range(0, len(data), 1000)]
        assert b"".join(rechunk(pieces)) == data
        assert all(len(c) == CHUNK_SIZE for c in list(rechunk(pieces))[:-1])


@pytest.mark.parametrize("text", [
    "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o",
    "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4",
    "bafybeig3kbvzrpgjra3rgg322m7v2qqteoykqw256cqyrnktlzgf6erype",
])
def test_chain_round_trip(text: str) -> None:
    digest, codec = cid_to_chain(text)
    assert len(digest) == 32 and 0 <= codec <= 0xFFFF
    assert codec == (0 if text.startswith("Qm") else CID.parse(text).codec)
    assert cid_from_chain(digest, codec) == text


def test_chain_codecs_distinguish_v0_from_v1_dag_pb() -> None:
    digest, codec = cid_to_chain("QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o")
    assert codec == 0
    v1 = cid_from_chain(digest, DAG_PB)
    assert v1.startswith("bafybei") and cid_to_chain(v1) == (digest, DAG_PB)
    assert cid_from_chain(digest, RAW).startswith("bafkrei")


def test_base58_v1_input_is_normalised_to_base32() -> None:
    v1 = CID.parse("bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4")
    assert CID.parse("z" + b58encode(v1.to_bytes())) == v1
    assert CID.parse("zb2rhi36Gc9GJWijLEL6zW45MBux5FcFv5gJmjXA7VAMozEXY").encode() == v1.encode()


def test_non_sha256_and_garbage_are_rejected() -> None:
    sha512_cid = "b" + __import__("base64").b32encode(b"\x01\x55\x13\x40" + b"\0" * 64).decode().rstrip("=").lower()
    for bad in [sha512_cid, "", "hello", "Qm" + "1" * 44, "f0155"]:
        with pytest.raises(InvalidCIDError):
            cid_to_chain(bad)
    with pytest.raises(InvalidCIDError) as info:
        cid_to_chain(sha512_cid)
    assert isinstance(info.value, StoreError) and isinstance(info.value, ValueError)
    assert "sha2-256" in str(info.value)
    with pytest.raises(InvalidCIDError):
        cid_from_chain(b"\0" * 31, 0)
    with pytest.raises(InvalidCIDError):
        cid_from_chain(b"\0" * 32, 0x10000)


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 262144, 2**32, 2**63 - 1])
def test_varint_round_trip(value: int) -> None:
    encoded = encode_varint(value)
    assert decode_varint(encoded) == (value, len(encoded))


def test_car_header_round_trip_and_errors() -> None:
    roots = [CID.parse("QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"),
             CID.parse("bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4")]
    header = encode_header(roots[:1])
    assert header[:8] == b"\xa2eroots\x81"  # map(2) "roots" array(1)
    assert header[8:13] == b"\xd8\x2a\x58\x23\x00"  # tag 42, bytes(35), identity multibase prefix
    assert header.endswith(b"gversion\x01")
    assert decode_header(encode_header(roots)) == roots
    with pytest.raises(CarFormatError):
        read_car(io.BytesIO(b"\x05hello"))
    stream = io.BytesIO(encode_varint(len(header)) + header + encode_varint(40) + roots[0].to_bytes())
    _, blocks = read_car(stream)
    with pytest.raises(CarFormatError):
        list(blocks)
