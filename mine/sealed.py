"""Updates sealed to the bounty owner: libsodium sealed boxes, built so the miner can prove what it sent.

A sealed box (``crypto_box_seal``) is X25519 + XSalsa20-Poly1305 with a fresh ephemeral keypair:

    ciphertext = eph_pk ‖ crypto_box(plaintext, nonce = blake2b(eph_pk ‖ owner_pk, 24 bytes), owner_pk, eph_sk)

libsodium throws ``eph_sk`` away. :func:`seal` builds the same bytes explicitly with
``nacl.public.Box(eph_sk, owner_pk)`` and returns ``eph_sk`` too, so ``SealedBox(owner_sk).decrypt``
opens them unchanged, and the miner can keep ``eph_sk`` in its journal: revealing it later lets
anyone holding the ciphertext (and the owner's public key) decrypt it with
:func:`open_with_ephemeral` and check what the miner sent — for audits and disputes — without the
owner's secret key.

Why PyNaCl sealed boxes rather than ECIES over secp256k1: libsodium is the most reviewed small
crypto library there is, the construction has no parameters to get wrong (no curve point
encoding, KDF or MAC choice), and the owner's encryption key stays separate from its Ethereum
signing key (one key per bounty, revealable in the audit bundle without touching funds).

The owner's per-bounty secret keys live in ``$MINE_HOME/keys/`` (0700), one 0600 JSON file per
public key; the public key goes in version 0's record (:func:`encryption_record`), whose CID is on
chain, so a miner encrypts to the key the owner committed to.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.public

from mine.errors import ConfigError, ValidationError
from mine.home import MineHome, read_json, write_json_atomic

__all__ = [
    "AUDIT_BUNDLE_KIND",
    "AuditBundle",
    "KEY_BYTES",
    "OVERHEAD",
    "SCHEME",
    "SealedError",
    "BountyKeyMissingError",
    "encryption_record",
    "make_audit_bundle",
    "parse_audit_bundle",
    "generate_keypair",
    "load_secret_key",
    "new_bounty_key",
    "open_sealed",
    "open_with_ephemeral",
    "public_key_from_record",
    "public_key_of",
    "seal",
]

#: The scheme name recorded in version 0's ``encryption`` field.
SCHEME = "x25519-xsalsa20poly1305-sealedbox"
#: Length of X25519 public and secret keys.
KEY_BYTES = 32
#: Bytes a sealed box adds to its plaintext: the ephemeral public key and the Poly1305 tag.
OVERHEAD = KEY_BYTES + 16


class SealedError(ValidationError):
    """Sealed bytes could not be opened: wrong key, truncated or tampered with, or not a sealed box.

    A ``ValidationError`` (like :class:`mine.model.UnreadableError`): to the owner an update that
    does not open is unreadable.
    """


class BountyKeyMissingError(ConfigError):
    """This mine holds no secret key for a bounty's encryption public key."""


def _key(value: bytes | str, what: str) -> bytes:
    if isinstance(value, str):
        try:
            value = bytes.fromhex(value.removeprefix("0x"))
        except ValueError:
            raise ValidationError(f"{what} is not hex") from None
    if not isinstance(value, (bytes, bytearray)) or len(value) != KEY_BYTES:
        raise ValidationError(f"{what} must be {KEY_BYTES} bytes")
    return bytes(value)


def _nonce(eph_pk: bytes, public_key: bytes) -> bytes:
    # libsodium's crypto_box_seal nonce: unkeyed BLAKE2b-192 of eph_pk ‖ recipient_pk
    return hashlib.blake2b(eph_pk + public_key, digest_size=nacl.public.Box.NONCE_SIZE).digest()


def generate_keypair() -> tuple[bytes, bytes]:
    """A fresh X25519 keypair ``(secret_key, public_key)`` from the OS's CSPRNG."""
    sk = nacl.public.PrivateKey.generate()
    return bytes(sk), bytes(sk.public_key)


def public_key_of(secret_key: bytes | str) -> bytes:
    """The X25519 public key of a secret key."""
    return bytes(nacl.public.PrivateKey(_key(secret_key, "secret key")).public_key)


def seal(plaintext: bytes, public_key: bytes | str) -> tuple[bytes, bytes]:
    """Encrypt ``plaintext`` to ``public_key``; returns ``(ciphertext, ephemeral_secret)``.

    ``ciphertext`` is byte for byte what libsodium's ``crypto_box_seal`` would produce with this
    ephemeral key (``len(plaintext) + OVERHEAD`` bytes). Keep ``ephemeral_secret`` to prove later
    what was sent (:func:`open_with_ephemeral`); anyone holding it can read this one ciphertext.
    """
    pk = _key(public_key, "public key")
    eph = nacl.public.PrivateKey.generate()
    eph_pk = bytes(eph.public_key)
    box = nacl.public.Box(eph, nacl.public.PublicKey(pk))
    encrypted = box.encrypt(bytes(plaintext), _nonce(eph_pk, pk))
    return eph_pk + encrypted.ciphertext, bytes(eph)


def open_sealed(ciphertext: bytes, secret_key: bytes | str) -> bytes:
    """Decrypt a sealed box with the recipient's secret key (raises :class:`SealedError`)."""
    sk = nacl.public.PrivateKey(_key(secret_key, "secret key"))
    if len(ciphertext) < OVERHEAD:
        raise SealedError(f"{len(ciphertext)} bytes is too short to be a sealed box (at least {OVERHEAD})")
    try:
        return nacl.public.SealedBox(sk).decrypt(bytes(ciphertext))
    except nacl.exceptions.CryptoError:
        raise SealedError("the update does not open with this bounty's key: it was sealed to another key, "
                          "or it is corrupt") from None


def open_with_ephemeral(ciphertext: bytes, ephemeral_secret: bytes | str, public_key: bytes | str) -> bytes:
    """Decrypt a sealed box with the sender's revealed ephemeral secret (the miner's proof).

    Checks that ``ephemeral_secret`` belongs to the ephemeral public key at the start of the
    ciphertext, so a miner cannot "prove" a different ciphertext's contents.
    """
    pk = _key(public_key, "public key")
    eph = nacl.public.PrivateKey(_key(ephemeral_secret, "ephemeral secret"))
    eph_pk = bytes(eph.public_key)
    if len(ciphertext) < OVERHEAD:
        raise SealedError(f"{len(ciphertext)} bytes is too short to be a sealed box (at least {OVERHEAD})")
    if bytes(ciphertext[:KEY_BYTES]) != eph_pk:
        raise SealedError("the ephemeral secret does not belong to this ciphertext")
    box = nacl.public.Box(eph, nacl.public.PublicKey(pk))
    try:
        return box.decrypt(bytes(ciphertext[KEY_BYTES:]), _nonce(eph_pk, pk))
    except nacl.exceptions.CryptoError:
        raise SealedError("the ciphertext does not open with this ephemeral secret and public key") from None


# ------------------------------------------------------------------------- records and key storage


def encryption_record(public_key: bytes | str) -> dict[str, str]:
    """The ``encryption`` field of version 0's record for ``public_key``."""
    return {"scheme": SCHEME, "public_key": _key(public_key, "public key").hex()}


def public_key_from_record(encryption: Any) -> bytes:
    """The public key of a version record's ``encryption`` field (validated; raises ValidationError)."""
    if not isinstance(encryption, dict) or encryption.get("scheme") != SCHEME:
        raise ValidationError(f"the bounty's encryption scheme is not {SCHEME!r}; this client cannot seal to it")
    return _key(encryption.get("public_key"), "the bounty's encryption public key")


def _keys_dir(home: MineHome) -> Path:
    path = home.root / "keys"
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def new_bounty_key(home: MineHome, *, label: str | None = None) -> bytes:
    """Generate a bounty's keypair, keep the secret in ``home`` (file 0600); return the public key.

    Files are named by public key (the bounty id is not known until the bounty is posted, and the
    public key is what version 0's record names); ``label`` is a note stored alongside.
    """
    sk, pk = generate_keypair()
    write_json_atomic(_keys_dir(home) / f"{pk.hex()}.json", {
        "scheme": SCHEME, "public_key": pk.hex(), "secret_key": sk.hex(), "created": time.time(), "label": label,
    }, mode=0o600)
    return pk


def load_secret_key(home: MineHome, public_key: bytes | str) -> bytes:
    """The secret key this mine keeps for ``public_key`` (raises :class:`BountyKeyMissingError`)."""
    pk = _key(public_key, "public key")
    path = home.root / "keys" / f"{pk.hex()}.json"
    entry = read_json(path, None)
    if entry is None:
        raise BountyKeyMissingError(
            f"no secret key for encryption key {pk.hex()[:16]}… in {home.root / 'keys'}; only the mine that "
            "created the bounty can open its updates (restore that mine's keys folder)")
    sk = _key(entry.get("secret_key", ""), f"secret key in {path}")
    if public_key_of(sk) != pk:
        raise ConfigError(f"{path} holds a secret key that does not match its public key; restore it from a backup")
    return sk


# ------------------------------------------------------------------------- audit bundle

#: ``kind`` of the owner's audit bundle (revealed after close: anyone holding it can replay the bounty).
AUDIT_BUNDLE_KIND = "sonar-audit-bundle"
MAX_AUDIT_BUNDLE_BYTES = 4096


@dataclass(frozen=True)
class AuditBundle:
    """What the owner reveals at audit time: the validation file's CID and the bounty's secret key.

    ``salt`` (32 random bytes) makes the bundle's CID — the bounty's ``validationCommitment``,
    computed at post time without publishing the bundle — unguessable before it is revealed.
    """

    validation: str
    secret_key: bytes
    salt: bytes
    #: the validation set's group column (``mine vault add ... --group``), if it has one: an auditor
    #: replays the subgroup rule with it
    group: str | None = None

    @property
    def public_key(self) -> bytes:
        return public_key_of(self.secret_key)


def make_audit_bundle(validation_cid: str, secret_key: bytes | str, salt: bytes | None = None, *,
                      group: str | None = None) -> bytes:
    """Canonical JSON bytes of the audit bundle (put them in the store at reveal time; their CID is the commitment).

    ``group`` names the validation set's group column; without it the bytes are those of a bundle
    that predates the field.
    """
    if not isinstance(validation_cid, str) or not validation_cid:
        raise ValidationError("the audit bundle needs the validation file's CID")
    salt = os.urandom(32) if salt is None else bytes(salt)
    if len(salt) != 32:
        raise ValidationError("the audit bundle's salt must be 32 bytes")
    data = {"kind": AUDIT_BUNDLE_KIND, "validation": validation_cid,
            "secret_key": _key(secret_key, "secret key").hex(), "salt": salt.hex()}
    if group is not None:  # absent key: older bundles' bytes (and CIDs) unchanged
        if not isinstance(group, str) or not group:
            raise ValidationError("the audit bundle's group column must be a non-empty name")
        data["group"] = group
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def parse_audit_bundle(data: bytes, *, public_key: bytes | str | None = None) -> AuditBundle:
    """Validate audit bundle bytes fetched from the store; with ``public_key``, check the secret key matches it."""
    if len(data) > MAX_AUDIT_BUNDLE_BYTES:
        raise ValidationError(f"audit bundle is {len(data)} bytes; at most {MAX_AUDIT_BUNDLE_BYTES} are allowed")
    try:
        raw = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValidationError(f"audit bundle is not JSON ({exc})") from None
    if not isinstance(raw, dict) or raw.get("kind") != AUDIT_BUNDLE_KIND:
        raise ValidationError(f"not a Sonar audit bundle (kind must be {AUDIT_BUNDLE_KIND!r})")
    if not isinstance(raw.get("validation"), str) or not isinstance(raw.get("salt"), str):
        raise ValidationError("audit bundle needs 'validation' (a CID) and 'salt' (hex)")
    try:
        salt = bytes.fromhex(raw["salt"])
    except ValueError:
        raise ValidationError("audit bundle salt is not hex") from None
    group = raw.get("group")
    if group is not None and (not isinstance(group, str) or not group):
        raise ValidationError("audit bundle 'group' must be a column name")
    bundle = AuditBundle(raw["validation"], _key(raw.get("secret_key"), "audit bundle secret_key"), salt, group)
    if public_key is not None and bundle.public_key != _key(public_key, "public key"):
        raise ValidationError("the audit bundle's secret key does not belong to the bounty's encryption key")
    return bundle
