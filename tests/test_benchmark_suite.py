"""The benchmark suite (benchmarks/run.py) runs end to end in a tiny configuration and writes
what it promises: the Markdown table, the JSON records, the PNG. No timing value is checked."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import fastgates
from fastgates import _C

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "benchmarks" / "run.py"
REQUIRED_KEYS = {"cell", "impl", "device", "dtype", "T", "B", "I", "H", "layers", "mode", "median_ms", "iqr_ms"}
MACHINE_KEYS = {"cpu", "logical_cores", "torch_version", "fastgates_version", "cpu_isa", "cpu_gemm",
                "l2_cache_bytes", "threads", "huge_pages", "peak_gflops", "peak_method", "torch_mm_gflops",
                "torch_mm_method", "date"}


def _load_run():
    spec = importlib.util.spec_from_file_location("fastgates_benchmarks_run", RUN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # also puts benchmarks/ on sys.path, for the suite package
    return module


@pytest.fixture
def run_module(monkeypatch):
    threads = torch.get_num_threads()
    gemm = fastgates.set_cpu_gemm("auto")  # the suite sets it from --cpu-gemm
    l2 = _C.set_l2_cache_bytes(-1)  # and this from --l2-cache-bytes
    module = _load_run()
    # A fixed peak instead of a measured one keeps the test short; the suite must take it from here.
    monkeypatch.setattr(_C, "cpu_peak_gflops", lambda n: 100.0 * n)
    yield module
    torch.set_num_threads(threads)
    fastgates.set_cpu_gemm(gemm)
    _C.set_l2_cache_bytes(l2)


def test_tiny_run_writes_table_json_and_plot(run_module, monkeypatch, tmp_path, capsys):
    # The reference's size bound, lowered so that of the two tiny shapes only the first is "small".
    monkeypatch.setattr(sys.modules["suite.implementations"], "REFERENCE_MAX_WORK", 1000)
    json_path, png_path = tmp_path / "out.json", tmp_path / "out.png"
    code = run_module.main(["--device", "cpu", "--cases", "3x2x8,4x2x16", "--min-run-time", "0.01", "--quiet",
                            "--cpu-gemm", "fastgates", "--l2-cache-bytes", "1048576", "--json", str(json_path),
                            "--plot", str(png_path)])
    assert code == 0
    out = capsys.readouterr().out

    records = json.loads(json_path.read_text())
    machines = [r for r in records if r.get("record") == "machine"]
    assert len(machines) == 1 and MACHINE_KEYS <= machines[0].keys()
    threads = torch.get_num_threads()
    assert machines[0]["threads"] == threads and machines[0]["peak_gflops"] == 100.0 * threads
    assert "cpu_peak_gflops" in machines[0]["peak_method"]
    assert machines[0]["cpu_gemm"] == "fastgates" and "backward GEMM fastgates" in out
    assert machines[0]["huge_pages"] in out
    assert machines[0]["l2_cache_bytes"] == 1048576 and "L2 planned for 1024 KiB" in out

    measured = [r for r in records if r.get("record") != "machine"]
    for r in measured:
        assert REQUIRED_KEYS <= r.keys()
        assert r["median_ms"] > 0 and r["iqr_ms"] >= 0 and r["gflops"] > 0
    keys = [(r["cell"], r["impl"], r["mode"], r["T"], r["B"], r["I"], r["H"], r["layers"]) for r in measured]
    assert len(keys) == len(set(keys))
    expected = {(cell, impl, mode, T, 2, H, H, 1)
                for cell in ("lstm", "gru") for mode in ("forward", "train") for T, H in ((3, 8), (4, 16))
                for impl in ("torch.nn", "fastgates", "reference") if impl != "reference" or H == 8}
    assert set(keys) == expected
    for r in measured:
        if r["impl"] == "torch.nn":
            assert r["ratio_vs_torch"] == pytest.approx(1.0)
        if r["impl"] == "reference":
            assert r["dtype"] == "float64" and r["peak_fraction"] is None
        else:
            assert r["dtype"] == "float32" and r["peak_fraction"] > 0

    assert "| cell | mode | T | B | I | H | layers | impl |" in out
    assert "fastgates._C.cpu_peak_gflops" in out
    rows = [line for line in out.splitlines() if line.startswith(("| lstm", "| gru"))]
    assert len(rows) == len(measured)
    assert sum("reference (numpy float64)" in row for row in rows) == 4
    assert all("| 8 | 8 | 1 | reference" in row for row in rows if "reference" in row)

    assert png_path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_command_line_from_the_repository_root():
    result = subprocess.run(
        [sys.executable, "benchmarks/run.py", "--cases", "2x1x4", "--cells", "gru", "--modes", "forward",
         "--min-run-time", "0.01", "--no-reference"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| gru")]
    assert [row.split("|")[8].strip() for row in rows] == ["torch.nn", "fastgates"]


def test_sweeps_and_flop_count(run_module):
    cases, report = sys.modules["suite.cases"], sys.modules["suite.report"]
    full = cases.full_cases(["lstm", "gru"])
    assert len(full) == len(set(full))
    lstm = {(c.T, c.B, c.H, c.layers) for c in full if c.cell == "lstm"}
    assert {(100, B, H, 1) for B in (1, 8, 32, 64, 256) for H in (64, 128, 256, 512, 1024)} <= lstm
    assert {(1, 32, 256, 1), (25, 32, 256, 1), (200, 32, 256, 1), (100, 32, 256, 2)} <= lstm
    quick = cases.quick_cases(["gru"])
    assert cases.Case("gru", 100, 32, 256, 256) in quick and all(c.cell == "gru" for c in quick)

    case = cases.Case("gru", T=5, B=3, I=7, H=11, layers=2)
    forward = 2 * 5 * 3 * 3 * 11 * (7 + 11) + 2 * 5 * 3 * 3 * 11 * (11 + 11)
    # Backward: dgates·W_hh, dW_hh, dW_ih per layer; dx only for layer 2 (x needs no gradient).
    backward = 2 * 5 * 3 * 3 * 11 * (11 + 11 + 7) + 2 * 5 * 3 * 3 * 11 * (11 + 11 + 11 + 11)
    assert report.flops(case, "forward") == forward
    assert report.flops(case, "train") == forward + backward


def test_implementations_take_turns_and_their_times_are_pooled(run_module, monkeypatch, tmp_path):
    implementations = sys.modules["suite.implementations"]
    monkeypatch.setattr(implementations, "step", lambda subjects, impl, mode: (impl, mode))
    calls = []
    block = {"torch.nn": [0.002, 0.006], "fastgates": [0.001]}  # per-call seconds of one turn

    def fake_block_times(fn, min_run_time):
        calls.append((fn, min_run_time))
        return block[fn[0]]

    monkeypatch.setattr(run_module, "block_times", fake_block_times)
    json_path = tmp_path / "out.json"
    code = run_module.main(["--device", "cpu", "--cases", "2x1x4", "--cells", "lstm", "--no-reference",
                            "--rounds", "3", "--min-run-time", "0.6", "--quiet", "--json", str(json_path)])
    assert code == 0
    expected = [(impl, mode) for mode in ("forward", "train") for _ in range(3) for impl in ("torch.nn", "fastgates")]
    assert [fn for fn, _ in calls] == expected
    assert all(t == pytest.approx(0.2) for _, t in calls)
    records = [r for r in json.loads(json_path.read_text()) if r.get("record") != "machine"]
    torch_nn = [r for r in records if r["impl"] == "torch.nn"]
    ours = [r for r in records if r["impl"] == "fastgates"]
    assert len(torch_nn) == len(ours) == 2  # forward and train
    # torch.nn's pooled times are 2, 6, 2, 6, 2, 6 ms: median 4, quartiles 2 and 6.
    assert all(r["median_ms"] == pytest.approx(4.0) and r["iqr_ms"] == pytest.approx(4.0) for r in torch_nn)
    assert all(r["median_ms"] == pytest.approx(1.0) and r["ratio_vs_torch"] == pytest.approx(4.0) for r in ours)


def test_machine_record_says_whether_torch_asks_for_huge_pages(run_module, monkeypatch):
    machine = sys.modules["suite.machine"]
    monkeypatch.setenv("THP_MEM_ALLOC_ENABLE", "1")
    assert machine.huge_pages().startswith("THP_MEM_ALLOC_ENABLE=1, transparent_hugepage=")
    monkeypatch.delenv("THP_MEM_ALLOC_ENABLE")
    assert machine.huge_pages().startswith("THP_MEM_ALLOC_ENABLE=unset, transparent_hugepage=")
    mode = machine.huge_pages().rsplit("=", 1)[1]
    assert mode in ("always", "madvise", "never", "unknown")


def test_rounds_must_be_positive(run_module):
    with pytest.raises(SystemExit):
        run_module.main(["--cases", "2x1x4", "--rounds", "0", "--quiet"])


def test_summarise_is_median_and_interquartile_range_in_ms(run_module):
    timing = sys.modules["suite.timing"]
    result = timing.summarise([0.004, 0.001, 0.003, 0.002])
    assert result.median_ms == pytest.approx(2.5)
    assert result.iqr_ms == pytest.approx(3.25 - 1.75)  # linear interpolation, as torch's Measurement
    with pytest.raises(ValueError):
        timing.summarise([])


def test_targets_measure_their_cases_and_say_which_are_met(run_module, monkeypatch, capsys):
    implementations, targets = sys.modules["suite.implementations"], sys.modules["suite.targets"]
    monkeypatch.setattr(implementations, "build", lambda case, device, dtype: SimpleNamespace(case=case))
    monkeypatch.setattr(implementations, "step", lambda subjects, impl, mode: (subjects.case, impl, mode))
    # torch.nn takes 3 ms everywhere, fastgates 1 ms: every ratio is 3, and the targets up to 3 are met.
    calls = []
    monkeypatch.setattr(run_module, "block_times", lambda fn, t: calls.append(fn) or [0.003 if fn[1] == "torch.nn" else 0.001])
    code = run_module.main(["--device", "cpu", "--targets", "--no-reference", "--rounds", "1", "--quiet",
                            "--min-run-time", "0.01"])
    assert code == 0
    measured = {(c.cell, c.T, c.B, c.H, mode) for c, _, mode in calls}
    assert measured == {target[:5] for target in targets.TARGETS} and len(targets.TARGETS) == 8
    out = capsys.readouterr().out
    table = out[out.index("CPU speed targets"):]
    rows = [line.split("|")[1:-1] for line in table.splitlines() if line.startswith(("| lstm", "| gru"))]
    assert len(rows) == 8
    for row, (cell, T, B, H, mode, target) in zip(rows, targets.TARGETS):
        assert [v.strip() for v in row] == [cell, str(T), str(B), str(H), mode, f"≥ {target}", "3.00",
                                            "yes" if target <= 3 else "no"]


def test_targets_check_reports_a_missing_measurement(run_module):
    targets = sys.modules["suite.targets"]
    rows = targets.check([{"impl": "fastgates", "cell": "lstm", "T": 100, "B": 32, "I": 256, "H": 256, "layers": 1,
                           "mode": "forward", "ratio_vs_torch": 0.99}])
    assert rows[0]["ratio"] == 0.99 and not rows[0]["met"]
    assert all(r["ratio"] is None and not r["met"] for r in rows[1:])
    with pytest.raises(SystemExit):
        run_module.main(["--targets", "--cases", "2x1x4", "--quiet"])


def test_cell_modules_tiny_run(run_module, tmp_path, capsys):
    """--cells lstmcell,grucell: the cell modules, called once per step, against torch.nn's and
    the reference, in the table, the JSON and the plot."""
    json_path, png_path = tmp_path / "cells.json", tmp_path / "cells.png"
    code = run_module.main(["--device", "cpu", "--cases", "3x2x8", "--cells", "lstmcell,grucell",
                            "--min-run-time", "0.01", "--quiet", "--json", str(json_path), "--plot", str(png_path)])
    assert code == 0
    measured = [r for r in json.loads(json_path.read_text()) if r.get("record") != "machine"]
    keys = {(r["cell"], r["impl"], r["mode"], r["T"], r["B"], r["H"], r["layers"]) for r in measured}
    assert keys == {(cell, impl, mode, 3, 2, 8, 1) for cell in ("lstmcell", "grucell") for mode in ("forward", "train")
                    for impl in ("torch.nn", "fastgates", "reference")}
    assert all(REQUIRED_KEYS <= r.keys() and r["median_ms"] > 0 for r in measured)
    out = capsys.readouterr().out
    assert sum(line.startswith(("| lstmcell", "| grucell")) for line in out.splitlines()) == len(measured)
    assert png_path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(ValueError, match="one layer"):
        sys.modules["suite.cases"].parse_cases("3x2x8x2", ["lstmcell"])


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_cell_module_steps_compute_the_layer_case(run_module, cell):
    """A cell module's run is the one-layer case's computation: T calls from zero states, whose
    h's are the layer's y (torch.nn on both sides, same weights), the same FLOP count, and in
    train mode a gradient for every parameter."""
    cases, implementations, report = (sys.modules[f"suite.{m}"] for m in ("cases", "implementations", "report"))
    layer_case, cell_case = cases.Case(cell, 4, 3, 5, 6), cases.Case(cell + "cell", 4, 3, 5, 6)
    layer, steps = implementations.build(layer_case, "cpu", torch.float64), implementations.build(cell_case, "cpu", torch.float64)
    with torch.no_grad():
        for name, value in steps.torch_layer.state_dict().items():
            getattr(layer.torch_layer, f"{name}_l0").copy_(value)
        y, state = layer.torch_layer(steps.x)
        hs, final = implementations._cell_steps(steps.torch_layer, steps.x)
    torch.testing.assert_close(torch.stack(hs), y)
    for got, want in zip(final, state if isinstance(state, tuple) else (state,), strict=True):
        torch.testing.assert_close(got, want[0])
    for mode in ("forward", "train"):
        assert report.flops(cell_case, mode) == report.flops(layer_case, mode)
    # The same loss: torch.nn's train steps of both cases give the same weight gradients.
    implementations.step(layer, "torch.nn", "train")()
    implementations.step(steps, "torch.nn", "train")()
    for name, p in steps.torch_layer.named_parameters():
        torch.testing.assert_close(p.grad, getattr(layer.torch_layer, f"{name}_l0").grad)
    calls = []
    steps.fast_layer.register_forward_hook(lambda module, args, out: calls.append(args[0].shape))
    implementations.step(steps, "fastgates", "train")()
    assert calls == [torch.Size([3, 5])] * 4
    for name, p in steps.fast_layer.named_parameters():
        torch.testing.assert_close(p.grad, getattr(steps.torch_layer, name).grad)
