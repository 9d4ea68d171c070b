"""The model owner's loop: post a bounty, evaluate revealed updates in commit order, close, audit.

The validation set stays in the owner's vault; only its SHA-256 goes on chain (as the bounty's
validation commitment), so that after close anyone given the file can replay every evaluation
(`audit`). Evaluation is deterministic for that reason.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mine.chain import ZERO_ADDRESS, BountyParams, SonarClient, SubmissionStatus
from mine.datasets import select_features
from mine.errors import MineError, StoreError, ValidationError
from mine.evaluate import evaluate, score_from_chain, score_to_chain
from mine.home import MineHome, read_json, write_json_atomic
from mine.model import Manifest, build_model, read_update
from mine.policy import POLICIES, REASONS, UNREADABLE as REASON_UNREADABLE
from mine.store import Store, cid_from_chain, cid_to_chain
from mine.versions import LoadedVersion, load_version, publish_version



@dataclass
class Validation:
    """The owner's private validation set, already in the model's feature order."""

    X: np.ndarray
    y: np.ndarray
    sha256: bytes
    groups: np.ndarray | None = None

    @classmethod
    def from_file(cls, path: Path, X: np.ndarray, y: np.ndarray, columns: list[str], manifest: Manifest) -> Validation:
        """The validation set read from `path` (already parsed into X, y), committed to by its SHA-256."""
        return cls(select_features(X, columns, list(manifest.features)), y, file_commitment(path.read_bytes()))


@dataclass
class EvalRecord:
    index: int
    miner: str
    accepted: bool
    reason_code: int
    reason: str
    score_before: float
    score_after: float
    norm: float
    reward: int = 0
    version: int | None = None
    seconds: float = 0.0


@dataclass
class OwnedBounty:
    """What the owner keeps locally about a bounty it posted (owned/<id>.json)."""

    bounty_id: int
    validation: str  # vault dataset name
    policy: str
    policy_settings: dict[str, Any]
    accepted_norms: list[float] = field(default_factory=list)
    evaluations: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def load(cls, home: MineHome, bounty_id: int) -> OwnedBounty:
        data = read_json(home.owned / f"{bounty_id}.json", None)
        if data is None:
            raise MineError(f"bounty {bounty_id} was not posted from this mine ({home.root}); evaluate from the owner's mine")
        return cls(**data)

    def save(self, home: MineHome) -> None:
        write_json_atomic(home.owned / f"{self.bounty_id}.json", asdict(self))


def score_model(manifest: Manifest, state: dict[str, torch.Tensor], val: Validation) -> tuple[float, dict[str, float]]:
    model = build_model(manifest)
    model.load_state_dict(state)
    result = evaluate(model, val.X, val.y, manifest, groups=val.groups)
    return result.score, result.per_group


def create_bounty(
    client: SonarClient,
    store: Store,
    manifest: Manifest,
    state: dict[str, torch.Tensor],
    val: Validation,
    *,
    reward: int,
    target: float,
    deadline: int,
    eval_window: int,
    stake: int = 0,
    token: str = ZERO_ADDRESS,
    policy: str = "default",
    policy_settings: dict[str, Any] | None = None,
) -> tuple[int, str, float]:
    """Publish version 0 and post the bounty. Returns (bounty id, model CID, initial score)."""
    settings = policy_settings or {}
    cid, _ = publish_version(store, manifest, state, policy={"name": policy, **settings})
    initial, _ = score_model(manifest, state, val)
    digest, codec = cid_to_chain(cid)
    params = BountyParams(
        token=token, reward=reward, stake=stake, deadline=deadline, eval_window=eval_window,
        initial_score=score_to_chain(initial), target_score=score_to_chain(target),
        higher_is_better=manifest.higher_is_better, validation_commitment=val.sha256,
        model_digest=digest, model_codec=codec,
    )
    bounty_id, _ = client.post_bounty(params)
    return bounty_id, cid, initial


def evaluate_pending(
    client: SonarClient,
    store: Store,
    owned: OwnedBounty,
    val: Validation,
    *,
    on_record: Callable[[EvalRecord], None] | None = None,
    current: LoadedVersion | None = None,
) -> tuple[list[EvalRecord], LoadedVersion]:
    """Evaluate every revealed update at the head of the queue, in commit order, on chain."""
    policy = POLICIES[owned.policy](**owned.policy_settings)
    bid = owned.bounty_id
    current = current or load_version(client, store, bid)
    manifest = current.manifest
    records: list[EvalRecord] = []
    while True:
        bounty = client.bounty(bid)
        if bounty.next_eval >= bounty.submissions:
            break
        index = bounty.next_eval
        sub = client.submission(bid, index)
        if sub.status == SubmissionStatus.RECLAIMED or (
            sub.status == SubmissionStatus.COMMITTED and client.now() > sub.committed_at + bounty.eval_window
        ):
            client.skip(bid)
            continue
        if sub.status != SubmissionStatus.REVEALED:
            break  # the head is committed and may still be revealed: wait for it
        started = time.perf_counter()
        before = score_from_chain(bounty.best_score)
        update_cid = cid_from_chain(sub.digest, sub.codec)
        try:
            data = store.cat(update_cid, max_bytes=manifest.max_weight_bytes)
            delta, _meta = read_update(manifest, data, max_bytes=manifest.max_weight_bytes)
        except (StoreError, ValidationError) as exc:
            client.reject(bid, index, bounty.best_score, REASON_UNREADABLE)
            record = EvalRecord(index, sub.miner, False, REASON_UNREADABLE, f"{REASONS[REASON_UNREADABLE]}: {exc}",
                                before, before, 0.0, seconds=time.perf_counter() - started)
        else:
            decision = policy.decide(manifest, current.state, delta, (val.X, val.y, val.groups), owned.accepted_norms)
            after_fixed = decision.chain_score
            improves = after_fixed > bounty.best_score if bounty.higher_is_better else after_fixed < bounty.best_score
            if decision.accepted and improves and decision.new_state is not None:
                cid, version_record = publish_version(
                    store, manifest, decision.new_state, parent=current.cid, update=update_cid,
                    manifest_cid=current.record.manifest,
                )
                digest, codec = cid_to_chain(cid)
                receipt = client.accept(bid, index, after_fixed, digest, codec)
                (event,) = client.receipt_events(receipt, "UpdateAccepted")
                version = int(event["args"]["version"])
                owned.accepted_norms.append(decision.norm)
                current = LoadedVersion(version, cid, version_record, manifest, decision.new_state, after_fixed)
                record = EvalRecord(index, sub.miner, True, 0, "accepted", decision.score_before,
                                    decision.score_after, decision.norm, int(event["args"]["reward"]), version)
            else:
                code = decision.reason_code if not decision.accepted else 2
                reason = decision.reason if not decision.accepted else REASONS[2]
                client.reject(bid, index, after_fixed, code)
                record = EvalRecord(index, sub.miner, False, code, reason, decision.score_before,
                                    decision.score_after, decision.norm)
            record.seconds = time.perf_counter() - started
        owned.evaluations.append(asdict(record))
        records.append(record)
        if on_record:
            on_record(record)
    return records, current


def file_commitment(data: bytes) -> bytes:
    """The validation commitment of a validation file: its SHA-256."""
    return hashlib.sha256(data).digest()


@dataclass
class AuditFinding:
    what: str  # "version 3" or "submission #5 (rejected)"
    reported: float
    replayed: float
    note: str = ""

    def __str__(self) -> str:
        extra = f" ({self.note})" if self.note else ""
        return f"{self.what}: reported {self.reported:.6f}, replays to {self.replayed:.6f}{extra}"


def audit(client: SonarClient, store: Store, bounty_id: int, val: Validation) -> tuple[int, list[AuditFinding]]:
    """Replay a bounty from chain + store: every model version's score, and every evaluation.

    Each revealed update is fetched by the CID in its `UpdateRevealed` event and judged again with
    the policy recorded in version 0, against the model that was current when it was evaluated;
    the replayed score must equal the one the owner reported for it, and the verdict must match.
    Returns (scores checked, mismatches).
    """
    bounty = client.bounty(bounty_id)
    if bounty.validation_commitment != val.sha256:
        raise ValidationError(
            "this validation file is not the one the owner committed to (SHA-256 differs); "
            "get the exact file the owner revealed"
        )
    findings: list[AuditFinding] = []
    versions = [load_version(client, store, bounty_id, v) for v in range(bounty.latest_version + 1)]
    for loaded in versions:
        replayed, _ = score_model(loaded.manifest, loaded.state, val)
        if score_to_chain(replayed) != loaded.score:
            findings.append(AuditFinding(f"version {loaded.version}", score_from_chain(loaded.score), replayed))

    policy_doc = dict(versions[0].record.policy or {"name": "default"})
    policy = POLICIES[policy_doc.pop("name", "default")](**policy_doc)
    revealed = {int(e["args"]["index"]): e["args"] for e in client.events("UpdateRevealed", bountyId=bounty_id)}
    verdicts: dict[int, tuple[bool, int]] = {}
    for e in client.events("UpdateAccepted", bountyId=bounty_id):
        verdicts[int(e["args"]["index"])] = (True, int(e["args"]["score"]))
    for e in client.events("UpdateRejected", bountyId=bounty_id):
        verdicts[int(e["args"]["index"])] = (False, int(e["args"]["score"]))
    by_submission = {client.model_version(bounty_id, v.version).submission: v for v in versions[1:]}
    current, checked = versions[0], len(versions)
    norms: list[float] = []
    for index in sorted(verdicts):
        accepted, reported = verdicts[index]
        args = revealed.get(index)
        if args is None:
            continue
        try:
            data = store.cat(cid_from_chain(bytes(args["digest"]), int(args["codec"])),
                             max_bytes=current.manifest.max_weight_bytes)
        except StoreError:
            continue  # nothing to replay: the update cannot be fetched (reason 5)
        decision = policy.decide(current.manifest, current.state, data, (val.X, val.y, val.groups), norms)
        checked += 1
        what = f"submission #{index} ({'accepted' if accepted else 'rejected'})"
        if decision.chain_score != reported:
            findings.append(AuditFinding(what, score_from_chain(reported), score_from_chain(decision.chain_score)))
        elif decision.accepted != accepted and decision.reason_code != REASON_UNREADABLE:
            verdict = "accepts" if decision.accepted else f"rejects it ({decision.reason})"
            findings.append(AuditFinding(what, score_from_chain(reported), score_from_chain(decision.chain_score),
                                         f"the policy {verdict}"))
        if accepted:
            norms.append(decision.norm)
            current = by_submission.get(index, current)
    return checked, findings
