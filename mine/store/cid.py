"""Content identifiers (CIDs) restricted to what the project uses: sha2-256 multihashes.

A CID is stored on chain as ``(digest: bytes32, codec: uint16)``:

* ``codec == 0`` means CIDv0, the string ``base58btc(0x12 0x20 ‖ digest)`` (``Qm…``);
* ``codec > 0`` means CIDv1, the string ``"b" + base32lower(0x01 ‖ varint(codec) ‖ 0x12 0x20 ‖ digest)``.

Only the sha2-256 multihash (code 0x12, length 32) is accepted; anything else raises
:class:`InvalidCIDError`, which is both a :class:`~mine.errors.StoreError` and a ``ValueError``.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from mine.errors import StoreError

__all__ = [
    "CID",
    "DAG_PB",
    "RAW",
    "SHA2_256",
    "InvalidCIDError",
    "cid_from_chain",
    "cid_to_chain",
    "decode_varint",
    "encode_varint",
]

DAG_PB = 0x70
"""Multicodec of dag-pb (UnixFS) blocks."""
RAW = 0x55
"""Multicodec of raw leaf blocks."""
DAG_CBOR = 0x71
"""Multicodec of dag-cbor blocks (only recognised, never produced)."""
SHA2_256 = 0x12
"""Multihash code of sha2-256, the only hash function accepted."""
_DIGEST_LEN = 32
_MAX_CHAIN_CODEC = 0xFFFF

_B58_ALPHABET = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58_ALPHABET)}


class InvalidCIDError(StoreError, ValueError):
    """A string or byte sequence is not a CID this project can use (sha2-256 only)."""


# --------------------------------------------------------------------------- varints


def encode_varint(value: int) -> bytes:
    """Unsigned LEB128 varint as used by multiformats and protobuf."""
    if value < 0:
        raise ValueError(f"varint must be non-negative, got {value}")
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode_varint(buf: bytes | memoryview, offset: int = 0) -> tuple[int, int]:
    """Decode an unsigned varint at ``offset``; return ``(value, next_offset)``.

    Raises ``ValueError`` on truncated input or a varint longer than 9 bytes.
    """
    value = 0
    shift = 0
    end = len(buf)
    while True:
        if offset >= end:
            raise ValueError("truncated varint")
        byte = buf[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, offset
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


# --------------------------------------------------------------------------- multibase


def b58encode(data: bytes) -> str:
    """Bitcoin-alphabet base58 (multibase ``z`` without the prefix)."""
    zeros = len(data) - len(data.lstrip(b"\0"))
    num = int.from_bytes(data, "big")
    out = bytearray()
    while num:
        num, rem = divmod(num, 58)
        out.append(_B58_ALPHABET[rem])
    out.extend(b"1" * zeros)
    out.reverse()
    return out.decode("ascii")


def b58decode(text: str) -> bytes:
    """Inverse of :func:`b58encode`; raises ``ValueError`` on a character outside the alphabet."""
    num = 0
    raw = text.encode("ascii", errors="replace")
    for ch in raw:
        try:
            num = num * 58 + _B58_INDEX[ch]
        except KeyError:
            raise ValueError(f"invalid base58 character {chr(ch)!r}") from None
    zeros = len(raw) - len(raw.lstrip(b"1"))
    body = num.to_bytes((num.bit_length() + 7) // 8, "big") if num else b""
    return b"\0" * zeros + body


def b32encode_lower(data: bytes) -> str:
    """RFC 4648 base32, lowercase, no padding (multibase ``b`` without the prefix)."""
    return base64.b32encode(data).decode("ascii").rstrip("=").lower()


def b32decode(text: str) -> bytes:
    """Decode unpadded RFC 4648 base32 in either case."""
    padded = text.upper() + "=" * (-len(text) % 8)
    try:
        return base64.b32decode(padded)
    except ValueError as exc:  # binascii.Error is a ValueError
        raise ValueError(f"invalid base32: {exc}") from None


# --------------------------------------------------------------------------- CID


@dataclass(frozen=True, slots=True)
class CID:
    """A sha2-256 CID: version 0 (always dag-pb) or version 1 with any codec."""

    version: int
    codec: int
    digest: bytes

    def __post_init__(self) -> None:
        if len(self.digest) != _DIGEST_LEN:
            raise InvalidCIDError(f"sha2-256 digest must be 32 bytes, got {len(self.digest)}")
        if self.version == 0 and self.codec != DAG_PB:
            raise InvalidCIDError("a CIDv0 is always dag-pb")
        if self.version not in (0, 1):
            raise InvalidCIDError(f"unsupported CID version {self.version}")

    # -- construction
    @classmethod
    def for_block(cls, block: bytes | memoryview, *, version: int, codec: int) -> CID:
        """CID of ``block`` (hashes it with sha2-256)."""
        return cls(version, codec, hashlib.sha256(block).digest())

    @classmethod
    def parse(cls, text: str) -> CID:
        """Parse a CID string: ``Qm…`` (v0), or v1 in multibase ``b``/``B`` (base32) or ``z`` (base58btc)."""
        if not isinstance(text, str) or not text:
            raise InvalidCIDError(f"not a CID: {text!r}")
        text = text.strip()
        if text.startswith("/ipfs/"):
            text = text[len("/ipfs/"):]
        try:
            if len(text) == 46 and text.startswith("Qm"):
                return cls.from_bytes(b58decode(text))
            prefix, body = text[0], text[1:]
            if prefix in "bB":
                raw = b32decode(body)
            elif prefix == "z":
                raw = b58decode(body)
            else:
                raise InvalidCIDError(
                    f"unsupported CID encoding {text!r}: use a Qm… CIDv0 or a base32 b… CIDv1"
                )
        except ValueError as exc:
            if isinstance(exc, InvalidCIDError):
                raise
            raise InvalidCIDError(f"not a CID: {text!r} ({exc})") from None
        return cls.from_bytes(raw)

    @classmethod
    def from_bytes(cls, raw: bytes | memoryview) -> CID:
        """Decode a binary CID that spans all of ``raw``."""
        cid, end = cls.read(raw, 0)
        if end != len(raw):
            raise InvalidCIDError(f"{len(raw) - end} trailing bytes after CID")
        return cid

    @classmethod
    def read(cls, buf: bytes | memoryview, offset: int = 0) -> tuple[CID, int]:
        """Decode a binary CID at ``offset`` (as found in CAR sections); return ``(cid, next_offset)``."""
        try:
            if buf[offset] == SHA2_256 and offset + 1 < len(buf) and buf[offset + 1] == _DIGEST_LEN:
                version, codec = 0, DAG_PB
            else:
                version, offset = decode_varint(buf, offset)
                if version != 1:
                    raise InvalidCIDError(f"unsupported CID version {version}")
                codec, offset = decode_varint(buf, offset)
            mh_code, offset = decode_varint(buf, offset)
            mh_len, offset = decode_varint(buf, offset)
        except IndexError:
            raise InvalidCIDError("truncated CID") from None
        except ValueError as exc:
            if isinstance(exc, InvalidCIDError):
                raise
            raise InvalidCIDError(f"malformed CID: {exc}") from None
        if mh_code != SHA2_256 or mh_len != _DIGEST_LEN:
            raise InvalidCIDError(
                f"unsupported multihash 0x{mh_code:x}/{mh_len} bytes: only sha2-256 CIDs are accepted"
            )
        digest = bytes(buf[offset:offset + _DIGEST_LEN])
        if len(digest) != _DIGEST_LEN:
            raise InvalidCIDError("truncated CID digest")
        return cls(version, codec, digest), offset + _DIGEST_LEN

    # -- encodings
    @property
    def multihash(self) -> bytes:
        """``0x12 0x20 ‖ digest``."""
        return bytes((SHA2_256, _DIGEST_LEN)) + self.digest

    def to_bytes(self) -> bytes:
        """Binary CID, as used inside dag-pb links and CAR files."""
        if self.version == 0:
            return self.multihash
        return b"\x01" + encode_varint(self.codec) + self.multihash

    def encode(self) -> str:
        """Canonical string: base58btc for v0, multibase base32 lowercase for v1."""
        if self.version == 0:
            return b58encode(self.multihash)
        return "b" + b32encode_lower(self.to_bytes())

    def __str__(self) -> str:
        return self.encode()

    def verify(self, block: bytes | memoryview) -> bool:
        """True if ``block`` hashes to this CID's digest."""
        return hashlib.sha256(block).digest() == self.digest

    @property
    def chain_codec(self) -> int:
        """Codec as stored on chain: 0 for CIDv0, the multicodec for CIDv1."""
        return 0 if self.version == 0 else self.codec


def cid_to_chain(cid: str) -> tuple[bytes, int]:
    """Split a CID string into ``(sha256 digest: 32 bytes, codec: uint16)`` for storage on chain.

    ``codec`` is 0 for a CIDv0 and the multicodec (0x70 dag-pb, 0x55 raw, …) for a CIDv1.
    """
    parsed = CID.parse(cid)
    if parsed.chain_codec > _MAX_CHAIN_CODEC:
        raise InvalidCIDError(f"codec 0x{parsed.codec:x} does not fit in a uint16")
    return parsed.digest, parsed.chain_codec


def cid_from_chain(digest: bytes, codec: int) -> str:
    """Inverse of :func:`cid_to_chain`: codec 0 gives a ``Qm…`` CIDv0, codec > 0 a base32 ``b…`` CIDv1."""
    if not isinstance(digest, (bytes, bytearray, memoryview)) or len(digest) != _DIGEST_LEN:
        raise InvalidCIDError("a chain CID digest must be exactly 32 bytes (sha2-256)")
    if not 0 <= codec <= _MAX_CHAIN_CODEC:
        raise InvalidCIDError(f"codec {codec} is not a uint16")
    if codec == 0:
        return CID(0, DAG_PB, bytes(digest)).encode()
    return CID(1, codec, bytes(digest)).encode()
