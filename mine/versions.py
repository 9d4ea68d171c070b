"""Model versions: what a CID on chain points to, and how both sides fetch and publish one.

A model version on chain is the CID of a small JSON record
    {"kind": "sonar-model-version", "manifest": CID, "weights": CID, "parent": CID|null,
     "update": CID|null, "policy": {...}|null}
so the manifest (declarative architecture) and the weights (safetensors) are each content-addressed
and verified on fetch. Version 0's record also carries the owner's acceptance-policy settings, so an
auditor can replay every evaluation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mine.errors import ValidationError
from mine.manifest import Manifest
from mine.store import Store, cid_from_chain, cid_to_chain

if TYPE_CHECKING:  # torch is imported where weights are read or written, not to list bounties
    import torch

    from mine.views import ChainView

RECORD_KIND = "sonar-model-version"
MAX_RECORD_BYTES = 64 * 1024
MAX_MANIFEST_BYTES = 1024 * 1024


@dataclass(frozen=True)
class VersionRecord:
    manifest: str
    weights: str
    parent: str | None = None
    update: str | None = None
    policy: dict[str, Any] | None = None
    #: version 0 only: the owner's per-bounty encryption key, {"scheme": ..., "public_key": hex} (mine.sealed)
    encryption: dict[str, str] | None = None
    #: version 0 only: the largest per-update DP ε the owner accepts (policy rule 7); None = any
    max_epsilon: float | None = None
    #: versions >= 1: the round that produced it, {"first": index, "count": n, "accepted": [indices]}
    round: dict[str, Any] | None = None

    def to_json(self) -> bytes:
        data: dict[str, Any] = {
            "kind": RECORD_KIND, "manifest": self.manifest, "weights": self.weights,
            "parent": self.parent, "update": self.update, "policy": self.policy,
        }
        if self.encryption is not None:  # absent keys keep older records' bytes (and CIDs) unchanged
            data["encryption"] = self.encryption
        if self.max_epsilon is not None:
            data["max_epsilon"] = self.max_epsilon
        if self.round is not None:
            data["round"] = self.round
        return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> VersionRecord:
        try:
            raw = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValidationError(f"model version record is not JSON ({exc})") from None
        if not isinstance(raw, dict) or raw.get("kind") != RECORD_KIND:
            raise ValidationError("not a Sonar model version record (missing kind)")
        for key in ("manifest", "weights"):
            if not isinstance(raw.get(key), str):
                raise ValidationError(f"model version record has no {key} CID")
        policy = raw.get("policy")
        if policy is not None and not isinstance(policy, dict):
            raise ValidationError("model version record: policy must be an object")
        encryption = raw.get("encryption")
        if encryption is not None and not (isinstance(encryption, dict) and all(
                isinstance(k, str) and isinstance(v, str) for k, v in encryption.items())):
            raise ValidationError("model version record: encryption must be an object of strings")
        max_epsilon = raw.get("max_epsilon")
        if max_epsilon is not None and (isinstance(max_epsilon, bool) or not isinstance(max_epsilon, (int, float))
                                        or not 0 < max_epsilon < float("inf")):
            raise ValidationError("model version record: max_epsilon must be a positive number")
        round_ = raw.get("round")
        if round_ is not None and not isinstance(round_, dict):
            raise ValidationError("model version record: round must be an object")
        return cls(raw["manifest"], raw["weights"], raw.get("parent"), raw.get("update"), policy, encryption,
                   None if max_epsilon is None else float(max_epsilon), round_)


@dataclass
class LoadedVersion:
    version: int
    cid: str
    record: VersionRecord
    manifest: Manifest
    state: dict[str, torch.Tensor]
    score: int  # fixed-point, as on chain


def publish_version(
    store: Store,
    manifest: Manifest,
    state: dict[str, torch.Tensor],
    *,
    parent: str | None = None,
    update: str | None = None,
    policy: dict[str, Any] | None = None,
    manifest_cid: str | None = None,
    encryption: dict[str, str] | None = None,
    max_epsilon: float | None = None,
    round: dict[str, Any] | None = None,
) -> tuple[str, VersionRecord]:
    """Put manifest, weights and the record in the store; returns the record's CID and the record."""
    from mine.model import state_to_bytes

    manifest_cid = manifest_cid or store.add(manifest.to_json())
    weights_cid = store.add(state_to_bytes(state))
    record = VersionRecord(manifest_cid, weights_cid, parent, update, policy, encryption, max_epsilon, round)
    return store.add(record.to_json()), record


def fetch_record(store: Store, cid: str) -> VersionRecord:
    return VersionRecord.from_json(store.cat(cid, max_bytes=MAX_RECORD_BYTES))


def fetch_manifest(store: Store, record: VersionRecord) -> Manifest:
    return Manifest.from_json(store.cat(record.manifest, max_bytes=MAX_MANIFEST_BYTES))


def load_version(client: ChainView, store: Store, bounty_id: int, version: int | None = None) -> LoadedVersion:
    """Fetch a bounty's model version (default: the latest) and verify every piece against its CID."""
    from mine.model import load_weights

    if version is None:
        version = client.bounty(bounty_id).latest_version
    mv = client.model_version(bounty_id, version)
    cid = cid_from_chain(mv.digest, mv.codec)
    record = fetch_record(store, cid)
    manifest = fetch_manifest(store, record)
    weights = store.cat(record.weights, max_bytes=manifest.max_weight_bytes)
    state = load_weights(manifest, weights, max_bytes=manifest.max_weight_bytes)
    return LoadedVersion(version, cid, record, manifest, state, mv.score)


__all__ = [
    "LoadedVersion", "VersionRecord", "cid_to_chain", "fetch_manifest", "fetch_record", "load_version",
    "publish_version",
]
