"""The quick benchmarks run as README says, on a tiny scale (their figures aside).

They reach into the package's hooks (telemetry, the pacer, the converter): a
change there that breaks a documented command fails here, not in a user's hands.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).parent.parent / "benchmarks"

RUNS = {
    "overhead.py": (["--requests", "5", "--rounds", "2"], "ratio: "),
    "structuring.py": (["--number", "10", "--rounds", "1"], "ratio "),
    "memory.py": (["--small", "10", "--large", "20"], "ratio large/small"),
    "watch.py": (["--items", "20", "--quiet-rounds", "5"], "duplicates: 0; missed: 0"),
    "telemetry.py": (["--requests", "20", "--rounds", "1"], "the hooks alone"),
    # What valgrind runs (valgrind itself is not needed for this part).
    "instructions.py": (["--drive", "client", "5"], ""),
}


@pytest.mark.parametrize("name", sorted(RUNS))
def test_a_benchmark_runs_to_its_figures(name: str, tmp_path: Path) -> None:
    if name == "telemetry.py" and importlib.util.find_spec("opentelemetry.sdk") is None:
        pytest.skip("telemetry.py needs the OpenTelemetry SDK (the test extra)")
    args, expected = RUNS[name]
    done = subprocess.run(  # noqa: S603 - our own interpreter and files
        [sys.executable, str(BENCHMARKS / name), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert expected in done.stdout
