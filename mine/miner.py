"""The data owner's loop: fetch the bounty's model, train on local data, submit the update.

`train_update` never sends anything anywhere: it reads the dataset in place and writes the update
(a weight delta in safetensors, plus metadata: base version, examples used, local metrics) to the
outbox. `submit` puts only that update in the store and runs commit–reveal with a journal, so a
crash between commit and reveal is finished by the next `submit`/`status` without a second commit.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mine.chain import BountyStatus, SonarClient, SubmissionStatus, commitment
from mine.errors import ChainError, ValidationError
from mine.home import MineHome, read_json, write_json_atomic
from mine.store import Store, cid_to_chain

if TYPE_CHECKING:  # torch and numpy are imported by train_update only: `mine status` starts fast
    import numpy as np

    from mine.versions import LoadedVersion

MAX_UPDATE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class TrainedUpdate:
    path: Path
    bounty_id: int
    base_version: int
    examples: int
    loss: float
    metric: float
    seconds: float


def train_update(
    home: MineHome,
    client: SonarClient,
    store: Store,
    bounty_id: int,
    X: np.ndarray,
    y: np.ndarray,
    columns: list[str],
    *,
    epochs: int | None = None,
    lr: float | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    on_batch: Callable[[int, int], None] | None = None,
    transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    base: LoadedVersion | None = None,
) -> TrainedUpdate:
    """Train the bounty's latest model on (X, y) and write the update to the outbox.

    `transform` may rewrite the delta before it is written (the demo's simulated attacks use it).
    """
    import numpy as np

    from mine.datasets import select_features
    from mine.model import build_model, make_update
    from mine.train import train
    from mine.versions import load_version

    bounty = client.bounty(bounty_id)
    if bounty.status != BountyStatus.OPEN:
        raise ChainError(f"bounty {bounty_id} is {bounty.status.name.lower()}; it takes no more updates")
    base = base or load_version(client, store, bounty_id)
    manifest = base.manifest
    features = select_features(X, columns, list(manifest.features)).astype(np.float32, copy=False)
    defaults = manifest.training
    model = build_model(manifest)
    model.load_state_dict(base.state)
    result = train(
        model, features, y, manifest,
        epochs=epochs or int(defaults["epochs"]), lr=lr or float(defaults["lr"]),
        batch_size=batch_size or int(defaults["batch_size"]), seed=seed, on_batch=on_batch,
    )
    trained = {k: v.detach().clone() for k, v in model.state_dict().items()}
    delta = {k: trained[k] - base.state[k] for k in base.state}
    if transform is not None:
        delta = transform(delta)
    metadata = {
        "bounty": str(bounty_id), "base_version": str(base.version), "base_cid": base.cid,
        "examples": str(result.examples), "loss": f"{result.loss:.6g}", "metric": f"{result.metric:.6g}",
    }
    data = make_update(base.state, {k: base.state[k] + delta[k] for k in base.state}, metadata)
    home.outbox.mkdir(parents=True, exist_ok=True)
    path = home.outbox / f"bounty{bounty_id}-v{base.version}-{time.time_ns()}.safetensors"
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    write_json_atomic(path.with_suffix(".json"), {"bounty": bounty_id, "base_version": base.version, **metadata})
    return TrainedUpdate(path, bounty_id, base.version, result.examples, result.loss, result.metric, result.seconds)


# ---------------------------------------------------------------------- submission journal


@dataclass
class JournalEntry:
    bounty: int
    update: str  # outbox path
    cid: str
    digest: str  # hex
    codec: int
    base_version: int
    salt: str  # hex; written before the commit is sent
    miner: str
    state: str = "prepared"  # prepared -> committed -> revealed (or abandoned: never committed)
    index: int | None = None


class Journal:
    """Submissions in flight, one JSON file, rewritten atomically at every step."""

    def __init__(self, home: MineHome) -> None:
        self.path = home.root / "journal.json"

    def entries(self) -> list[JournalEntry]:
        return [JournalEntry(**e) for e in read_json(self.path, [])]

    def save(self, entries: list[JournalEntry]) -> None:
        write_json_atomic(self.path, [asdict(e) for e in entries])

    def upsert(self, entry: JournalEntry) -> None:
        entries = [e for e in self.entries() if not (e.bounty == entry.bounty and e.cid == entry.cid)]
        self.save(entries + [entry])


def _find_commit(client: SonarClient, entry: JournalEntry, commit_hash: bytes) -> int | None:
    """Index of an already mined commit of this entry (after a crash), if any."""
    for log in client.events("UpdateCommitted", bountyId=entry.bounty, miner=entry.miner):
        if bytes(log["args"]["commitment"]) == commit_hash:
            return int(log["args"]["index"])
    return None


def submit(home: MineHome, client: SonarClient, store: Store, bounty_id: int, update_path: Path) -> JournalEntry:
    """Store the update, commit, reveal. Safe to call again after a crash at any point."""
    if client.account is None:
        raise ChainError("submitting needs an account")
    data = update_path.read_bytes()
    if len(data) > MAX_UPDATE_BYTES:
        raise ValidationError(f"update is {len(data)} bytes, over the {MAX_UPDATE_BYTES}-byte limit")
    meta = read_json(update_path.with_suffix(".json"), None)
    if meta is None:
        raise ValidationError(f"{update_path} has no metadata file beside it; train it with `mine train`")
    if int(meta["bounty"]) != bounty_id:
        raise ValidationError(f"{update_path.name} was trained for bounty {meta['bounty']}, not {bounty_id}")
    cid = store.add(data)
    digest, codec = cid_to_chain(cid)
    journal = Journal(home)
    entry = next((e for e in journal.entries() if e.bounty == bounty_id and e.cid == cid), None)
    if entry is None or entry.state == "abandoned":
        entry = JournalEntry(
            bounty=bounty_id, update=str(update_path), cid=cid, digest=digest.hex(), codec=codec,
            base_version=int(meta["base_version"]), salt=os.urandom(32).hex(), miner=client.account.address,
        )
        journal.upsert(entry)  # the salt is on disk before the commit can be mined
    return resume(journal, client, entry)


def resume(journal: Journal, client: SonarClient, entry: JournalEntry) -> JournalEntry:
    """Carry one journal entry forward: commit if needed, then reveal."""
    digest, salt = bytes.fromhex(entry.digest), bytes.fromhex(entry.salt)
    commit_hash = commitment(entry.bounty, entry.miner, digest, entry.codec, entry.base_version, salt)
    if entry.state == "prepared":
        index = _find_commit(client, entry, commit_hash)
        if index is None:
            bounty = client.bounty(entry.bounty)
            try:
                index, _ = client.commit(entry.bounty, commit_hash, stake=bounty.stake, token=bounty.token)
            except ChainError:
                bounty = client.bounty(entry.bounty)
                if bounty.status != BountyStatus.OPEN or client.now() > bounty.deadline:
                    entry.state = "abandoned"  # never committed, no stake paid; the bounty takes no more
                    journal.upsert(entry)
                raise
        entry.index, entry.state = index, "committed"
        journal.upsert(entry)
    if entry.state == "committed":
        assert entry.index is not None
        sub = client.submission(entry.bounty, entry.index)
        if sub.status == SubmissionStatus.COMMITTED:
            client.reveal(entry.bounty, entry.index, digest, entry.codec, entry.base_version, salt)
        entry.state = "revealed"
        journal.upsert(entry)
    return entry


def resume_all(home: MineHome, client: SonarClient) -> tuple[list[JournalEntry], list[str]]:
    """Finish every interrupted submission of this account (called by `submit` and `status`).

    Returns the entries carried forward and, for those that could not be, why (they stay in the
    journal for the next try, unless their bounty no longer takes them).
    """
    journal = Journal(home)
    done, problems = [], []
    for entry in journal.entries():
        if entry.state in ("revealed", "abandoned") or not client.account or entry.miner != client.account.address:
            continue
        try:
            done.append(resume(journal, client, entry))
        except ChainError as exc:
            problems.append(f"bounty {entry.bounty}, update {entry.cid}: {exc}")
    return done, problems
