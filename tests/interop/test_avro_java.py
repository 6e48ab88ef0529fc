"""Apache Avro's Java ``BinaryMessageDecoder``, the reference, reads every record we write.

The decoder (``avro_java/DecodeMessages.java``) parses ``schemas/*.avsc`` with Avro's own
parser and knows nothing of Lockgate. It gets samples of every top-level schema, decodes the
records that audit events and outcomes carry inside them too, and prints each as Avro JSON,
which fastavro's JSON reader turns back into records to compare field by field.

Cost: Maven resolves Avro 1.12.2 into ``~/.m2`` once (offline afterwards), ``javac`` runs
once per session, one JVM decodes all samples (a few seconds in all). The test skips only
when the JDK or Maven is missing; on CI machines both exist, so there it always runs.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from fastavro import json_reader

from schemas.codec import SCHEMA_NAMES, TOP_LEVEL, get_codec
from tests.unit.schemas.codec_samples import samples, typed

JAVA_DIR = Path(__file__).resolve().parent / "avro_java"
SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"
CODEC = get_codec()


def _run(cmd: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def _classpath(out: Path) -> str:
    """Avro's classpath from the pom: offline from ~/.m2 if it is there, else from Maven Central."""
    mvn = ["mvn", "-B", "-q", "--no-transfer-progress", "-Dstyle.color=never", "-f", str(JAVA_DIR / "pom.xml"),
           "dependency:build-classpath", f"-Dmdep.outputFile={out}"]
    result = _run([mvn[0], "-o", *mvn[1:]], timeout=300)
    if result.returncode != 0:
        result = _run(mvn, timeout=600)
    if result.returncode != 0 or not out.exists():
        pytest.fail(f"Maven could not resolve org.apache.avro:avro (check access to Maven Central):\n"
                    f"{result.stdout[-3000:]}{result.stderr[-3000:]}")
    return out.read_text().strip()


_MISSING = [tool for tool in ("java", "javac", "mvn") if shutil.which(tool) is None]
pytestmark = [
    pytest.mark.java,
    pytest.mark.skipif(
        bool(_MISSING),
        reason=f"{', '.join(_MISSING)} not on PATH: install a JDK 17+ and Maven 3.8+ to run the Java interop test",
    ),
]

@pytest.fixture(scope="session")
def java_decoder(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The command that runs DecodeMessages (compiled once per session)."""
    work = tmp_path_factory.mktemp("avro-java")
    classpath = _classpath(work / "classpath.txt")
    classes = work / "classes"
    compiled = _run(["javac", "-d", str(classes), "-cp", classpath, str(JAVA_DIR / "DecodeMessages.java")],
                    timeout=300)
    if compiled.returncode != 0:
        pytest.fail(f"javac failed:\n{compiled.stdout}{compiled.stderr}")
    return ["java", "-cp", f"{classes}:{classpath}", "DecodeMessages"]


def _from_avro_json(name: str, text: str) -> dict[str, Any]:
    records = list(json_reader(io.StringIO(text), CODEC.schema(name)))
    assert len(records) == 1, text
    assert isinstance(records[0], dict), text
    return records[0]


def test_java_binary_message_decoder_reads_every_record(java_decoder: list[str], tmp_path: Path) -> None:
    schema_list = tmp_path / "schemas.txt"
    schema_list.write_text("".join(f"{SCHEMA_DIR / name}.avsc\n" for name in SCHEMA_NAMES))
    expected: dict[str, tuple[str, dict[str, Any]]] = {}
    for sample in samples(CODEC):
        path = tmp_path / f"{sample.label}.bin"
        path.write_bytes(CODEC.encode(sample.name, sample.record))
        expected[str(path)] = (sample.name, sample.record)
        for field, inner in sample.embedded.items():
            expected[f"{path}#{field}"] = inner
    assert {name for name, _ in expected.values()} >= set(TOP_LEVEL)

    result = _run([*java_decoder, str(schema_list), *(p for p in expected if "#" not in p)], timeout=300)

    decoded: dict[str, tuple[str, dict[str, Any]]] = {}
    for line in filter(None, result.stdout.split("\n")):  # not splitlines(): U+0085 may sit in a bytes value
        label, full_name, body = line.split("\t", 2)
        assert full_name != "ERROR", f"{Path(label).name}: {body}"
        name = full_name.removeprefix("dev.lockgate.")
        decoded[label] = (name, _from_avro_json(name, body))
    assert result.returncode == 0, result.stdout + result.stderr
    assert decoded.keys() == expected.keys()
    for label, (name, record) in expected.items():
        assert decoded[label][0] == name, label
        assert typed(decoded[label][1]) == typed(record), label
