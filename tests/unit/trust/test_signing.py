from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from lockgate.kernel.errors import ConfigError
from trust.canonical import signing_payload
from trust.errors import KeyFileUnsafe, KeyInvalid, KeyMissing, RegistryError
from trust.keys import Keyring, PublicKey, SigningKey, key_id_of, public_key_path
from trust.registry import ServiceRegistry, ServiceVerification
from trust.signatures import sign_record, verify_record


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_key_id_is_first_16_hex_of_sha256_of_raw_public_key() -> None:
    key = SigningKey.generate()
    raw = key.public().raw
    assert len(raw) == 32
    assert key.key_id == hashlib.sha256(raw).hexdigest()[:16] == key_id_of(raw)


def test_sign_and_verify_roundtrip_and_rejects_tampering() -> None:
    key = SigningKey.generate()
    sig = key.sign(b"payload")
    assert len(sig) == 64
    pub = key.public()
    assert pub.verify(b"payload", sig)
    assert not pub.verify(b"payloaD", sig)
    assert not pub.verify(b"payload", sig[:-1] + bytes([sig[-1] ^ 1]))
    assert not SigningKey.generate().public().verify(b"payload", sig)


@pytest.mark.parametrize("bad", [None, b"", b"x" * 63, b"x" * 65, "s" * 64, 42])
def test_public_verify_never_raises_on_bad_input(bad: object) -> None:
    pub = SigningKey.generate().public()
    assert pub.verify(b"p", bad) is False  # type: ignore[arg-type]
    assert pub.verify(bad, b"x" * 64) is False  # type: ignore[arg-type]


def test_save_writes_0600_pkcs8_private_and_public_beside_it(tmp_path: Path) -> None:
    key = SigningKey.generate()
    path = tmp_path / "keys" / "processor.pem"
    pub_path = key.save(path)
    assert pub_path == public_key_path(path) == tmp_path / "keys" / "processor.pub.pem"
    assert _mode(path) == 0o600
    pem = path.read_bytes()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8, unencrypted
    serialization.load_pem_private_key(pem, password=None)
    assert SigningKey.load(path).key_id == key.key_id
    assert PublicKey.load(pub_path) == key.public()
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_save_is_0600_even_under_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = tmp_path / "k.pem"
        SigningKey.generate().save(path)
    finally:
        os.umask(old)
    assert _mode(path) == 0o600


def test_save_refuses_to_overwrite_unless_asked(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    first = SigningKey.generate()
    first.save(path)
    with pytest.raises(ConfigError, match="already exists"):
        SigningKey.generate().save(path)
    assert SigningKey.load(path).key_id == first.key_id
    second = SigningKey.generate()
    second.save(path, overwrite=True)
    assert SigningKey.load(path).key_id == second.key_id
    assert _mode(path) == 0o600


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o666, 0o610])
def test_loading_a_group_or_world_accessible_key_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "k.pem"
    SigningKey.generate().save(path)
    path.chmod(mode)
    with pytest.raises(KeyFileUnsafe) as err:
        SigningKey.load(path)
    msg = str(err.value)
    assert str(path) in msg
    assert f"{mode:04o}" in msg
    assert f"chmod 600 {path}" in msg
    assert isinstance(err.value, ConfigError)


def test_owner_only_modes_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    SigningKey.generate().save(path)
    path.chmod(0o400)
    SigningKey.load(path)


def test_missing_key_says_run_keys_init(tmp_path: Path) -> None:
    with pytest.raises(KeyMissing, match="lockgate keys init") as err:
        SigningKey.load(tmp_path / "nope.pem")
    assert isinstance(err.value, ConfigError)


def test_garbage_and_non_ed25519_keys_are_invalid(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"not a key")
    os.close(fd)
    with pytest.raises(KeyInvalid):
        SigningKey.load(path)
    with pytest.raises(KeyInvalid):
        PublicKey(b"short")
    with pytest.raises(KeyInvalid):
        PublicKey.from_pem(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")


def test_repr_never_shows_key_material() -> None:
    key = SigningKey.generate()
    assert repr(key) == f"SigningKey(key_id={key.key_id!r})"


def test_keyring_rotation_window_and_expiry() -> None:
    old, new = SigningKey.generate(), SigningKey.generate()
    ring = Keyring([(old.public(), 1_000), new.public()])
    sig_old, sig_new = old.sign(b"m"), new.sign(b"m")
    assert ring.verify(old.key_id, b"m", sig_old, at_us=999)
    assert ring.verify(old.key_id, b"m", sig_old, at_us=1_000)  # inclusive
    assert ring.verify(new.key_id, b"m", sig_new, at_us=999)  # both valid in the window
    assert not ring.verify(old.key_id, b"m", sig_old, at_us=1_001)
    assert not ring.verify(old.key_id, b"m", sig_old)  # default: now, long after 1000 µs
    assert ring.verify(new.key_id, b"m", sig_new)
    assert not ring.verify(new.key_id, b"m", sig_old)  # right key id, wrong key's signature
    assert not ring.verify("0" * 16, b"m", sig_new)
    assert not ring.verify(None, b"m", sig_new)  # type: ignore[arg-type]
    assert ring.key_ids() == sorted([old.key_id, new.key_id])


def _verdict_like() -> dict[str, object]:
    return {"action_id": "a1", "decision": "allow", "key_id": "", "signature": b""}


def test_sign_record_covers_key_id_and_verifies_with_key_or_ring() -> None:
    key = SigningKey.generate()
    signed = sign_record(_verdict_like(), "signature", b"", key)
    assert signed["key_id"] == key.key_id
    payload = signing_payload(signed, "signature", b"")
    assert key.public().verify(payload, signed["signature"])
    assert verify_record(signed, "signature", b"", key.public())
    assert verify_record(signed, "signature", b"", Keyring([key.public()]))
    assert not verify_record(signed, "signature", b"", SigningKey.generate().public())
    tampered = dict(signed, decision="block")
    assert not verify_record(tampered, "signature", b"", key.public())
    relabelled = dict(signed, key_id="f" * 16)
    assert not verify_record(relabelled, "signature", b"", Keyring([key.public()]))


def test_service_signature_uses_service_key_id_and_none_as_cleared() -> None:
    key = SigningKey.generate()
    rec = {"action_id": "a", "service_key_id": None, "service_signature": None}
    signed = sign_record(rec, "service_signature", None, key)
    assert signed["service_key_id"] == key.key_id
    assert verify_record(signed, "service_signature", None, key.public())
    # Cleared value matters: b"" instead of None is a different payload.
    assert not verify_record(signed, "service_signature", b"", key.public())
    assert not verify_record(rec, "service_signature", None, key.public())  # unsigned


def test_registry_add_verify_and_persist(tmp_path: Path) -> None:
    reg = ServiceRegistry(tmp_path)
    key, entry = reg.add_service("billing")
    assert entry.key_id == key.key_id and entry.not_after_us is None
    pem = tmp_path / "services" / "billing.pem"
    assert _mode(pem) == 0o600 and SigningKey.load(pem).key_id == key.key_id
    assert _mode(reg.path) == 0o600
    data = json.loads(reg.path.read_text())
    assert list(data) == ["billing"]
    assert set(data["billing"][0]) == {"key_id", "public_key", "added_at_us", "not_after_us"}

    again = ServiceRegistry(tmp_path)
    sig = key.sign(b"p")
    ok = ServiceVerification.OK
    assert again.verify("billing", key.key_id, b"p", sig, at_us=0) is ok
    assert again.verify("billing", key.key_id, b"q", sig, at_us=0) == "bad_signature"
    assert again.verify("ledger", key.key_id, b"p", sig, at_us=0) == "unknown_service"
    assert again.verify("billing", "0" * 16, b"p", sig, at_us=0) == "unknown_key"
    assert again.verify("billing", None, b"p", sig, at_us=0) == "unsigned"
    assert again.verify("billing", key.key_id, b"p", None, at_us=0) == "unsigned"
    with pytest.raises(RegistryError, match="already registered"):
        again.add_service("billing")


def test_registry_rotation_overlap_then_expiry(tmp_path: Path) -> None:
    reg = ServiceRegistry(tmp_path)
    old, _ = reg.add_service("billing", now_us=100)
    new, _ = reg.rotate("billing", overlap_us=50, now_us=1_000)
    assert SigningKey.load(reg.private_key_path("billing")).key_id == new.key_id
    reg = ServiceRegistry(tmp_path)
    keys = {k.key_id: k for k in reg.keys("billing")}
    assert keys[old.key_id].not_after_us == 1_050
    assert keys[new.key_id].not_after_us is None
    s_old, s_new = old.sign(b"p"), new.sign(b"p")
    assert reg.verify("billing", old.key_id, b"p", s_old, at_us=1_050) == "ok"
    assert reg.verify("billing", new.key_id, b"p", s_new, at_us=1_050) == "ok"
    assert reg.verify("billing", old.key_id, b"p", s_old, at_us=1_051) == "expired_key"
    ring = reg.keyring("billing")
    assert ring.verify(old.key_id, b"p", s_old, at_us=1_000)
    assert not ring.verify(old.key_id, b"p", s_old, at_us=2_000)


@pytest.mark.parametrize("name", ["../evil", "a/b", "", ".hidden", "x" * 200, "a b"])
def test_registry_rejects_unsafe_service_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(RegistryError, match="not allowed"):
        ServiceRegistry(tmp_path).add_service(name)


def test_registry_refuses_group_writable_file_and_hand_edited_key_ids(tmp_path: Path) -> None:
    reg = ServiceRegistry(tmp_path)
    reg.add_service("billing")
    reg.path.chmod(0o620)
    with pytest.raises(KeyFileUnsafe):
        ServiceRegistry(tmp_path)
    reg.path.chmod(0o600)
    data = json.loads(reg.path.read_text())
    data["billing"][0]["key_id"] = "0" * 16
    reg.path.write_text(json.dumps(data))
    with pytest.raises(RegistryError, match="does not match"):
        ServiceRegistry(tmp_path)
