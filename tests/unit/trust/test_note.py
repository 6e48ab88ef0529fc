"""Signed notes per C2SP signed-note: the spec's example, and inputs that try to break it."""

from __future__ import annotations

import base64
import hashlib

import pytest

from trust.errors import KeyInvalid, NoteMalformed, NoteSignatureInvalid, NoteUnverified
from trust.keys import SigningKey
from trust.note import (
    MAX_SIGNATURES,
    Ed25519Signer,
    Ed25519Verifier,
    NoteSignature,
    add_signatures,
    key_id,
    open_note,
    parse_note,
    parse_vkey,
    sign_note,
    valid_key_name,
)

# The example of c2sp.org/signed-note ("Verifier keys", "Example").
SPEC_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
SPEC_NOTE = (
    "This is an example message.\n\n"
    "— example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n"
)


def test_the_specification_example_verifies() -> None:
    v = Ed25519Verifier.from_vkey(SPEC_VKEY)
    assert (v.name, f"{v.key_id:08x}") == ("example.com/foo", "530d903a")
    assert v.vkey == SPEC_VKEY
    opened = open_note(SPEC_NOTE, [v])
    assert opened.text == "This is an example message.\n"
    assert [s.name for s in opened.verified] == ["example.com/foo"]
    with pytest.raises(NoteSignatureInvalid):
        open_note(SPEC_NOTE.replace("example message", "exemplary message"), [v])


def test_key_id_is_the_documented_hash() -> None:
    key = SigningKey.generate()
    raw = key.public().raw
    expected = int.from_bytes(hashlib.sha256(b"log.example/a\n\x01" + raw).digest()[:4], "big")
    assert key_id("log.example/a", 0x01, raw) == expected
    assert Ed25519Signer("log.example/a", key).key_id == expected
    name, kid, sig_type, public = parse_vkey(Ed25519Verifier("log.example/a", key.public()).vkey)
    assert (name, kid, sig_type, public) == ("log.example/a", expected, 0x01, raw)


@pytest.fixture
def signer() -> Ed25519Signer:
    return Ed25519Signer("log.example/p0", SigningKey.generate())


def test_sign_and_open(signer: Ed25519Signer) -> None:
    note = sign_note("hello\n\nwith a blank line inside\n", [signer])
    opened = open_note(note, [signer.verifier])
    assert opened.text == "hello\n\nwith a blank line inside\n"  # split at the *last* blank line
    assert opened.unverified == ()
    assert open_note(note.encode(), [signer.verifier]) == opened


def test_forged_text_or_signature_is_refused(signer: Ed25519Signer) -> None:
    note = sign_note("size 5\n", [signer])
    with pytest.raises(NoteSignatureInvalid):
        open_note(note.replace("size 5", "size 6"), [signer.verifier])
    sig = parse_note(note).signatures[0]
    flipped = NoteSignature(sig.name, sig.key_id, bytes([sig.signature[0] ^ 1]) + sig.signature[1:])
    with pytest.raises(NoteSignatureInvalid):
        open_note("size 5\n\n" + flipped.line(), [signer.verifier])


def test_wrong_key_hash_is_an_unknown_key_not_a_valid_one(signer: Ed25519Signer) -> None:
    """A line with the trusted name but another key id is someone else's: ignored, so the
    note has no trusted signature at all."""
    note = sign_note("x\n", [signer])
    sig = parse_note(note).signatures[0]
    renamed = NoteSignature(sig.name, sig.key_id ^ 1, sig.signature)
    with pytest.raises(NoteUnverified, match=r"log\.example/p0"):
        open_note("x\n\n" + renamed.line(), [signer.verifier])
    other = Ed25519Verifier("log.example/p0", SigningKey.generate().public())  # same name, other key
    with pytest.raises(NoteUnverified):
        open_note(note, [other])


def test_unknown_signatures_are_kept_aside(signer: Ed25519Signer) -> None:
    stranger = Ed25519Signer("witness.example/w", SigningKey.generate())
    note = sign_note("x\n", [signer, stranger])
    opened = open_note(note + parse_note(note).signatures[1].line(), [signer.verifier])  # repeated line
    assert [s.name for s in opened.verified] == ["log.example/p0"]
    assert [s.name for s in opened.unverified] == ["witness.example/w"]


@pytest.mark.parametrize(
    "mangle",
    [
        lambda n: n[:-1],  # truncated: the last line has no newline
        lambda n: n.split("\n\n")[0] + "\n",  # truncated: no signature block
        lambda n: n.split("\n\n")[0] + "\n\n",  # blank line but no signature
        lambda n: n[: n.index("—") + 20] + "\n",  # cut inside the base64
        lambda n: n.replace("—", "-"),  # not an em dash
        lambda n: n.replace("x\n", "x\r\n", 1),  # a control character
        lambda n: n.replace("x\n", "x\t\n", 1),
        lambda n: n.replace("log.example/p0", "log.example/p 0"),  # a space in the key name
        lambda n: n.replace("log.example/p0", "log+example/p0"),  # a plus in the key name
        lambda n: n.replace("=\n", "\n"),  # unpadded base64
        lambda n: n + "\n",  # trailing blank line
        lambda n: n + "— log.example/p0 AAAA\n",  # signature shorter than 5 bytes
    ],
)
def test_malformed_notes_are_refused(signer: Ed25519Signer, mangle: object) -> None:
    note = sign_note("x\n", [signer])
    assert callable(mangle)
    bad = mangle(note)
    with pytest.raises(NoteMalformed):
        open_note(bad, [signer.verifier])


def test_non_canonical_base64_is_refused(signer: Ed25519Signer) -> None:
    note = sign_note("x\n", [signer])
    sig = parse_note(note).signatures[0]
    b64 = base64.b64encode(sig.key_id.to_bytes(4, "big") + sig.signature).decode()
    assert b64.endswith("=")  # 68 bytes: 2 bits of padding in the last character
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = alphabet[alphabet.index(b64[-2]) ^ 1]  # flip a padding bit
    with pytest.raises(NoteMalformed):
        open_note(f"x\n\n— {sig.name} {b64[:-2]}{last}=\n", [signer.verifier])


def test_invalid_utf8_and_oversized_notes_are_refused(signer: Ed25519Signer) -> None:
    note = sign_note("x\n", [signer]).encode()
    with pytest.raises(NoteMalformed, match="UTF-8"):
        open_note(b"\xff" + note, [signer.verifier])
    line = parse_note(note).signatures[0].line()
    with pytest.raises(NoteMalformed, match="at most"):
        open_note("x\n\n" + line * (MAX_SIGNATURES + 1), [signer.verifier])
    with pytest.raises(NoteMalformed, match="bytes"):
        open_note("x" * (1 << 20) + "\n\n" + line, [signer.verifier])


def test_add_signatures_merges_without_duplicates(signer: Ed25519Signer) -> None:
    other = Ed25519Signer("witness.example/w", SigningKey.generate())
    note = sign_note("x\n", [signer])
    extra = parse_note(sign_note("x\n", [other])).signatures
    merged = add_signatures(add_signatures(note, extra), extra)
    assert merged.count("\n—") == 2
    assert open_note(merged, [signer.verifier, other.verifier]).verified[1].name == "witness.example/w"


def test_vkeys_whose_base64_holds_a_plus_parse() -> None:
    """The key material's base64 may contain '+': only the first two '+' separate parts."""
    for _ in range(64):
        v = Ed25519Verifier("log.example/a", SigningKey.generate().public())
        if "+" in v.vkey.split("+", 2)[2]:
            assert Ed25519Verifier.from_vkey(v.vkey).key_id == v.key_id
            return
    pytest.fail("no key with a '+' in its base64 among 64 random keys")


def test_key_names_and_vkeys() -> None:
    assert valid_key_name("example.com/log/p0")
    for bad in ("", "a b", "a+b", "a\u00a0b", "a\nb", "a\tb"):
        assert not valid_key_name(bad)
    with pytest.raises(KeyInvalid, match="does not match"):
        parse_vkey(SPEC_VKEY.replace("530d903a", "530d903b"))
    with pytest.raises(KeyInvalid):
        parse_vkey("example.com/foo+530d903a")
    with pytest.raises(KeyInvalid):
        parse_vkey(SPEC_VKEY.replace("530d903a", "530D903A"))
    with pytest.raises(NoteMalformed, match="text ends"):
        sign_note("no newline", [Ed25519Signer("a", SigningKey.generate())])
