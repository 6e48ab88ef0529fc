"""Our bytes are standard Avro: Apache Avro's Python package reads what we write, and we read its.

The Java reference decoder gets the same samples in ``tests/interop/test_avro_java.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas.codec import SCHEMA_NAMES, TOP_LEVEL, get_codec
from tests.unit.schemas.apache_avro_codec import ApacheAvroCodec
from tests.unit.schemas.codec_samples import Sample, samples, typed

CODEC = get_codec()
SCHEMA_DIR = Path(__file__).resolve().parents[3] / "schemas"
APACHE = ApacheAvroCodec([SCHEMA_DIR / f"{name}.avsc" for name in SCHEMA_NAMES])
SAMPLES = samples(CODEC)


def test_samples_cover_every_top_level_schema() -> None:
    assert {s.name for s in SAMPLES} == set(TOP_LEVEL)


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s.label)
def test_apache_avro_reads_every_record_we_write(sample: Sample) -> None:
    name, record = APACHE.decode(CODEC.encode(sample.name, sample.record))
    assert name == f"dev.lockgate.{sample.name}"
    assert typed(record) == typed(sample.record)
    for field, (inner_name, inner_record) in sample.embedded.items():
        name, inner = APACHE.decode(record[field])
        assert (name, typed(inner)) == (f"dev.lockgate.{inner_name}", typed(inner_record))


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s.label)
def test_we_read_every_record_apache_avro_writes(sample: Sample) -> None:
    # Not byte-equal to ours: avro's writer picks the union's double branch for ints and bools.
    data = APACHE.encode(f"dev.lockgate.{sample.name}", sample.record)
    name, record = CODEC.decode(data)
    apache_name, apache_record = APACHE.decode(data)
    assert (f"dev.lockgate.{name}", typed(record)) == (apache_name, typed(apache_record))
