"""Weights as safetensors files: written deterministically, read strictly against a manifest.

A *state* is a ``dict[str, torch.Tensor]`` with exactly the parameter names of
``build_model(manifest).state_dict()`` (``"0.weight"``, ``"0.bias"``, ...), all ``float32``. Untrusted
bytes are checked before any tensor is materialised: size, header (names, dtype, shapes against
the manifest's model) and then finiteness. Nothing is unpickled.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from typing import Any, Final

import torch
from safetensors.torch import load as _st_load

from mine.errors import ValidationError
from mine.layers import build_model, parameter_shapes
from mine.manifest import Manifest, strict_json

__all__ = [
    "MAX_METADATA_ENTRIES",
    "UnreadableError",
    "load_weights",
    "model_from_bytes",
    "read_metadata",
    "state_to_bytes",
    "validate_tensor_file",
]

#: Limits on update / weights metadata (string → string).
MAX_METADATA_ENTRIES: Final = 64
MAX_METADATA_KEY_CHARS: Final = 64
MAX_METADATA_VALUE_CHARS: Final = 1024
#: Bound on a safetensors JSON header (tensor table + metadata).
MAX_HEADER_BYTES: Final = 1 << 20


class UnreadableError(ValidationError):
    """The bytes are not a safetensors file at all (truncated, bad header, not JSON)."""


def _check_metadata(metadata: Mapping[str, str] | None) -> dict[str, str] | None:
    if metadata is None:
        return None
    if not isinstance(metadata, Mapping):
        raise ValidationError(f"metadata must be a dict of strings, got {type(metadata).__name__}")
    if len(metadata) > MAX_METADATA_ENTRIES:
        raise ValidationError(f"metadata has {len(metadata)} entries; at most {MAX_METADATA_ENTRIES} are allowed")
    out = {}
    for k, v in metadata.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise ValidationError(f"metadata keys and values must be strings; {k!r}: {v!r} is not (use str(...))")
        if not k or len(k) > MAX_METADATA_KEY_CHARS or len(v) > MAX_METADATA_VALUE_CHARS:
            raise ValidationError(
                f"metadata entry {k[:80]!r} is too long (keys 1..{MAX_METADATA_KEY_CHARS}, values "
                f"<= {MAX_METADATA_VALUE_CHARS} characters)")
        out[k] = v
    return out


def state_to_bytes(state: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None) -> bytes:
    """Serialise a state (or delta) to safetensors bytes; the same input always gives the same bytes.

    Tensors are stored as contiguous float32 CPU tensors, keys sorted (by safetensors); ``metadata``
    must map strings to strings.
    """
    if not isinstance(state, Mapping) or not state:
        raise ValidationError("state must be a non-empty dict of name -> tensor")
    tensors = {}
    for k, v in state.items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            raise ValidationError(f"state entry {k!r} must map a string to a torch.Tensor")
        tensors[k] = v.detach().to(device="cpu", dtype=torch.float32).contiguous()
    return _safetensors_bytes(tensors, _check_metadata(metadata))


def _safetensors_bytes(tensors: Mapping[str, torch.Tensor], metadata: dict[str, str] | None) -> bytes:
    """The safetensors format written deterministically (the Rust writer orders metadata by hash).

    Layout: u64-LE header length, a JSON header (sorted keys; tensors as dtype/shape/data_offsets,
    optional ``__metadata__``) padded with spaces to 8 bytes, then the tensors' bytes in name order.
    """
    header: dict[str, Any] = {}
    offset = 0
    blobs = []
    for name in sorted(tensors):
        blob = tensors[name].numpy().astype("<f4", copy=False).tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensors[name].shape), "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    if metadata:
        header["__metadata__"] = dict(sorted(metadata.items()))
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + b"".join(blobs)


def _parse_header(data: bytes) -> tuple[dict[str, Any], dict[str, str]]:
    """The safetensors tensor table and metadata, parsed strictly without touching tensor data."""
    if len(data) < 8:
        raise UnreadableError(f"not a safetensors file: only {len(data)} bytes")
    (n,) = struct.unpack("<Q", bytes(data[:8]))
    if n > MAX_HEADER_BYTES or n > len(data) - 8:
        raise UnreadableError(f"not a safetensors file: header length {n} does not fit in {len(data)} bytes")
    try:
        text = bytes(data[8:8 + n]).decode("utf-8")
    except UnicodeDecodeError:
        raise UnreadableError("not a safetensors file: header is not UTF-8") from None
    try:
        header = strict_json(text, "safetensors header")
    except ValidationError as exc:
        raise UnreadableError(str(exc)) from None
    if not isinstance(header, dict):
        raise UnreadableError("not a safetensors file: header is not a JSON object")
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict):
        raise UnreadableError("safetensors '__metadata__' must be an object of strings")
    try:
        meta = _check_metadata(meta) or {}
    except ValidationError as exc:
        raise UnreadableError(f"safetensors metadata: {exc}") from None
    return header, meta


def validate_tensor_file(manifest: Manifest, data: bytes, max_bytes: int | None, what: str
                          ) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ValidationError(f"{what} must be bytes, got {type(data).__name__}")
    limit = manifest.max_weight_bytes if max_bytes is None else max_bytes
    if len(data) > limit:
        raise ValidationError(f"{what} is {len(data)} bytes, more than the limit of {limit} bytes")
    header, meta = _parse_header(data)
    expected = parameter_shapes(manifest)
    missing = sorted(set(expected) - set(header))
    extra = sorted(set(header) - set(expected))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing tensor(s) {missing[:8]}")
        if extra:
            parts.append(f"unexpected tensor(s) {extra[:8]}")
        raise ValidationError(f"{what} does not match the manifest's model: {'; '.join(parts)}")
    for name, shape in expected.items():
        entry = header[name]
        if not isinstance(entry, dict):
            raise UnreadableError(f"{what}: header entry for {name!r} is not an object")
        if entry.get("dtype") != "F32":
            raise ValidationError(f"{what}: tensor {name!r} has dtype {entry.get('dtype')!r}; only F32 (float32) is accepted")
        got = entry.get("shape")
        if not isinstance(got, list) or tuple(got) != shape:
            raise ValidationError(f"{what}: tensor {name!r} has shape {got!r}; the manifest's model needs {list(shape)}")
    try:
        tensors = _st_load(bytes(data))
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise UnreadableError(f"{what} is not a valid safetensors file: {exc}") from None
    out: dict[str, torch.Tensor] = {}
    for name in expected:
        t = tensors[name]
        if not bool(torch.isfinite(t).all()):
            raise ValidationError(f"{what}: tensor {name!r} contains NaN or infinite values")
        out[name] = t
    return out, meta


def load_weights(manifest: Manifest, data: bytes, *, max_bytes: int | None = None) -> dict[str, torch.Tensor]:
    """Validate untrusted safetensors weights against the manifest's model and return the state.

    Refuses (``ValidationError``) files over ``max_bytes`` (default: ``manifest.max_weight_bytes``),
    missing/extra tensor names, a shape or dtype other than the built model's float32 parameters,
    and any NaN or infinity. :class:`UnreadableError` (a ``ValidationError``) means the bytes are
    not safetensors at all. The header is checked before any tensor data is read.
    """
    return validate_tensor_file(manifest, data, max_bytes, "weights file")[0]


def model_from_bytes(manifest: Manifest, data: bytes, *, max_bytes: int | None = None) -> torch.nn.Sequential:
    """Build the manifest's model and load validated weights into it (see :func:`load_weights`)."""
    model = build_model(manifest, seed=0)
    model.load_state_dict(load_weights(manifest, data, max_bytes=max_bytes), strict=True)
    return model


def read_metadata(data: bytes) -> dict[str, str]:
    """Only the string metadata of a safetensors file (validated size), without loading tensors."""
    return _parse_header(data)[1]
