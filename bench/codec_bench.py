"""Encode/decode cost of a ProposedAction: fastavro (what the codec uses) vs the pure-Python
``avro`` package, next to a JSON baseline measured in the same run.

    .venv/bin/python bench/codec_bench.py [N]
"""

from __future__ import annotations

import io
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from schemas.codec import get_codec

RECORD: dict[str, Any] = {
    "action_id": "3f0c1a52-9f1e-4a8e-8a51-0d0c7a1e2b11", "correlation_id": "c0ffee" * 5,
    "proposed_at": 1_795_000_000_000_000, "tenant": "default", "service": "billing",
    "actor": {"id": "alice", "roles": ["dba", "oncall"], "attributes": {"team": "payments"}},
    "type": "db.query", "resource": "db/prod/invoices",
    "attributes": {"sql": "UPDATE invoices SET status = 'paid' WHERE id = 4711", "rows": 1},
    "change_json": '{"status":"paid"}', "reply_topic": "lockgate.verdicts", "reply_partition": 3,
    "reply_instance": "a" * 32, "service_key_id": "0123456789abcdef", "service_signature": b"\x01" * 64,
}


def per_op_us(fn: Callable[[], object], n: int) -> float:
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - start) / n * 1e6)
    return best


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    codec = get_codec()
    data = codec.encode("ProposedAction", RECORD)
    rows = [
        ("baseline json.dumps", per_op_us(lambda: json.dumps(RECORD, default=str), n)),
        ("fastavro encode (codec)", per_op_us(lambda: codec.encode("ProposedAction", RECORD), n)),
        ("fastavro decode (codec)", per_op_us(lambda: codec.decode(data), n)),
    ]
    try:
        import avro.io
        import avro.schema

        from schemas.codec import _strip_logical, load_schema_json

        named = [_strip_logical(load_schema_json(x)) for x in ("Actor", "ProposedAction")]
        schema = avro.schema.parse(json.dumps(named))
        action_schema = next(s for s in schema.schemas if s.name == "ProposedAction")  # type: ignore[attr-defined]
        writer = avro.io.DatumWriter(action_schema)

        def avro_encode() -> bytes:
            buf = io.BytesIO()
            writer.write(RECORD, avro.io.BinaryEncoder(buf))
            return buf.getvalue()

        rows.append(("pure-python avro encode", per_op_us(avro_encode, max(1000, n // 10))))
    except ImportError:
        rows.append(("pure-python avro encode", float("nan")))
    print(f"ProposedAction, {len(data)} bytes on the wire, best of 5 x {n}")
    for name, us in rows:
        print(f"  {name:<28} {us:8.2f} us/op")


if __name__ == "__main__":
    main()
