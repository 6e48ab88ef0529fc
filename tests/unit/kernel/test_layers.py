"""The layer order is a contract, not a habit: import-linter checks it on every run."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def _lint_imports() -> str:
    exe = Path(sys.executable).with_name("lint-imports")
    found = str(exe) if exe.exists() else shutil.which("lint-imports")
    assert found, "lint-imports is missing: install the dev extra (make install)"
    return found


def test_the_project_keeps_its_layers() -> None:
    res = subprocess.run([_lint_imports(), str(ROOT / "pyproject.toml")], cwd=ROOT,
                         capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "0 broken" in res.stdout


def test_a_back_import_breaks_the_contract(tmp_path: Path) -> None:
    """The same contract over a toy tree with one upward import must fail."""
    for pkg in ("kern", "tru", "room", "cli"):
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text("")
    (tmp_path / "tru" / "chain.py").write_text("import room.service\n")  # trust importing a room
    (tmp_path / "room" / "service.py").write_text("import tru.chain\n")
    (tmp_path / "setup.cfg").write_text(textwrap.dedent("""\
        [importlinter]
        root_packages =
            kern
            tru
            room
            cli
        [importlinter:contract:layers]
        name = layers
        type = layers
        layers =
            cli
            room
            tru
            kern
        """))
    res = subprocess.run([_lint_imports(), str(tmp_path / "setup.cfg")], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120, env={"PYTHONPATH": str(tmp_path)}, check=False)
    assert res.returncode != 0
    assert "tru.chain -> room.service" in res.stdout
