"""tests/scripts.py's forking driver runs a script exactly as a plain interpreter would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from core.lessons.tensors.create import CREATE, CreateParams
from tests.scripts import run_scripts, script_env

TIMEOUT = 120


def test_driver_matches_a_plain_subprocess(tmp_path: Path) -> None:
    """One script run the ordinary way prints exactly what the forking driver captured."""
    source = CREATE.write_script(CreateParams(), "cpu")  # random numbers, a shape and floats: output worth comparing
    driven = run_scripts({"create": source}, tmp_path, workers=1, timeout=TIMEOUT)["create"]
    path = tmp_path / "snippet.py"
    path.write_text(source, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(path)], cwd=tmp_path, env=script_env(), capture_output=True, text=True, timeout=TIMEOUT
    )
    assert driven.rc == 0, driven.err
    assert done.returncode == 0, done.stderr
    assert done.stdout == driven.out
