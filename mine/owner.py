"""The model owner's loop: post a bounty, settle rounds of updates, reveal the audit bundle, audit.

The validation set stays in the owner's vault. The bounty's validation commitment is the digest of
the CID of an *audit bundle* (JSON: the validation file's CID, the bounty's decryption secret key,
a salt) computed at posting without publishing it; `reveal_audit` later puts the validation file
and the bundle in the store and records the bundle's CID on chain, so anyone can replay every
round (`audit`). Evaluation is deterministic for that reason.

A round (`settle_round`) is the queue head and what follows it (up to MAX_ROUND), all judged
together by :class:`mine.policy.RoundPolicy` and settled in ONE `settle` transaction. A fetch is
retried with backoff; an update the store cannot deliver is never rejected: the round stops
before it and it waits (its stake comes back if its window passes). With ``hold`` a round that
makes no new version waits too, to be judged again with more updates of the same version.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mine.chain import MAX_ROUND, ZERO_ADDRESS, BountyParams, SonarClient, SubmissionStatus, Verdict
from mine.datasets import select_features
from mine.errors import MineError, StoreError, ValidationError
from mine.evaluate import evaluate, score_from_chain, score_to_chain
from mine.home import MineHome, read_json, write_json_atomic
from mine.model import Manifest, build_model, state_to_bytes
from mine.policy import (REASONS, RoundDecision, RoundItem, RoundPolicy, UNREADABLE, evidence_from_json,
                         evidence_to_json)
from mine.store import Store, cid_from_chain, cid_to_chain
from mine.store.dag import ContentTooLargeError
from mine.versions import LoadedVersion, VersionRecord, load_version, publish_version

MAX_BUNDLE_BYTES = 4096
MAX_VALIDATION_BYTES = 256 * 1024 * 1024
#: Store fetches: attempts and the first backoff (doubled each time).
FETCH_ATTEMPTS = 4
FETCH_BACKOFF = 0.25


@dataclass
class Validation:
    """The owner's private validation set, already in the model's feature order, and its file bytes."""

    X: np.ndarray
    y: np.ndarray
    data: bytes
    groups: np.ndarray | None = None
    group: str | None = None  # the group column's name (``mine vault add ... --group``), if any

    @classmethod
    def from_file(cls, path: Path, X: np.ndarray, y: np.ndarray, columns: list[str], manifest: Manifest) -> Validation:
        """The validation set read from `path` (already parsed into X, y)."""
        return cls(select_features(X, columns, list(manifest.features)), y, path.read_bytes())

    @classmethod
    def from_vault(cls, vault: Any, name: str, manifest: Manifest) -> Validation:
        """The owner's vault dataset ``name`` for ``manifest``, with its subgroup labels and group column's
        name if it was added with ``--group`` (the group column is not among the model's inputs)."""
        from mine.vault import load_validation

        data = load_validation(vault, name, list(manifest.features))
        return cls(data.X, data.y, data.path.read_bytes(), data.groups, vault.get(name).group)

    @property
    def sha256(self) -> bytes:
        return hashlib.sha256(self.data).digest()


@dataclass
class OwnedBounty:
    """What the owner keeps locally about a bounty it posted (owned/<id>.json)."""

    bounty_id: int
    validation: str  # vault dataset name
    policy: str
    policy_settings: dict[str, Any]
    public_key: str = ""  # hex: the bounty's sealing key (secret in $MINE_HOME/keys)
    salt: str = ""  # hex: the audit bundle's salt
    accepted_norms: list[float] = field(default_factory=list)
    #: the round policy's pooled evidence per miner (:func:`mine.policy.evidence_to_json`)
    evidence: dict[str, dict[str, Any]] = field(default_factory=dict)
    rounds: list[dict[str, Any]] = field(default_factory=list)
    group: str | None = None  # the validation set's group column, named in the audit bundle
    initial_per_group: dict[str, float] = field(default_factory=dict)  # version 0's per-group scores

    @classmethod
    def load(cls, home: MineHome, bounty_id: int) -> OwnedBounty:
        data = read_json(home.owned / f"{bounty_id}.json", None)
        if data is None:
            raise MineError(f"bounty {bounty_id} was not posted from this mine ({home.root}); evaluate from the owner's mine")
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

    def save(self, home: MineHome) -> None:
        write_json_atomic(home.owned / f"{self.bounty_id}.json", asdict(self))

    def group_scores(self) -> list[tuple[int, dict[str, float]]]:
        """``(version, per-group scores)`` for every version this mine recorded them for (version 0 at
        posting, then each round that made a version); empty without a group column."""
        out = [(0, self.initial_per_group)] if self.initial_per_group else []
        out += [(int(r["version"]), r["per_group"]) for r in self.rounds if r.get("version") and r.get("per_group")]
        return out


def score_model(manifest: Manifest, state: dict[str, torch.Tensor], val: Validation) -> tuple[float, dict[str, float]]:
    model = build_model(manifest)
    model.load_state_dict(state)
    result = evaluate(model, val.X, val.y, manifest, groups=val.groups)
    return result.score, result.per_group


# ---------------------------------------------------------------------- audit bundle


def audit_bundle(validation_cid: str, secret_key: bytes, salt: bytes, group: str | None = None) -> bytes:
    """The audit bundle's canonical JSON bytes (:func:`mine.sealed.make_audit_bundle`); its CID's digest
    is the bounty's validation commitment. ``group``: the validation set's group column, if any."""
    from mine.sealed import make_audit_bundle

    return make_audit_bundle(validation_cid, secret_key, salt, group=group)


def parse_bundle(data: bytes) -> tuple[str, bytes, str | None]:
    """``(validation CID, secret key, group column or None)`` of an audit bundle; ``ValidationError`` if
    it is not one."""
    from mine.sealed import parse_audit_bundle

    bundle = parse_audit_bundle(data)
    return bundle.validation, bundle.secret_key, bundle.group


def policy_of(record: VersionRecord) -> RoundPolicy:
    """The round policy recorded in version 0 (its settings and the bounty's max epsilon).

    A setting newer than the record (:attr:`RoundPolicy.ADDED_LATER`) is off: the bounty replays by
    the rules it was posted under.
    """
    doc = dict(record.policy or {"name": RoundPolicy.name})
    name = doc.pop("name", RoundPolicy.name)
    if name != RoundPolicy.name:
        raise ValidationError(f"bounty records policy {name!r}; Sonar v2 bounties are settled in rounds ({RoundPolicy.name!r})")
    return RoundPolicy(**{**RoundPolicy.ADDED_LATER, **doc}, max_epsilon=record.max_epsilon)


def create_bounty(
    client: SonarClient,
    store: Store,
    home: MineHome,
    manifest: Manifest,
    state: dict[str, torch.Tensor],
    val: Validation,
    *,
    validation_name: str,
    reward: int,
    target: float,
    deadline: int,
    eval_window: int,
    stake: int,
    token: str = ZERO_ADDRESS,
    policy_settings: dict[str, Any] | None = None,
    auditable: bool = False,
    max_epsilon: float | None = None,
) -> tuple[OwnedBounty, str, float]:
    """Publish version 0 (with the sealing key and policy) and post the bounty.

    Returns (the owner's local record, saved; model CID; initial score).
    """
    from mine.sealed import encryption_record, load_secret_key, new_bounty_key

    # bad settings fail before anything is posted; every setting is recorded, defaults included,
    # so an audit replays this bounty with the rules it was judged by even after the defaults change
    policy = RoundPolicy(**dict(policy_settings or {}), max_epsilon=max_epsilon)
    settings = {k: v for k, v in asdict(policy).items() if k != "max_epsilon"}
    settings["step_search"] = list(settings["step_search"])
    public_key = new_bounty_key(home, label=f"bounty on {client.address}")
    salt = os.urandom(32)
    bundle = audit_bundle(store.add(val.data, only_hash=True), load_secret_key(home, public_key), salt, val.group)
    commitment, _ = cid_to_chain(store.add(bundle, only_hash=True))
    cid, _ = publish_version(store, manifest, state, policy={"name": RoundPolicy.name, **settings},
                             encryption=encryption_record(public_key), max_epsilon=max_epsilon)
    initial, per_group = score_model(manifest, state, val)
    digest, codec = cid_to_chain(cid)
    params = BountyParams(
        token=token, reward=reward, stake=stake, deadline=deadline, eval_window=eval_window,
        initial_score=score_to_chain(initial), target_score=score_to_chain(target),
        higher_is_better=manifest.higher_is_better, validation_commitment=commitment,
        model_digest=digest, model_codec=codec, auditable=auditable,
    )
    bounty_id, _ = client.post_bounty(params)
    owned = OwnedBounty(bounty_id, validation_name, RoundPolicy.name, settings, public_key.hex(), salt.hex(),
                        group=val.group, initial_per_group=per_group if val.groups is not None else {})
    owned.save(home)
    return owned, cid, initial


def reveal_audit(client: SonarClient, store: Store, home: MineHome, owned: OwnedBounty, val: Validation) -> str:
    """Put the validation file and the audit bundle in the store and reveal the bundle's CID on chain."""
    from mine.sealed import load_secret_key

    bundle = audit_bundle(store.add(val.data), load_secret_key(home, owned.public_key), bytes.fromhex(owned.salt),
                          owned.group)  # the group committed at posting, as in the commitment
    cid = store.add(bundle)
    digest, codec = cid_to_chain(cid)
    if digest != client.bounty(owned.bounty_id).validation_commitment:
        raise ValidationError("the audit bundle does not match the bounty's commitment: the validation file "
                              "changed since the bounty was posted; restore the original file")
    client.reveal_audit(owned.bounty_id, digest, codec)
    return cid


# ---------------------------------------------------------------------- rounds


def forfeited_miners(client: SonarClient, bounty_id: int, before: int) -> dict[str, int]:
    """Miners whose stake was forfeited for a submission before index `before` of this bounty, with
    how many times (the round policy's suspects: public, so an audit replays them)."""
    return dict(Counter(str(e["args"]["miner"]) for e in client.events("UpdateRejected", bountyId=bounty_id)
                        if int(e["args"]["index"]) < before and not bool(e["args"]["refunded"])))


def fetch_with_retries(store: Store, cid: str, *, max_bytes: int, attempts: int = FETCH_ATTEMPTS,
                       backoff: float = FETCH_BACKOFF) -> tuple[bytes | None, str]:
    """``(bytes, "")``, or ``(None, why)`` after ``attempts`` tries with exponential backoff.

    An update larger than ``max_bytes`` is returned as ``(b"", why)``: that is the miner's fault
    (unreadable), not an outage.
    """
    why = ""
    for attempt in range(attempts):
        try:
            return store.cat(cid, max_bytes=max_bytes), ""
        except ContentTooLargeError as exc:
            return b"", str(exc)
        except StoreError as exc:
            why = str(exc)
        if attempt + 1 < attempts:
            time.sleep(backoff * 2**attempt)
    return None, why


@dataclass
class RoundResult:
    """One settled round, as the owner's log and the demo see it."""

    first: int
    count: int
    version: int  # 0 if nothing was accepted
    score_before: float
    score_after: float
    verdicts: list[dict[str, Any]]  # per item: index, miner, share_bps, reason_code, reason, refund, reward, ...
    waiting: int = 0  # items after the round that the store could not deliver yet
    per_group: dict[str, float] = field(default_factory=dict)  # the new version's, with a group column
    #: miners whose earlier accepted updates' weights on the inputs their code-9 forfeits named the new
    #: version took back out of the model (:attr:`mine.round_policy.RoundPolicy.retract_convicted`)
    retracted: list[str] = field(default_factory=list)
    #: items judged but not settled: the round gained nothing and waits for more updates (``hold``)
    held: int = 0


def pending_items(client: SonarClient, bounty_id: int) -> tuple[int, int | None]:
    """``(queued, oldest submittedAt)`` of the submissions waiting to be settled."""
    bounty = client.bounty(bounty_id)
    queued = bounty.submissions - bounty.next_eval
    if queued <= 0:
        return 0, None
    return queued, client.submission(bounty_id, bounty.next_eval).submitted_at


def _advance_head(client: SonarClient, bounty_id: int) -> None:
    """Skip reclaimed / expired submissions at the head (their stakes go back to their miners)."""
    while True:
        bounty = client.bounty(bounty_id)
        if bounty.next_eval >= bounty.submissions:
            return
        sub = client.submission(bounty_id, bounty.next_eval)
        expired = sub.status == SubmissionStatus.SUBMITTED and client.now() > sub.submitted_at + bounty.eval_window
        if sub.status == SubmissionStatus.SUBMITTED and not expired:
            return
        client.skip(bounty_id)


def _submitted_cids(client: SonarClient, bounty_id: int) -> dict[int, str]:
    return {int(e["args"]["index"]): cid_from_chain(bytes(e["args"]["digest"]), int(e["args"]["codec"]))
            for e in client.events("UpdateSubmitted", bountyId=bounty_id)}


def _open(data: bytes | None, why: str, secret_key: bytes | None) -> tuple[bytes | None, str]:
    from mine.sealed import SealedError, open_sealed

    if data is None or not data or secret_key is None:
        return (data or None), why
    try:
        return open_sealed(data, secret_key), ""
    except SealedError as exc:
        return None, str(exc)


def settle_round(
    client: SonarClient,
    store: Store,
    home: MineHome,
    owned: OwnedBounty,
    val: Validation,
    *,
    current: LoadedVersion | None = None,
    max_items: int = MAX_ROUND,
    attempts: int = FETCH_ATTEMPTS,
    backoff: float = FETCH_BACKOFF,
    hold: bool = False,
) -> tuple[RoundResult | None, LoadedVersion]:
    """Judge the queue head and what follows it (up to `max_items`) as one round; settle it in one tx.

    With ``hold``, a round that makes no new version (nothing gained, or every subgroup not kept) and
    has room for more is not settled: nothing is sent or saved, and the result says how many items
    were ``held``. Its updates wait in the queue to be judged again with the next ones trained from
    the same version (the mean of more DP updates carries less noise); the caller must settle without
    ``hold`` while the head's window is still open.

    Returns (the round, or None if nothing could be settled; the current model version).
    """
    from mine.sealed import load_secret_key

    bid = owned.bounty_id
    current = current or load_version(client, store, bid)
    if current.version != client.bounty(bid).latest_version:
        current = load_version(client, store, bid)
    v0 = current.record if current.version == 0 else load_version(client, store, bid, 0).record
    policy = policy_of(v0)
    secret_key = load_secret_key(home, owned.public_key) if v0.encryption else None
    _advance_head(client, bid)
    bounty = client.bounty(bid)
    head, end = bounty.next_eval, min(bounty.submissions, bounty.next_eval + max(1, min(max_items, MAX_ROUND)))
    if head >= end:
        return None, current
    cids = _submitted_cids(client, bid)
    limit = current.manifest.max_weight_bytes + 64 * 1024
    items: list[RoundItem] = []
    waiting = 0
    for index in range(head, end):
        sub = client.submission(bid, index)
        if sub.status != SubmissionStatus.SUBMITTED:
            break
        data, why = fetch_with_retries(store, cids[index], max_bytes=limit, attempts=attempts, backoff=backoff)
        if data is None:  # the store's outage, not the miner's fault: this item and the rest wait
            waiting = end - index
            break
        plain, why = _open(data, why, secret_key)
        items.append(RoundItem(index, sub.miner, sub.base_version, plain, why and f"{REASONS[UNREADABLE]}: {why}"))
    if not items:
        return RoundResult(head, 0, 0, score_from_chain(bounty.best_score), score_from_chain(bounty.best_score), [],
                           waiting), current
    decision = policy.judge(current.manifest, current.state, items, (val.X, val.y, val.groups), bounty_id=bid,
                            current_version=current.version, history=owned.accepted_norms,
                            suspects=forfeited_miners(client, bid, head), evidence=evidence_from_json(owned.evidence))
    if hold and decision.new_state is None and len(items) < max(1, min(max_items, MAX_ROUND)):
        return RoundResult(head, 0, 0, decision.score_before, decision.score_before, [], held=len(items)), current
    verdicts = [Verdict(v.share_bps, 0 if v.accepted else v.reason_code, False if v.accepted else v.refund,
                        v.clawback) for v in decision.verdicts]
    new_version: LoadedVersion | None = None
    if decision.new_state is not None:
        accepted = [v.index for v in decision.accepted]
        cid, record = publish_version(store, current.manifest, decision.new_state, parent=current.cid,
                                      manifest_cid=current.record.manifest,
                                      round={"first": head, "count": len(items), "accepted": accepted,
                                             **({"retracted": list(decision.retracted)} if decision.retracted else {})})
        digest, codec = cid_to_chain(cid)
        receipt = client.settle(bid, verdicts, decision.chain_score, digest, codec)
        new_version = LoadedVersion(0, cid, record, current.manifest, decision.new_state, decision.chain_score)
    else:
        receipt = client.settle(bid, verdicts, bounty.best_score)
    (settled,) = client.receipt_events(receipt, "RoundSettled")
    rewards = {int(e["args"]["index"]): int(e["args"]["reward"]) for e in client.receipt_events(receipt, "UpdateAccepted")}
    clawed = {int(e["args"]["index"]): int(e["args"]["amount"])
              for e in client.receipt_events(receipt, "RewardsClawedBack")}
    version = int(settled["args"]["version"])
    if new_version is not None:
        new_version.version = version
        current = new_version
        owned.accepted_norms.extend(v.norm for v in decision.accepted)
    owned.evidence = evidence_to_json(decision.evidence)
    result = RoundResult(head, len(items), version, decision.score_before,
                         decision.score_after if decision.new_state is not None else decision.score_before,
                         [{**_verdict_dict(v), "reward": rewards.get(v.index, 0), "clawed_back": clawed.get(v.index, 0)}
                          for v in decision.verdicts], waiting,
                         dict(decision.per_group_after) if new_version is not None and val.groups is not None else {},
                         list(decision.retracted))
    owned.rounds.append(asdict(result))
    owned.save(home)
    return result, current


def _verdict_dict(v: Any) -> dict[str, Any]:
    d = asdict(v)
    for key in ("norm", "contribution", "alignment", "harm", "similarity"):
        if d[key] != d[key]:  # NaN is not JSON
            d[key] = None
    return d


# ---------------------------------------------------------------------- audit


@dataclass
class AuditFinding:
    what: str  # "version 3", "round #4..#11: submission #5"
    reported: str
    replayed: str
    note: str = ""

    def __str__(self) -> str:
        extra = f" ({self.note})" if self.note else ""
        return f"{self.what}: reported {self.reported}, replays to {self.replayed}{extra}"


def _verdict_text(share: int, reason: int, refund: bool) -> str:
    if share > 0:
        return f"accepted ({share} bps)"
    return f"rejected [{reason}] ({'stake returned' if refund else 'stake forfeited'})"


def fetch_audit_bundle(client: SonarClient, store: Store, bounty_id: int) -> tuple[bytes, bytes, str | None]:
    """The revealed audit bundle of a bounty: ``(validation file bytes, secret key, group column or None)``."""
    events = client.events("AuditRevealed", bountyId=bounty_id)
    if not events:
        raise ValidationError(f"bounty {bounty_id} has not revealed its audit bundle yet (`mine bounty reveal`); "
                              "nothing to replay against")
    args = events[-1]["args"]
    bundle_cid = cid_from_chain(bytes(args["digest"]), int(args["codec"]))
    validation_cid, secret_key, group = parse_bundle(store.cat(bundle_cid, max_bytes=MAX_BUNDLE_BYTES))
    return store.cat(validation_cid, max_bytes=MAX_VALIDATION_BYTES), secret_key, group


def audit(client: SonarClient, store: Store, bounty_id: int, val: Validation, secret_key: bytes | None
          ) -> tuple[int, list[AuditFinding]]:
    """Replay a bounty from chain + store + audit bundle: every model version, every settled round.

    Each round (`RoundSettled`: first index, count) is judged again with the policy recorded in
    version 0, against the version that was current then; every verdict (share, reason, refund),
    every clawback that took rewards (`RewardsClawedBack`), the reported score and the published
    weights must match. Returns (items checked, mismatches).
    """
    findings: list[AuditFinding] = []
    bounty = client.bounty(bounty_id)
    versions = [load_version(client, store, bounty_id, v) for v in range(bounty.latest_version + 1)]
    for loaded in versions:
        replayed, _ = score_model(loaded.manifest, loaded.state, val)
        if score_to_chain(replayed) != loaded.score:
            findings.append(AuditFinding(f"version {loaded.version}", f"{score_from_chain(loaded.score):.6f}",
                                         f"{replayed:.6f}"))
    checked = len(versions)
    policy = policy_of(versions[0].record)
    cids = _submitted_cids(client, bounty_id)
    reported: dict[int, tuple[int, int, bool]] = {}
    for e in client.events("UpdateAccepted", bountyId=bounty_id):
        reported[int(e["args"]["index"])] = (int(e["args"]["shareBps"]), 0, False)
    for e in client.events("UpdateRejected", bountyId=bounty_id):
        reported[int(e["args"]["index"])] = (0, int(e["args"]["reason"]), bool(e["args"]["refunded"]))
    # a clawback shows on chain only when it took something: the replay must have asked for each one
    clawed = {int(e["args"]["index"]): int(e["args"]["amount"])
              for e in client.events("RewardsClawedBack", bountyId=bounty_id)}
    submissions = {i: client.submission(bounty_id, i) for i in reported}
    rounds = sorted((e["args"] for e in client.events("RoundSettled", bountyId=bounty_id)),
                    key=lambda a: int(a["firstIndex"]))
    current, history, evidence = versions[0], [], {}
    for r in rounds:
        first, count, version = int(r["firstIndex"]), int(r["count"]), int(r["version"])
        what = f"round #{first}..#{first + count - 1}"
        items: list[RoundItem] = []
        for index in range(first, first + count):
            data, why = fetch_with_retries(store, cids[index], max_bytes=current.manifest.max_weight_bytes + 65536)
            if data is None:
                findings.append(AuditFinding(what, "settled", "not replayable", f"submission #{index} cannot be fetched"))
                break
            plain, why = _open(data, why, secret_key)
            sub = submissions[index]
            items.append(RoundItem(index, sub.miner, sub.base_version, plain, why))
        else:
            # the miners forfeited before this round, as the chain reports them (what the owner used)
            suspects = dict(Counter(submissions[i].miner for i, (share, _, refund) in reported.items()
                                    if i < first and share == 0 and not refund))
            decision: RoundDecision = policy.judge(current.manifest, current.state, items, (val.X, val.y, val.groups),
                                                   bounty_id=bounty_id, current_version=current.version,
                                                   history=history, suspects=suspects, evidence=evidence)
            evidence = decision.evidence
            for v in decision.verdicts:
                checked += 1
                mine_ = (v.share_bps, 0 if v.accepted else v.reason_code, False if v.accepted else v.refund)
                if reported[v.index] != mine_:
                    findings.append(AuditFinding(f"{what}: submission #{v.index}", _verdict_text(*reported[v.index]),
                                                 _verdict_text(*mine_), v.reason if not v.accepted else ""))
                if v.index in clawed and not v.clawback:
                    findings.append(AuditFinding(f"{what}: submission #{v.index}",
                                                 f"clawback of {clawed[v.index]} wei", "no clawback",
                                                 "the replayed policy takes back no rewards here"))
            if (version != 0) != (decision.new_state is not None):
                findings.append(AuditFinding(what, "a new version" if version else "no new version",
                                             "a new version" if decision.new_state is not None else "no new version"))
            elif version != 0 and decision.new_state is not None:
                published = versions[version]
                if int(r["score"]) != decision.chain_score:
                    findings.append(AuditFinding(f"{what}: score", f"{score_from_chain(int(r['score'])):.6f}",
                                                 f"{score_from_chain(decision.chain_score):.6f}"))
                weights = store.add(state_to_bytes(decision.new_state), only_hash=True)
                if weights != published.record.weights:
                    findings.append(AuditFinding(f"{what}: version {version} weights", published.record.weights,
                                                 weights, "not the aggregate of the accepted updates"))
            history.extend(v.norm for v in decision.accepted)
        if version != 0:
            current = versions[version]
    return checked, findings


def save_audit_result(home: MineHome, client: SonarClient, bounty_id: int, checked: int,
                      findings: list[AuditFinding]) -> Path:
    """Remember an audit's outcome (for the owner history in `mine bounties`)."""
    path = home.root / "audits" / f"{client.address}-{bounty_id}.json"
    write_json_atomic(path, {"sonar": client.address, "bounty": bounty_id, "owner": client.bounty(bounty_id).owner,
                             "checked": checked, "mismatches": [str(f) for f in findings], "at": int(time.time())})
    return path


def audit_results(home: MineHome, sonar: str) -> list[dict[str, Any]]:
    """Every audit this mine ran against the Sonar at `sonar`."""
    folder = home.root / "audits"
    if not folder.exists():
        return []
    return [read_json(p, {}) for p in sorted(folder.glob(f"{sonar}-*.json"))]


__all__ = [
    "AuditFinding", "OwnedBounty", "RoundResult", "Validation", "audit", "audit_bundle", "audit_results",
    "create_bounty", "fetch_audit_bundle", "fetch_with_retries", "parse_bundle", "pending_items", "policy_of",
    "reveal_audit", "save_audit_result", "settle_round",
]
