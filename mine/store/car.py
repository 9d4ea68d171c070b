"""CARv1 files (Content Addressable aRchives), the format of ``ipfs dag export``/``dag import``.

Layout: ``varint(len(header)) ‖ header`` where the header is dag-cbor ``{"roots": [cid…], "version": 1}``,
then one section per block: ``varint(len(cid_bytes) + len(block)) ‖ cid_bytes ‖ block``.

The dag-cbor header is encoded by hand: keys in canonical order (shorter first), each CID as
tag 42 over a byte string ``0x00 ‖ binary CID`` (the 0x00 is the identity multibase prefix).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from mine.errors import IntegrityError, StoreError
from mine.store.cid import CID, InvalidCIDError, encode_varint
from mine.store.files import atomic_output

__all__ = ["CarFormatError", "encode_header", "decode_header", "read_car", "write_car"]

_MAX_HEADER = 1 << 20
_MAX_SECTION = 8 << 20  # far above any block a UnixFS DAG contains (256 KiB + framing)


class CarFormatError(StoreError, ValueError):
    """A CAR file is malformed (bad header, truncated section, unsupported version)."""


# --------------------------------------------------------------------------- dag-cbor header


def _cbor_head(major: int, value: int) -> bytes:
    if value < 24:
        return bytes(((major << 5) | value,))
    for info, width in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if value < 1 << (8 * width):
            return bytes(((major << 5) | info,)) + value.to_bytes(width, "big")
    raise ValueError("CBOR value too large")


def _cbor_text(text: str) -> bytes:
    raw = text.encode("utf-8")
    return _cbor_head(3, len(raw)) + raw


def encode_header(roots: Sequence[CID]) -> bytes:
    """dag-cbor bytes of ``{"roots": roots, "version": 1}`` (without the length prefix)."""
    out = bytearray(_cbor_head(5, 2))  # map of 2; "roots" (5 chars) sorts before "version" (7)
    out += _cbor_text("roots")
    out += _cbor_head(4, len(roots))
    for root in roots:
        payload = b"\x00" + root.to_bytes()
        out += b"\xd8\x2a"  # tag 42
        out += _cbor_head(2, len(payload))
        out += payload
    out += _cbor_text("version")
    out += _cbor_head(0, 1)
    return bytes(out)


class _CborReader:
    """The sliver of a dag-cbor decoder needed for CAR headers (maps, arrays, text, bytes, ints, tag 42)."""

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.pos = 0

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self.buf):
            raise CarFormatError("truncated CAR header")
        chunk = self.buf[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def _head(self) -> tuple[int, int]:
        first = self._take(1)[0]
        major, info = first >> 5, first & 0x1F
        if info < 24:
            return major, info
        widths = {24: 1, 25: 2, 26: 4, 27: 8}
        if info not in widths:
            raise CarFormatError("indefinite-length or reserved CBOR item in CAR header")
        return major, int.from_bytes(self._take(widths[info]), "big")

    def item(self) -> object:
        major, value = self._head()
        if major == 0:
            return value
        if major == 2:
            return self._take(value)
        if major == 3:
            return self._take(value).decode("utf-8")
        if major == 4:
            return [self.item() for _ in range(value)]
        if major == 5:
            result: dict[object, object] = {}
            for _ in range(value):
                key = self.item()
                result[key] = self.item()
            return result
        if major == 6 and value == 42:
            payload = self.item()
            if not isinstance(payload, bytes) or not payload.startswith(b"\x00"):
                raise CarFormatError("CID in CAR header lacks the 0x00 multibase prefix")
            return CID.from_bytes(payload[1:])
        raise CarFormatError(f"unexpected CBOR item (major type {major}) in CAR header")


def decode_header(header: bytes) -> list[CID]:
    """Parse a CARv1 header and return its roots."""
    try:
        parsed = _CborReader(header).item()
    except (UnicodeDecodeError, InvalidCIDError) as exc:
        raise CarFormatError(f"bad CAR header: {exc}") from None
    if not isinstance(parsed, dict) or parsed.get("version") != 1:
        raise CarFormatError("not a CARv1 file (header version is not 1)")
    roots = parsed.get("roots")
    if not isinstance(roots, list) or not all(isinstance(r, CID) for r in roots):
        raise CarFormatError("CAR header roots must be a list of CIDs")
    return list(roots)


# --------------------------------------------------------------------------- files


def _read_varint(stream: BinaryIO) -> int | None:
    """Read a varint from a stream; None at a clean end of file."""
    value, shift = 0, 0
    while True:
        byte = stream.read(1)
        if not byte:
            if shift == 0:
                return None
            raise CarFormatError("truncated varint in CAR file")
        value |= (byte[0] & 0x7F) << shift
        if byte[0] < 0x80:
            return value
        shift += 7
        if shift > 63:
            raise CarFormatError("varint too long in CAR file")


def _read_exact(stream: BinaryIO, size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise CarFormatError("truncated CAR section")
    return data


def read_car(stream: BinaryIO, *, verify: bool = True) -> tuple[list[CID], Iterator[tuple[CID, bytes]]]:
    """Read a CARv1 stream: return its roots and an iterator of ``(cid, block)``.

    With ``verify`` (default) every block is checked against its CID and a mismatch raises
    :class:`~mine.errors.IntegrityError`.
    """
    header_len = _read_varint(stream)
    if header_len is None or not 0 < header_len <= _MAX_HEADER:
        raise CarFormatError("not a CAR file: missing or oversized header")
    roots = decode_header(_read_exact(stream, header_len))

    def blocks() -> Iterator[tuple[CID, bytes]]:
        while True:
            section_len = _read_varint(stream)
            if section_len is None:
                return
            if section_len > _MAX_SECTION:
                raise CarFormatError(f"CAR section of {section_len} bytes exceeds the {_MAX_SECTION} limit")
            section = _read_exact(stream, section_len)
            try:
                cid, offset = CID.read(section, 0)
            except InvalidCIDError as exc:
                raise CarFormatError(f"bad CID in CAR section: {exc}") from None
            block = section[offset:]
            if verify and not cid.verify(block):
                raise IntegrityError(f"CAR block {cid} does not hash to its CID; the archive is corrupt")
            yield cid, block

    return roots, blocks()


def write_car(out_path: str | os.PathLike[str], roots: Sequence[CID],
              blocks: Iterable[tuple[CID, bytes | memoryview]]) -> int:
    """Write a CARv1 file atomically (temp file + rename); return its size in bytes."""
    with atomic_output(Path(out_path), fsync=True) as (handle, _):
        header = encode_header(roots)
        handle.write(encode_varint(len(header)))
        handle.write(header)
        for cid, block in blocks:
            cid_bytes = cid.to_bytes()
            handle.write(encode_varint(len(cid_bytes) + len(block)))
            handle.write(cid_bytes)
            handle.write(block)
        return handle.tell()
