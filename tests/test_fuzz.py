"""The atheris fuzzer over every untrusted-file loader, bounded in time (CI: 20 s)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_fuzz_target_runs_clean(tmp_path):
    """The atheris fuzzer over all loaders, bounded to 20 s here (``make fuzz``: longer)."""
    pytest.importorskip("atheris")
    work = tmp_path / "corpus"
    work.mkdir()
    seconds = os.environ.get("GAMMABETA_FUZZ_SECONDS", "20")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "fuzz" / "fuzz_loaders.py"), f"-max_total_time={seconds}",
         "-timeout=10", "-rss_limit_mb=2048", f"-artifact_prefix={tmp_path}/", str(work),
         str(ROOT / "fuzz" / "corpus")],
        capture_output=True, text=True, timeout=int(seconds) + 120)
    tail = "\n".join(proc.stderr.splitlines()[-30:])
    assert proc.returncode == 0, tail
    assert "Done" in proc.stderr, tail
