"""A transparency-log witness for Lockgate's ledger (C2SP tlog-witness), in a room of its own.

It runs as its own process with its own Ed25519 key, remembers per log origin the
largest checkpoint it cosigned, and cosigns a new checkpoint only with a consistency
proof from there — so a rolled-back or forked ledger cannot collect its cosignature. The
protocol's decisions are pure functions in :mod:`trust.tlog_witness`; this room adds the
HTTP service (:mod:`witness.server`), durable per-origin state (:mod:`witness.state`),
settings and the key (:mod:`witness.settings`), and the process (:mod:`witness.service`).

Started by ``lockgate witness serve`` or, in the local stack, ``python -m witness``.
"""

from witness.errors import WitnessConfigError, WitnessError, WitnessStateCorrupt
from witness.server import TrustedLogs, WitnessServer
from witness.service import build_witness
from witness.settings import WitnessSettings, load_or_create_signer
from witness.state import WitnessState

__all__ = [
    "TrustedLogs",
    "WitnessConfigError",
    "WitnessError",
    "WitnessServer",
    "WitnessSettings",
    "WitnessState",
    "WitnessStateCorrupt",
    "build_witness",
    "load_or_create_signer",
]
