"""``lockgate witness``: run a C2SP tlog witness for the ledger, print its verifier key.

Wires :mod:`witness` (the server room) to the command line; nothing else lives here.
"""

from __future__ import annotations

import argparse
import signal
from pathlib import Path
from types import FrameType
from typing import Any

from lockgate.cli.output import EXIT_OK, emit_json, progress
from lockgate.kernel.errors import ConfigError
from lockgate.kernel.home import Home

__all__ = ["register"]


def _settings(args: argparse.Namespace) -> Any:
    from lockgate.cli.context import home
    from witness.settings import WitnessSettings

    overrides: dict[str, Any] = {"home": home()}
    for flag, field in (("host", "witness_host"), ("port", "witness_port"), ("name", "witness_name"),
                        ("log_name", "log_name"), ("log_key", "witness_log_key")):
        value = getattr(args, flag, None)
        if value is not None:
            overrides[field] = Path(value) if flag == "log_key" else value
    return WitnessSettings(**overrides)


def cmd_serve(args: argparse.Namespace) -> int:
    from witness.service import build_witness

    settings = _settings(args)
    if not settings.log_key_path.exists() and not args.log_vkey:
        raise ConfigError(
            f"no log to trust: {settings.log_key_path} does not exist; give --log-key PEM (the "
            "processor's public key) or --log-vkey VKEY, or run `lockgate keys init` first"
        )
    server = build_witness(settings, args.log_vkey or ())

    def stop(signum: int, frame: FrameType | None) -> None:
        del signum, frame
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    progress(f"witness {server.signer.name} serving at {server.url}; verifier key "
             f"{settings.paths.witness_vkey}:")
    print(server.signer.verifier.vkey, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return EXIT_OK


def cmd_vkey(args: argparse.Namespace) -> int:
    from lockgate.cli.context import home

    path = Home(home()).witness_vkey
    if not path.exists():
        raise ConfigError(f"no witness verifier key at {path}; start the witness once "
                          "(`lockgate witness serve`) to create its key")
    vkey = path.read_text(encoding="utf-8").strip()
    if args.json:
        emit_json({"vkey": vkey, "file": str(path)})
    else:
        print(vkey)
    return EXIT_OK


_SERVE_DESC = """\
Run a transparency-log witness in the foreground (C2SP tlog-witness): it cosigns each
whole-log checkpoint of the ledger's partitions only with a consistency proof from the
last one it cosigned for that partition, so a rolled-back or forked ledger cannot get
its cosignature. Its own Ed25519 key is created on first start under
$LOCKGATE_HOME/witness/ (0600); its state (one file per log origin, replaced atomically
and fsync'd) lives beside it.

HTTP: POST /add-checkpoint (the protocol: 200 cosignature lines, 400 malformed,
404 unknown log, 403 bad signature, 409 size mismatch with the witness's size,
422 bad proof), GET /<sha256(origin) hex>/checkpoint (latest cosigned), GET /healthz.

It trusts the Lockgate log --log-name under the processor public key (--log-key, default
$LOCKGATE_HOME/keys/processor.pub.pem) and any --log-vkey. The verifier key it prints
(also in $LOCKGATE_HOME/witness/witness.vkey) is what `lockgate verify --witness-key`
takes. Run it where the ledger's operators cannot reach its key or its state."""


def register(sub: argparse._SubParsersAction[Any]) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    w = sub.add_parser("witness", help="run a tlog witness that cosigns ledger checkpoints", formatter_class=fmt,
                       description="A C2SP tlog witness for the ledger's whole-log checkpoints.")
    wsub = w.add_subparsers(dest="witness_command", metavar="SUBCOMMAND", required=True)
    p = wsub.add_parser("serve", help="run the witness (foreground)", formatter_class=fmt, description=_SERVE_DESC,
                        epilog="examples:\n  lockgate witness serve --port 8742\n"
                        "  lockgate witness serve --name witness.example.org/w1 --log-key processor.pub.pem\n\n"
                        "exit status:\n  0  stopped (SIGINT/SIGTERM)\n  2  an error (no log to trust, port taken)")
    p.add_argument("--host", help="listen address (default 127.0.0.1; LOCKGATE_WITNESS_HOST)")
    p.add_argument("--port", type=int, help="listen port (default 8742; LOCKGATE_WITNESS_PORT)")
    p.add_argument("--name", help="the witness's key name, a schema-less URL (LOCKGATE_WITNESS_NAME)")
    p.add_argument("--log-name", help="the Lockgate log's name (default lockgate.example/ledger; LOCKGATE_LOG_NAME)")
    p.add_argument("--log-key", metavar="PEM", help="the processor's public key (default under LOCKGATE_HOME)")
    p.add_argument("--log-vkey", metavar="VKEY", action="append",
                   help="also trust this log verifier key (its name is the log's origin); repeatable")
    p.set_defaults(handler=cmd_serve)
    p = wsub.add_parser("vkey", help="print this home's witness verifier key")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_vkey)
