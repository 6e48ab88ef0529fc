"""Build and run a witness from its settings: ``python -m witness`` and ``lockgate witness serve``."""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Sequence
from types import FrameType

from lockgate.kernel.errors import LockgateError
from trust.keys import PublicKey
from trust.note import Ed25519Verifier
from trust.tlog import check_log_name
from witness.errors import WitnessConfigError
from witness.server import TrustedLogs, WitnessServer
from witness.settings import WitnessSettings, load_or_create_signer
from witness.state import WitnessState

__all__ = ["build_witness", "main"]

log = logging.getLogger("lockgate.witness")


def build_witness(settings: WitnessSettings, log_vkeys: Sequence[str] = ()) -> WitnessServer:
    """The witness for ``settings``: its key (created on first use), trusted logs, state, socket.

    Trusts the Lockgate log ``settings.log_name`` under the processor public key at
    ``settings.log_key_path`` (when that file exists) and every log vkey in ``log_vkeys``.
    """
    home = settings.paths
    signer, created = load_or_create_signer(home, settings.witness_name)
    if created:
        log.info("created witness key %s (0600); verifier key in %s", home.witness_key, home.witness_vkey)
    lockgate_logs: list[tuple[str, PublicKey]] = []
    if settings.log_key_path.exists():
        try:
            name = check_log_name(settings.log_name)
        except ValueError as exc:
            raise WitnessConfigError(str(exc)) from None
        lockgate_logs.append((name, PublicKey.load(settings.log_key_path)))
    exact = tuple(Ed25519Verifier.from_vkey(v) for v in log_vkeys)
    logs = TrustedLogs(tuple(lockgate_logs), exact)
    return WitnessServer(signer, logs, WitnessState(home.witness_logs),
                         host=settings.witness_host, port=settings.witness_port)


def main(argv: Sequence[str] | None = None) -> int:
    """Run until SIGTERM/SIGINT; exit 2 on a configuration error."""
    del argv
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(levelname)s %(name)s: %(message)s")
    try:
        server = build_witness(WitnessSettings())
    except LockgateError as exc:
        print(f"lockgate witness: {exc}", file=sys.stderr)
        return 2

    def stop(signum: int, frame: FrameType | None) -> None:
        del signum, frame
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    log.info("witness %s serving at %s (%s)", server.signer.name, server.url, server.signer.verifier.vkey)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0
