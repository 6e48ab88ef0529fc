"""Every error the trust model raises, under one parent, :class:`TrustError`.

::

    LockgateError
    └── TrustError                 the trust model refused something
        ├── KeyMissing             no key file: run `lockgate keys init`   (also ConfigError)
        ├── KeyFileUnsafe          key file readable by group/other: chmod 600 PATH (also ConfigError)
        ├── KeyInvalid             the file is not an Ed25519 key Lockgate wrote (also ConfigError)
        ├── RegistryError          services.json unreadable, bad service name / duplicate (also ConfigError)
        ├── ChainError             an event cannot be hashed or chained
        ├── CheckpointError        events handed to a checkpoint are not one intact chain interval
        ├── ProofError             a proof cannot be built for the event as given
        ├── WitnessFileError       a witness (checkpoint export) file is unreadable or malformed
        ├── NoteError              a signed note (C2SP signed-note) was refused
        │   ├── NoteMalformed          not a well-formed signed note
        │   ├── NoteUnverified         no signature from a trusted key
        │   └── NoteSignatureInvalid   a trusted key's signature line does not verify
        ├── TlogFormatError        a checkpoint body, proof text or witness request is malformed
        └── ReviewNotFound         no review (or more than one) matches the id a vote names

The key and registry errors are also :class:`~lockgate.kernel.errors.ConfigError`: an
operator fixes them. Ledger invariants (chain, checkpoint, proof) are refused, never
signed and never proven. Every message says what went wrong and what to do next.
"""

from __future__ import annotations

from pathlib import Path

from lockgate.kernel.errors import ConfigError, LockgateError

__all__ = [
    "ChainError",
    "CheckpointError",
    "KeyFileUnsafe",
    "KeyInvalid",
    "KeyMissing",
    "NoteError",
    "NoteMalformed",
    "NoteSignatureInvalid",
    "NoteUnverified",
    "ProofError",
    "RegistryError",
    "ReviewNotFound",
    "TlogFormatError",
    "TrustError",
    "WitnessFileError",
]


class TrustError(LockgateError):
    """The trust model refused a key, a record, a chain, a checkpoint or a proof."""


class KeyMissing(TrustError, ConfigError):
    """No key file where one is expected."""

    def __init__(self, path: Path) -> None:
        self.path = path
        super().__init__(f"no key at {path}; run `lockgate keys init` to create the signing keys")


class KeyFileUnsafe(TrustError, ConfigError):
    """A private key file is readable or writable by group or others, or a registry file
    (``what``: the public keys of services or reviewers) writable by them."""

    def __init__(self, path: Path, mode: int, what: str | None = None) -> None:
        self.path = path
        self.mode = mode
        if what is None:
            message = (f"private key {path} has mode {mode:04o}, which lets other users read or replace it; "
                       f"run `chmod 600 {path}` (and check who could have copied it)")
        else:
            message = (f"{what} {path} has mode {mode:04o}, which lets other users add their own keys to it; "
                       f"run `chmod 600 {path}` (and check every entry in it)")
        super().__init__(message)


class KeyInvalid(TrustError, ConfigError):
    """A key file or key bytes are not an Ed25519 key."""


class RegistryError(TrustError, ConfigError):
    """The service registry cannot be read or the requested change is not allowed."""



class ChainError(TrustError):
    """An event cannot be hashed or chained (missing field, wrong type, unknown version)."""


class CheckpointError(TrustError):
    """The events handed to a checkpoint builder are not one intact chain interval."""


class ProofError(TrustError):
    """A proof cannot be built: the event is not in the checkpoint's interval as given."""


class WitnessFileError(TrustError, ConfigError):
    """A witness file (``lockgate checkpoints export``) cannot be read or is malformed."""


class NoteError(TrustError):
    """A signed note was refused (C2SP signed-note): see the three subclasses."""


class NoteMalformed(NoteError):
    """The bytes are not a signed note: encoding, layout, a signature line or its base64."""


class NoteUnverified(NoteError):
    """No signature line from a trusted key verifies (there may be none at all)."""


class NoteSignatureInvalid(NoteError):
    """A signature line names a trusted key (name and key id) but does not verify.

    The whole note is refused, as C2SP signed-note says clients should: a trusted key's
    bad signature means the note was altered or forged, not merely co-signed by a stranger.
    """

    def __init__(self, name: str, key_id: int) -> None:
        self.name = name
        self.key_id = key_id
        super().__init__(
            f"the signature of trusted key {name} (key id {key_id:08x}) does not verify: the "
            "note was altered after signing or the signature is forged"
        )


class TlogFormatError(TrustError):
    """A checkpoint body, a proof's text or a witness request is not in its specified format."""


class ReviewNotFound(TrustError):
    """No review (or more than one) matches the id a vote names."""
