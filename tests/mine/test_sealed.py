"""Sealed updates: only the bounty owner (or a miner revealing its ephemeral secret) can read them."""

from __future__ import annotations

import stat

import nacl.public
import pytest

from mine import model as M
from mine import sealed
from mine.home import Config, MineHome


@pytest.fixture()
def update_bytes() -> bytes:
    manifest = M.default_manifest("digits")
    base = M.model_state(M.build_model(manifest, seed=0))
    trained = {k: v + 0.01 for k, v in base.items()}
    return M.make_update(base, trained, {"bounty": "1", "base_version": "0"})


def test_round_trip_opens_with_the_owner_key(update_bytes: bytes) -> None:
    sk, pk = sealed.generate_keypair()
    ciphertext, _eph = sealed.seal(update_bytes, pk)
    assert len(ciphertext) == len(update_bytes) + sealed.OVERHEAD
    assert sealed.open_sealed(ciphertext, sk) == update_bytes


def test_libsodium_sealed_box_opens_our_ciphertext_and_we_open_its(update_bytes: bytes) -> None:
    sk, pk = sealed.generate_keypair()
    ciphertext, _ = sealed.seal(update_bytes, pk)
    assert nacl.public.SealedBox(nacl.public.PrivateKey(sk)).decrypt(ciphertext) == update_bytes
    theirs = nacl.public.SealedBox(nacl.public.PublicKey(pk)).encrypt(update_bytes)
    assert sealed.open_sealed(theirs, sk) == update_bytes


def test_another_key_cannot_open(update_bytes: bytes) -> None:
    _sk, pk = sealed.generate_keypair()
    other_sk, _ = sealed.generate_keypair()
    ciphertext, _ = sealed.seal(update_bytes, pk)
    with pytest.raises(sealed.SealedError, match="does not open"):
        sealed.open_sealed(ciphertext, other_sk)
    tampered = bytearray(ciphertext)
    tampered[-1] ^= 1
    with pytest.raises(sealed.SealedError):
        sealed.open_sealed(bytes(tampered), _sk)


def test_ciphertext_does_not_parse_as_an_update(update_bytes: bytes) -> None:
    manifest = M.default_manifest("digits")
    M.read_update(manifest, update_bytes)  # the plaintext parses
    ciphertext, _ = sealed.seal(update_bytes, sealed.generate_keypair()[1])
    with pytest.raises(M.ValidationError):
        M.read_update(manifest, ciphertext)
    with pytest.raises(M.ValidationError):
        M.read_metadata(ciphertext)


def test_ephemeral_secret_proves_what_was_sent(update_bytes: bytes) -> None:
    _sk, pk = sealed.generate_keypair()
    ciphertext, eph = sealed.seal(update_bytes, pk)
    assert sealed.open_with_ephemeral(ciphertext, eph, pk) == update_bytes
    other, other_eph = sealed.seal(b"something else", pk)
    with pytest.raises(sealed.SealedError, match="does not belong"):
        sealed.open_with_ephemeral(ciphertext, other_eph, pk)  # a miner cannot claim another ciphertext
    with pytest.raises(sealed.SealedError):
        sealed.open_with_ephemeral(ciphertext, eph, sealed.generate_keypair()[1])


def test_two_seals_of_the_same_update_differ(update_bytes: bytes) -> None:
    pk = sealed.generate_keypair()[1]
    assert sealed.seal(update_bytes, pk)[0] != sealed.seal(update_bytes, pk)[0]


def test_bounty_key_is_stored_0600_and_found_by_public_key(tmp_path, update_bytes: bytes) -> None:
    home = MineHome(tmp_path / "owner")
    home.init(Config())
    pk = sealed.new_bounty_key(home, label="bounty create")
    files = list((home.root / "keys").glob("*.json"))
    assert [f.name for f in files] == [f"{pk.hex()}.json"]
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    assert stat.S_IMODE((home.root / "keys").stat().st_mode) == 0o700
    record = sealed.encryption_record(pk)
    assert record == {"scheme": sealed.SCHEME, "public_key": pk.hex()}
    assert sealed.public_key_from_record(record) == pk
    ciphertext, _ = sealed.seal(update_bytes, sealed.public_key_from_record(record))
    assert sealed.open_sealed(ciphertext, sealed.load_secret_key(home, pk)) == update_bytes


def test_missing_key_and_bad_record_are_clear_errors(tmp_path) -> None:
    home = MineHome(tmp_path / "miner")
    home.init(Config())
    with pytest.raises(sealed.BountyKeyMissingError, match="only the mine that created the bounty"):
        sealed.load_secret_key(home, sealed.generate_keypair()[1])
    with pytest.raises(M.ValidationError, match="scheme"):
        sealed.public_key_from_record({"scheme": "rsa", "public_key": "00" * 32})
    with pytest.raises(M.ValidationError, match="32 bytes"):
        sealed.public_key_from_record({"scheme": sealed.SCHEME, "public_key": "00" * 31})
    with pytest.raises(sealed.SealedError, match="too short"):
        sealed.open_sealed(b"short", sealed.generate_keypair()[0])


def test_version_record_carries_encryption_and_max_epsilon() -> None:
    from mine.versions import VersionRecord

    pk = sealed.generate_keypair()[1]
    plain = VersionRecord("bafym", "bafyw")
    assert b"encryption" not in plain.to_json()  # older records keep their bytes (and CIDs)
    rec = VersionRecord("bafym", "bafyw", encryption=sealed.encryption_record(pk), max_epsilon=8.0)
    back = VersionRecord.from_json(rec.to_json())
    assert back == rec and sealed.public_key_from_record(back.encryption) == pk
    with pytest.raises(M.ValidationError, match="max_epsilon"):
        VersionRecord.from_json(rec.to_json().replace(b"8.0", b"-1"))


def test_audit_bundle_reveals_the_key_that_opens_every_update(update_bytes: bytes) -> None:
    sk, pk = sealed.generate_keypair()
    ciphertext, _ = sealed.seal(update_bytes, pk)
    data = sealed.make_audit_bundle("bafyvalidation", sk, salt=b"\x01" * 32)
    assert data == sealed.make_audit_bundle("bafyvalidation", sk, salt=b"\x01" * 32)  # canonical: same CID
    assert data != sealed.make_audit_bundle("bafyvalidation", sk)  # a fresh salt hides it until revealed
    bundle = sealed.parse_audit_bundle(data, public_key=pk)
    assert bundle.validation == "bafyvalidation" and sealed.open_sealed(ciphertext, bundle.secret_key) == update_bytes
    with pytest.raises(M.ValidationError, match="does not belong"):
        sealed.parse_audit_bundle(data, public_key=sealed.generate_keypair()[1])
    with pytest.raises(M.ValidationError, match="not a Sonar audit bundle"):
        sealed.parse_audit_bundle(b'{"kind": "other"}')


def test_audit_bundle_names_the_group_column_and_stays_byte_identical_without_one() -> None:
    sk, _ = sealed.generate_keypair()
    plain = sealed.make_audit_bundle("bafyvalidation", sk, salt=b"\x01" * 32)
    grouped = sealed.make_audit_bundle("bafyvalidation", sk, salt=b"\x01" * 32, group="hospital")
    assert b"group" not in plain and sealed.parse_audit_bundle(plain).group is None
    assert sealed.parse_audit_bundle(grouped).group == "hospital"
    assert grouped.replace(b'"group":"hospital",', b"") == plain  # the only difference
    with pytest.raises(M.ValidationError, match="group"):
        sealed.parse_audit_bundle(grouped.replace(b'"hospital"', b"3"))
