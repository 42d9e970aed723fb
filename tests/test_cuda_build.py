"""The CUDA side of the build: build_info(), the CMake logic with and without nvcc
(csrc/cuda/cuda.cmake), and ptxas' resource report of the kernels (no register spills, no
local memory)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import fastgates

ROOT = Path(__file__).resolve().parent.parent
NVCC = shutil.which("nvcc")
CMAKE = shutil.which("cmake")
DEFAULT_ARCHS = ["80-real", "86-real", "89-real", "90-real", "90-virtual"]

needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc is not installed")
needs_cmake = pytest.mark.skipif(CMAKE is None, reason="cmake is not installed")


@needs_nvcc
def test_build_info_has_the_cuda_kernels_when_nvcc_is_there():
    info = fastgates.build_info()
    assert info["cuda"] is True
    assert info["cuda_version"] and info["cuda_version"][0].isdigit()
    assert info["cuda_archs"]
    if not os.environ.get("FASTGATES_CUDA_ARCHS"):
        assert info["cuda_archs"] == DEFAULT_ARCHS
    from fastgates._backend import C

    assert hasattr(C(), "cuda")


def test_build_info_types():
    info = fastgates.build_info()
    assert isinstance(info["cuda"], bool)
    assert all(isinstance(a, str) for a in info["cuda_archs"])
    assert info["cpu_isas"] == ["generic", "avx2", "avx512", "avx512_layout"]


PROBE = """
cmake_minimum_required(VERSION 3.20)
project(probe LANGUAGES CXX)
add_library(_C SHARED probe.cpp)
include("{cmake_file}")
fastgates_add_cuda_kernels(_C)
get_target_property(sources _C SOURCES)
get_target_property(archs _C CUDA_ARCHITECTURES)
get_target_property(runtime _C CUDA_RUNTIME_LIBRARY)
get_target_property(definitions _C COMPILE_DEFINITIONS)
message(STATUS "probe: sources=[${{sources}}] archs=[${{archs}}] runtime=[${{runtime}}] definitions=[${{definitions}}]")
"""


def configure(tmp_path, env, *args):
    """Configures a project of one C++ target that includes csrc/cuda/cuda.cmake as the
    package's CMakeLists.txt does; returns what it reports of the target."""
    (tmp_path / "CMakeLists.txt").write_text(PROBE.format(cmake_file=(ROOT / "csrc/cuda/cuda.cmake").as_posix()))
    (tmp_path / "probe.cpp").write_text("int probe() { return 0; }\n")
    result = subprocess.run([CMAKE, "-S", str(tmp_path), "-B", str(tmp_path / "build"), *args], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    match = re.search(r"probe: sources=\[(.*)\] archs=\[(.*)\] runtime=\[(.*)\] definitions=\[(.*)\]", result.stdout)
    assert match, result.stdout
    return {"sources": match[1], "archs": match[2], "runtime": match[3], "definitions": match[4],
            "log": result.stdout}


@needs_cmake
def test_cmake_without_nvcc_builds_the_cpu_kernels_only(tmp_path):
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep)
                           if p and not (Path(p) / "nvcc").exists())
    env = {k: v for k, v in os.environ.items() if k not in ("CUDACXX", "CUDA_PATH", "CUDA_HOME", "PATH")}
    env["PATH"] = path
    probe = configure(tmp_path, env)
    if "kernels.cu" in probe["sources"]:
        pytest.skip("CMake finds nvcc outside PATH here (e.g. /usr/local/cuda/bin)")
    assert "nvcc not found" in probe["log"]
    assert "FG_WITH_CUDA" not in probe["definitions"]


@needs_cmake
@needs_nvcc
@pytest.mark.parametrize("env_archs, cmake_archs, expected", [
    ("86-real", None, "86-real"),
    ("86-real", "75-real", "75-real"),  # CMAKE_CUDA_ARCHITECTURES wins over the environment
])
def test_cmake_with_nvcc_compiles_the_kernels(tmp_path, env_archs, cmake_archs, expected):
    env = {**os.environ, "FASTGATES_CUDA_ARCHS": env_archs}
    args = [f"-DCMAKE_CUDA_ARCHITECTURES={cmake_archs}"] if cmake_archs else []
    probe = configure(tmp_path, env, *args)
    assert probe["sources"].endswith("csrc/cuda/kernels.cu")
    assert probe["archs"] == expected
    assert probe["runtime"] == "Static"
    assert "FG_WITH_CUDA=1" in probe["definitions"]
    assert f'FG_CUDA_ARCHS="{expected}"' in probe["definitions"]


KERNELS = [f"{kind}_kernel" for kind in ("forward_step", "backward_step", "forward_persistent",
                                          "backward_persistent", "forward_projection", "backward_projection")]


@needs_nvcc
def test_kernels_use_no_local_memory_and_do_not_spill(tmp_path):
    result = subprocess.run(
        [NVCC, "-std=c++17", "-O3", "-arch=sm_80", f"-I{ROOT / 'csrc'}", "-Xptxas", "-v", "-c",
         str(ROOT / "csrc/cuda/kernels.cu"), "-o", str(tmp_path / "kernels.o")],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    # ptxas reports, per function: "Function properties for <name>", then
    # "N bytes stack frame, N bytes spill stores, N bytes spill loads", then "Used N registers, ...".
    reports = {}
    name = None
    for line in result.stderr.splitlines():
        found = re.search(r"Function properties for (\S+)", line)
        if found:
            name = found[1]
            reports[name] = {}
            continue
        if name is None:
            continue
        frame = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if frame:
            reports[name].update(stack=int(frame[1]), spill_stores=int(frame[2]), spill_loads=int(frame[3]))
        used = re.search(r"Used (\d+) registers(.*)", line)
        if used:
            lmem = re.search(r"(\d+) bytes lmem", used[2])
            reports[name].update(registers=int(used[1]), lmem=int(lmem[1]) if lmem else 0)
    kernels = {n: r for n, r in reports.items() if any(k in n for k in KERNELS)}
    # 4 kernels × (LSTM, projected LSTM, GRU) × (float, double, half, bfloat16), and the
    # projected LSTM's 2 per-step projection kernels × 4 types.
    assert len(kernels) == 56, sorted(reports)
    # The persistent kernels' step table is written by a small kernel of its own.
    helpers = {n: r for n, r in reports.items() if "write_values_kernel" in n}
    assert helpers, sorted(reports)
    for n, r in {**kernels, **helpers}.items():
        assert r["spill_stores"] == 0 and r["spill_loads"] == 0, (n, r)
        assert r["stack"] == 0 and r["lmem"] == 0, (n, r)
        # 1024-thread persistent blocks need at most 64 registers per thread (__launch_bounds__).
        assert r["registers"] <= (64 if "persistent" in n else 255), (n, r)
