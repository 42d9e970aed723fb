"""The gate-math headers (csrc/cell/) are shared with the CUDA kernels: they must compile as
device code. Checked with nvcc when the machine has it (this project's machines do)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NVCC = shutil.which("nvcc")


@pytest.mark.skipif(NVCC is None, reason="nvcc is not installed")
def test_cell_math_compiles_for_the_gpu_without_spills(tmp_path):
    result = subprocess.run(
        [NVCC, "-std=c++17", "-arch=sm_80", f"-I{ROOT / 'csrc'}", "-Xptxas", "-v", "-c",
         str(ROOT / "tests" / "cuda" / "cell_math_device.cu"), "-o", str(tmp_path / "cell.o")],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = result.stderr
    assert "Compiling entry function" in report or "Function properties" in report, report
    assert " 0 bytes spill stores" in report and "spill stores" in report
    for line in report.splitlines():
        if "spill stores" in line:
            assert line.strip().startswith("0 bytes stack frame, 0 bytes spill stores"), line
