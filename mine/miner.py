"""The data owner's loop: fetch the bounty's model, train on local data, submit the update.

`train_update` never sends anything anywhere: it reads the dataset in place and writes the update
(a DP-SGD weight delta in safetensors, plus metadata: base version, miner, (ε, δ), a size bucket) to
the outbox. `submit` seals that update to the
bounty owner's key (the miner's address is inside, so a copied CID is worthless), stores the
ciphertext and sends ONE transaction with the stake. A journal entry is written before the
transaction; after a crash the next `submit`/`status` finds the mined submission in the
`UpdateSubmitted` events (miner + digest) instead of submitting twice. `submit_many` does the same
for several mines' updates at once (a demo round), broadcasting them back to back and then
awaiting the receipts together.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mine.contract import BountyStatus
from mine.errors import ChainError, ValidationError
from mine.home import MineHome, read_json, write_json_atomic
from mine.store import Store, cid_to_chain

if TYPE_CHECKING:  # torch and numpy are imported by train_update only, web3 by the client: `mine status` starts fast
    import numpy as np

    from mine.chain import SonarClient

    from mine.dp import DPRecord, DPSettings
    from mine.model import Manifest

    from mine.versions import LoadedVersion, VersionRecord

MAX_UPDATE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class TrainedUpdate:
    """An update written to the outbox. ``examples``/``loss``/``metric`` are local only (never published)."""

    path: Path
    bounty_id: int
    base_version: int
    examples: int
    loss: float
    metric: float
    seconds: float
    dp: DPRecord | None = None  # None: trained with --no-dp


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
    dp_settings: DPSettings | None = None,
    no_dp: bool = False,
    dataset: str | None = None,
    miner: str | None = None,
) -> TrainedUpdate:
    """Train the bounty's latest model on (X, y) with DP-SGD and write the update to the outbox.

    DP settings: ``dp_settings``, else :func:`mine.dp.default_settings` (the manifest's ``training.dp``
    or the defaults for its task);
    ``epochs``/``lr`` override them. ``no_dp=True`` trains plainly (``epochs``, ``lr``,
    ``batch_size``) and says so in the update (``dp = "off"``). With ``dataset`` (a vault name) the
    update is charged to that dataset's privacy ledger first, and refused past its budget.

    The update's metadata is what the protocol needs and no more: ``bounty``, ``base_version``,
    ``base_cid``, ``miner`` (checksummed address; default the client's account), ``dp`` (the
    mechanism and its (ε, δ), or ``"off"``) and ``examples_bucket`` (power of two ≤ the row count).
    No local loss or metric. `transform` may rewrite the delta before it is written (the demo's
    simulated attacks use it).
    """
    import numpy as np
    from eth_utils import to_checksum_address

    from mine.datasets import select_features
    from mine.dp import default_settings, examples_bucket, train_dp
    from mine.ledger import PrivacyLedger
    from mine.model import build_model, make_update
    from mine.train import train
    from mine.versions import load_version

    bounty = client.bounty(bounty_id)
    if bounty.status != BountyStatus.OPEN:
        raise ChainError(f"bounty {bounty_id} is {bounty.status.name.lower()}; it takes no more updates")
    if miner is None and client.account is not None:
        miner = client.account.address
    if miner is None:
        raise ValidationError("an update names its miner: give the address that will submit it")
    miner = to_checksum_address(miner)
    base = base or load_version(client, store, bounty_id)
    terms = _bounty_record(client, store, bounty_id) if base.version else base.record
    manifest = base.manifest
    features = select_features(X, columns, list(manifest.features)).astype(np.float32, copy=False)
    defaults = manifest.training
    model = build_model(manifest)
    model.load_state_dict(base.state)
    record: DPRecord | None = None
    if no_dp:
        if dp_settings is not None:
            raise ValidationError("DP settings were given together with no_dp; choose one")
        check_privacy_terms(terms, "off", doing="trained")
        if dataset is not None:
            PrivacyLedger(home).spend(dataset, rows=len(features), noise_multiplier=0.0, sample_rate=1.0, steps=1,
                                      epsilon=math.inf, delta=0.0, bounty=bounty_id, note="--no-dp", enforce=False)
        result = train(
            model, features, y, manifest,
            epochs=epochs or int(defaults["epochs"]), lr=lr or float(defaults["lr"]),
            batch_size=batch_size or int(defaults["batch_size"]), seed=seed, on_batch=on_batch,
        )
    else:
        if batch_size is not None:
            raise ValidationError("with DP the batch is Poisson-sampled: set the sample rate instead of a batch size")
        settings = dp_settings or default_settings(manifest)
        if epochs is not None:
            settings = settings.replace(epochs=epochs, steps=None)
        if lr is not None:
            settings = settings.replace(lr=lr)
        record = settings.resolve(len(features))
        check_privacy_terms(terms, record.to_json(), doing="trained")
        check_learning_rate(terms, manifest, settings)
        entry = None
        if dataset is not None:
            entry, _ = PrivacyLedger(home).spend(
                dataset, rows=len(features), noise_multiplier=record.noise_multiplier, sample_rate=record.sample_rate,
                steps=record.steps, epsilon=record.epsilon, delta=record.delta, bounty=bounty_id)
        try:
            out = train_dp(model, features, y, manifest, settings, seed=seed, on_batch=on_batch)
        except BaseException:
            if entry is not None:
                PrivacyLedger(home).refund(dataset, entry.id)  # nothing left the mine
            raise
        result, record = out.result, out.record
    trained = {k: v.detach().clone() for k, v in model.state_dict().items()}
    delta = {k: trained[k] - base.state[k] for k in base.state}
    if transform is not None:
        delta = transform(delta)
    metadata = {
        "bounty": str(bounty_id), "base_version": str(base.version), "base_cid": base.cid, "miner": miner,
        "dp": "off" if record is None else record.to_json(), "examples_bucket": str(examples_bucket(result.examples)),
    }
    data = make_update(base.state, {k: base.state[k] + delta[k] for k in base.state}, metadata)
    home.outbox.mkdir(parents=True, exist_ok=True)
    path = home.outbox / f"bounty{bounty_id}-v{base.version}-{time.time_ns()}.safetensors"
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    write_json_atomic(path.with_suffix(".json"), {"bounty": bounty_id, "base_version": base.version, **metadata})
    return TrainedUpdate(path, bounty_id, base.version, result.examples, result.loss, result.metric, result.seconds,
                         record)


# ---------------------------------------------------------------------- submission journal

#: Defaults of the miner's limits (config keys `min_eval_window` in seconds, `max_stake` in whole tokens).
DEFAULT_MIN_EVAL_WINDOW = 1800
DEFAULT_MAX_STAKE = "0.1"


@dataclass
class JournalEntry:
    bounty: int
    update: str  # outbox path of the plaintext update
    sealed: str  # outbox path of the ciphertext that was stored (same bytes on every retry)
    cid: str
    digest: str  # hex
    codec: int
    base_version: int
    miner: str
    ephemeral_secret: str = ""  # hex; proves later what the ciphertext held (empty: not sealed)
    state: str = "prepared"  # prepared -> submitted (or abandoned: never submitted, no stake paid)
    index: int | None = None


class Journal:
    """Submissions in flight, one JSON file, rewritten atomically at every step."""

    def __init__(self, home: MineHome) -> None:
        self.path = home.root / "journal.json"

    def entries(self) -> list[JournalEntry]:
        known = set(JournalEntry.__dataclass_fields__)
        return [JournalEntry(**{k: v for k, v in e.items() if k in known}) for e in read_json(self.path, [])
                if "sealed" in e]

    def save(self, entries: list[JournalEntry]) -> None:
        write_json_atomic(self.path, [asdict(e) for e in entries])

    def upsert(self, entry: JournalEntry) -> None:
        entries = [e for e in self.entries() if not (e.bounty == entry.bounty and e.update == entry.update)]
        self.save(entries + [entry])


def check_bounty_terms(home: MineHome, client: SonarClient, bounty: Any) -> None:
    """Refuse a bounty whose evaluation window is below, or stake above, this mine's limits."""
    from mine.amounts import format_amount, parse_units, token_meta

    extra = home.load_config().extra if home.exists() else {}
    min_window = int(extra.get("min_eval_window", DEFAULT_MIN_EVAL_WINDOW))
    decimals, symbol = token_meta(client.w3, bounty.token)
    max_stake = parse_units(str(extra.get("max_stake", DEFAULT_MAX_STAKE)), decimals)
    if bounty.eval_window < min_window:
        raise ChainError(
            f"bounty {bounty.id}'s evaluation window is {bounty.eval_window} s, below this mine's minimum of "
            f"{min_window} s: the owner could let your update expire unjudged. Not submitting (lower "
            "`min_eval_window` in config.json to accept it)")
    if bounty.stake > max_stake:
        raise ChainError(
            f"bounty {bounty.id} asks a stake of {format_amount(bounty.stake, decimals, symbol)}, above this mine's "
            f"maximum of {format_amount(max_stake, decimals, symbol)}. Not submitting (raise `max_stake` in "
            "config.json to accept it)")


def _find_submission(client: SonarClient, entry: JournalEntry) -> int | None:
    """Index of an already mined submission of this entry (after a crash), if any."""
    digest = bytes.fromhex(entry.digest)
    for log in client.events("UpdateSubmitted", bountyId=entry.bounty, miner=entry.miner):
        if bytes(log["args"]["digest"]) == digest and int(log["args"]["codec"]) == entry.codec:
            return int(log["args"]["index"])
    return None


def _bounty_record(client: SonarClient, store: Store, bounty_id: int) -> VersionRecord:
    """Version 0's record: the bounty's sealing key, policy and ε cap."""
    from mine.store import cid_from_chain
    from mine.versions import fetch_record

    mv = client.model_version(bounty_id, 0)
    return fetch_record(store, cid_from_chain(mv.digest, mv.codec))


def check_privacy_terms(record: VersionRecord, dp_metadata: str | None, *, doing: str = "submitted") -> None:
    """Refuse an update the bounty's ε cap would forfeit (code 7): before training (no privacy
    budget spent) and again before submitting (no stake moved)."""
    from mine.policy import check_epsilon

    rejection = check_epsilon(dp_metadata, max_epsilon=record.max_epsilon)
    if rejection is not None:
        raise ValidationError(f"not {doing}: the owner would forfeit the stake — {rejection.reason}; train "
                              f"with `mine train --epsilon {record.max_epsilon:g}` (or less)")


def check_learning_rate(record: VersionRecord, manifest: Manifest, settings: DPSettings) -> None:
    """Refuse DP training the owner would forfeit as boosted (code 4): a bounty with the mechanism
    bound (:attr:`mine.round_policy.RoundPolicy.mechanism_bound`) bounds an update by its steps times
    the bounty's DP learning rate and optimizer, so a larger ``--lr`` (or another optimizer) looks
    scaled after training. Checked before any privacy budget is spent."""
    from mine.dp import default_settings
    from mine.owner import policy_of

    try:
        if not record.policy or not policy_of(record).mechanism_bound:
            return
    except ValidationError:
        return  # not a round policy's record: the owner's client says so when it settles
    optimizer, lr = default_settings(manifest).optimizer_and_lr(manifest.training)
    if optimizer != "sgd":
        return  # no bound is applied (see mine.concentration.declared_noise_std)
    mine_optimizer, mine_lr = settings.optimizer_and_lr(manifest.training)
    if mine_optimizer != "sgd" or mine_lr > lr * (1 + 1e-9):
        raise ValidationError(f"not trained: the owner would forfeit the stake — the bounty bounds a DP update by "
                              f"its steps x the bounty's learning rate {lr:g} with SGD (a larger step looks scaled "
                              f"after training); train with `--lr {lr:g}` (or less) and SGD")


def _seal_for_bounty(record: VersionRecord, data: bytes) -> tuple[bytes, str]:
    """The update sealed to the owner's key in version 0's record (plaintext if the bounty has none)."""
    from mine.sealed import public_key_from_record, seal

    if record.encryption is None:
        return data, ""
    ciphertext, eph = seal(data, public_key_from_record(record.encryption))
    return ciphertext, eph.hex()


def prepare_submission(home: MineHome, client: SonarClient, store: Store, bounty_id: int,
                       update_path: Path) -> tuple[Journal, JournalEntry]:
    """Check the bounty's terms, seal the update and write its journal entry (before any transaction)."""
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
    journal = Journal(home)
    entry = next((e for e in journal.entries() if e.bounty == bounty_id and e.update == str(update_path)), None)
    if entry is not None and entry.state == "submitted":
        return journal, entry
    new = entry is None or entry.state == "abandoned"  # else a prepared entry: finish what was started
    bounty = client.bounty(bounty_id)
    check_bounty_terms(home, client, bounty)
    if new and int(meta["base_version"]) != bounty.latest_version:
        raise ValidationError(
            f"{update_path.name} was trained from version {meta['base_version']} of bounty {bounty_id}'s model, which "
            f"is at version {bounty.latest_version} now: the owner would reject it as stale (code 2). Train on the "
            f"current version: `mine train {bounty_id} --dataset NAME`")
    record = _bounty_record(client, store, bounty_id)
    check_privacy_terms(record, meta.get("dp"))
    if new:
        ciphertext, eph = _seal_for_bounty(record, data)
        sealed = update_path.with_suffix(".sealed")
        tmp = sealed.with_suffix(".sealed-tmp")
        tmp.write_bytes(ciphertext)
        os.replace(tmp, sealed)
        cid = store.add(ciphertext, only_hash=True)
        digest, codec = cid_to_chain(cid)
        entry = JournalEntry(
            bounty=bounty_id, update=str(update_path), sealed=str(sealed), cid=cid, digest=digest.hex(), codec=codec,
            base_version=int(meta["base_version"]), miner=client.account.address, ephemeral_secret=eph,
        )
        journal.upsert(entry)  # on disk before the transaction can be mined
    return journal, entry


def submit(home: MineHome, client: SonarClient, store: Store, bounty_id: int, update_path: Path) -> JournalEntry:
    """Seal and store the update, then submit it with the stake in one transaction. Safe to rerun after a crash."""
    journal, entry = prepare_submission(home, client, store, bounty_id, update_path)
    return resume(journal, client, store, entry)


def submit_many(jobs: list[tuple[MineHome, SonarClient, Path]], store: Store, bounty_id: int) -> list[JournalEntry]:
    """Several mines' updates for one bounty (e.g. one round's), broadcast back to back and awaited together.

    Each job is (home, client, update); their submissions are independent (one per account), so
    none waits for another's receipt. Every entry is journalled before its transaction, exactly as
    `submit` does: after a crash `mine status` (or `submit`) finishes whatever was not mined.
    """
    prepared = [(client, *prepare_submission(home, client, store, bounty_id, path)) for home, client, path in jobs]
    if not prepared:
        return []
    bounty = prepared[0][0].bounty(bounty_id)
    value = bounty.stake if int(bounty.token, 16) == 0 else 0
    sent = {}
    for n, (client, _, entry) in enumerate(prepared):
        if entry.state != "prepared" or _find_submission(client, entry) is not None:
            continue  # already mined (a rerun after a crash): `resume` below records it
        store.add(Path(entry.sealed).read_bytes())
        client.ensure_allowance(bounty.token, bounty.stake)
        sent[n] = client.send_many([("submit", (bounty_id, bytes.fromhex(entry.digest), entry.codec,
                                                 entry.base_version), value)])
    done = []
    for n, (client, journal, entry) in enumerate(prepared):
        if n in sent:
            (receipt,) = client.wait_many(sent[n])
            (event,) = client.receipt_events(receipt, "UpdateSubmitted")
            entry.index, entry.state = int(event["args"]["index"]), "submitted"
            journal.upsert(entry)
        done.append(resume(journal, client, store, entry))
    return done


def resume(journal: Journal, client: SonarClient, store: Store | None, entry: JournalEntry) -> JournalEntry:
    """Carry one journal entry forward: (re)store the ciphertext, submit unless already mined."""
    if entry.state != "prepared":
        return entry
    index = _find_submission(client, entry)
    if index is None:
        if store is not None:
            store.add(Path(entry.sealed).read_bytes())
        bounty = client.bounty(entry.bounty)
        try:
            index, _ = client.submit(entry.bounty, bytes.fromhex(entry.digest), entry.codec, entry.base_version,
                                     stake=bounty.stake, token=bounty.token)
        except ChainError:
            bounty = client.bounty(entry.bounty)
            if bounty.status != BountyStatus.OPEN or client.now() > bounty.deadline:
                entry.state = "abandoned"  # never submitted, no stake paid; the bounty takes no more
                journal.upsert(entry)
            raise
    entry.index, entry.state = index, "submitted"
    journal.upsert(entry)
    return entry


def unfinished(home: MineHome, miner: str | None) -> list[JournalEntry]:
    """Journal entries of `miner` that were prepared but not yet submitted: what `resume_all` finishes.

    Reading them needs no key, so `mine status` unlocks the account only when there are some.
    """
    if not miner:
        return []
    return [e for e in Journal(home).entries() if e.state == "prepared" and e.miner == miner]


def resume_all(home: MineHome, client: SonarClient, store: Store | None = None) -> tuple[list[JournalEntry], list[str]]:
    """Finish every interrupted submission of this account (called by `submit` and `status`).

    Returns the entries carried forward and, for those that could not be, why (they stay in the
    journal for the next try, unless their bounty no longer takes them).
    """
    journal = Journal(home)
    done, problems = [], []
    for entry in unfinished(home, client.account.address if client.account else None):
        try:
            done.append(resume(journal, client, store, entry))
        except (ChainError, OSError) as exc:
            problems.append(f"bounty {entry.bounty}, update {entry.cid}: {exc}")
    return done, problems
