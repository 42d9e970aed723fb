"""The CUDA kernels of the LSTM with a projection (proj_size; csrc/cuda/kernels.h), and the
16-bit types on packed and reversed sequences, run on the CPU by the CUDA emulation and
compared with the CPU kernels on the same inputs (which tests/test_projection.py and
tests/test_packed.py compare with torch.nn). Shapes are small: every emulated CUDA thread is a
CPU thread."""

from __future__ import annotations

import pytest
import torch

from fastgates._backend import C
from test_cuda_emulated import (
    EMU, STRATEGIES, batch_sizes_of, close, cpu_kernel_gru, cpu_kernel_lstm, gemm_input, gru_emulated,
    gru_emulated_backward, lstm_emulated, lstm_emulated_backward, problem, workspace,
)

pytestmark = pytest.mark.cuda_emulated

I_SIZE = 3


def projected_problem(T, B, H, P, dtype, seed, lengths=None):
    """A projected LSTM problem: padded [T, B, ·] arrays, or packed [N, ·] ones for `lengths`."""
    return problem(4, T, B, I_SIZE, H, dtype, seed, lengths=lengths, proj_size=P)


def emulated_projected(p, strategy, batch_sizes, reverse, save=True, want_states=True):
    """Forward and backward of the emulated CUDA kernels; want_states False: the backward gets
    None for dh0 and dc0 (not wanted)."""
    lead, B = p["x"].shape[:-1], p["h0"].shape[0]
    P, H = p["w_hr"].shape
    dtype = p["x"].dtype
    e = lambda *s: torch.empty(*s, dtype=dtype)  # noqa: E731
    gates_x = gemm_input(p["x"], p["w_ih"].T, p["b_ih"].double() + p["b_hh"].double())
    out = {"y": e(*lead, P), "h_n": e(B, P), "c_n": e(B, H), "saved_gates": e(*lead, 4 * H) if save else None,
           "saved_c": e(*lead, H) if save else None, "saved_m": e(*lead, H)}
    EMU.lstm_forward(gates_x, p["w_hh"], p["h0"], p["c0"], batch_sizes, reverse, out["y"], out["h_n"], out["c_n"],
                     out["saved_gates"], out["saved_c"], workspace("lstm_forward", dtype, B, H, strategy, batch_sizes),
                     strategy, w_hr=p["w_hr"], saved_m=out["saved_m"])
    if not save:
        return out
    out.update(dgates=e(*lead, 4 * H), dh=e(*lead, P), h0=e(B, P) if want_states else None,
               c0=e(B, H) if want_states else None)
    EMU.lstm_backward(p["w_hh"], out["saved_gates"], out["saved_c"], p["c0"], batch_sizes, reverse, p["dy"],
                      p["dh_n"], p["dc_n"], out["dgates"], out["h0"], out["c0"],
                      workspace("lstm_backward", dtype, B, H, strategy, batch_sizes), strategy, w_hr=p["w_hr"],
                      dh=out["dh"])
    return out


def cpu_projected(p, batch_sizes, reverse):
    """The CPU kernels (csrc/cpu/) on the same problem, in float64."""
    p = {k: v.double() for k, v in p.items()}
    lead, B = p["x"].shape[:-1], p["h0"].shape[0]
    P, H = p["w_hr"].shape
    T = lead[0] if batch_sizes is None else len(batch_sizes)
    e = lambda *s: torch.empty(*s, dtype=torch.float64)  # noqa: E731

    def ws(kernel, input_size):
        return torch.empty(C().workspace_bytes(kernel, "float64", T, B, input_size, H, 1, P), dtype=torch.uint8)

    out = {"gates_x": e(*lead, 4 * H), "y": e(*lead, P), "h_n": e(B, P), "c_n": e(B, H),
           "saved_gates": e(*lead, 4 * H), "saved_c": e(*lead, H), "saved_m": e(*lead, H)}
    C().lstm_forward(p["x"], p["w_ih"], p["b_ih"], p["w_hh"], p["b_hh"], p["w_hr"], p["h0"], p["c0"], batch_sizes,
                     reverse, out["gates_x"], out["y"], out["h_n"], out["c_n"], out["saved_gates"], out["saved_c"],
                     out["saved_m"], ws("lstm_forward", I_SIZE), 1)
    out.update(dgates=e(*lead, 4 * H), dh=e(*lead, P), h0=e(B, P), c0=e(B, H))
    C().lstm_backward(p["w_hh"], p["w_hr"], out["saved_gates"], out["saved_c"], p["c0"], batch_sizes, reverse,
                      p["dy"], p["dh_n"], p["dc_n"], out["dgates"], out["dh"], out["h0"], out["c0"],
                      ws("lstm_backward", 0), 1)
    return out


# (T, B) when padded, else the packed lengths; H, P: a projection to 1, to H - 1, and one whose
# P and H span several blocks of 8 units (two grid columns for the P-wide phases, three for H).
LAYOUTS = [
    pytest.param((3, 5), None, False, 7, 1, id="padded-P1"),
    pytest.param((3, 5), None, True, 7, 6, id="padded-reverse-P6"),
    pytest.param((2, 6), None, False, 19, 11, id="padded-H19-P11"),
    pytest.param(None, [5, 5, 3, 1], False, 9, 4, id="packed"),
    pytest.param(None, [7, 6, 4, 4, 3, 2, 1], True, 9, 4, id="packed-reverse"),
    pytest.param(None, [1, 1, 1], True, 5, 2, id="packed-T1-reverse"),
]
OUTPUTS = ("y", "h_n", "c_n", "saved_gates", "saved_c", "saved_m", "dgates", "dh", "h0", "c0")


def run_layout(padded, lengths, H, P, dtype, seed):
    if lengths is None:
        return projected_problem(*padded, H, P, dtype, seed), None
    return projected_problem(0, 0, H, P, dtype, seed, lengths), batch_sizes_of(lengths)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("padded, lengths, reverse, H, P", LAYOUTS)
def test_projected_lstm_matches_the_cpu_kernels_and_strategies_agree_bitwise(padded, lengths, reverse, H, P, dtype):
    p, batch_sizes = run_layout(padded, lengths, H, P, dtype, seed=21)
    cpu = cpu_projected(p, batch_sizes, reverse)
    results = [emulated_projected(p, strategy, batch_sizes, reverse) for strategy in STRATEGIES]
    for name in OUTPUTS:
        close(results[0][name], cpu[name], dtype, name)
        # The same sums in the same order whether W_hh comes from global or shared memory.
        assert torch.equal(results[0][name], results[1][name]), name


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("padded, lengths, reverse, H, P", LAYOUTS)
def test_projected_backward_without_initial_state_gradients_changes_no_other_output(padded, lengths, reverse, H, P,
                                                                                    strategy):
    p, batch_sizes = run_layout(padded, lengths, H, P, torch.float64, seed=9)
    full = emulated_projected(p, strategy, batch_sizes, reverse)
    part = emulated_projected(p, strategy, batch_sizes, reverse, want_states=False)
    assert part["h0"] is None and part["c0"] is None
    for name in ("dgates", "dh"):
        assert torch.equal(part[name], full[name]), name


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_projected_forward_without_saving_gives_the_training_outputs(strategy):
    p, batch_sizes = run_layout(None, [4, 2, 2], 7, 3, torch.float64, seed=22)
    inference = emulated_projected(p, strategy, batch_sizes, False, save=False)
    training = emulated_projected(p, strategy, batch_sizes, False)
    for name in ("y", "h_n", "c_n", "saved_m"):
        assert torch.equal(inference[name], training[name]), name


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["float16", "bfloat16"])
@pytest.mark.parametrize("padded, lengths, reverse, H, P",
                         [LAYOUTS[1], pytest.param(None, [5, 4, 2], True, 9, 4, id="packed-reverse")])
def test_projected_lstm_in_16_bit_types(padded, lengths, reverse, H, P, dtype):
    p, batch_sizes = run_layout(padded, lengths, H, P, dtype, seed=23)
    cpu = cpu_projected(p, batch_sizes, reverse)
    for strategy in STRATEGIES:
        got = emulated_projected(p, strategy, batch_sizes, reverse)
        for name in OUTPUTS:
            close(got[name], cpu[name], dtype, f"{strategy} {name}")


def layout_problem_16(G, lengths, dtype, seed):
    """A packed problem in a 16-bit type (inputs rounded once) and its float64 copy."""
    p = problem(G, 0, 0, 3, 10, dtype, seed, lengths=lengths)
    return p, {k: v.double() for k, v in p.items()}


# The 16-bit types on packed sequences, forward and reverse: the loads and stores of the
# packed rows (the CPU kernels, in float64 on the same rounded inputs, are the yardstick).
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["float16", "bfloat16"])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_16_bit_types_on_packed_sequences(strategy, reverse, dtype):
    lengths = [6, 5, 5, 2, 1]
    batch_sizes = batch_sizes_of(lengths)
    p, p64 = layout_problem_16(4, lengths, dtype, seed=24)
    cpu = cpu_kernel_lstm(p64, batch_sizes, reverse)
    fwd = lstm_emulated(p, strategy, batch_sizes=batch_sizes, reverse=reverse)
    got = {**fwd, **lstm_emulated_backward(p, fwd, strategy, batch_sizes=batch_sizes, reverse=reverse)}
    for name in ("y", "h_n", "c_n", "saved_gates", "saved_c", "dgates", "h0", "c0"):
        close(got[name], cpu[name], dtype, f"lstm {name}")
    p, p64 = layout_problem_16(3, lengths, dtype, seed=25)
    cpu = cpu_kernel_gru(p64, batch_sizes, reverse)
    fwd = gru_emulated(p, strategy, batch_sizes=batch_sizes, reverse=reverse)
    got = {**fwd, **gru_emulated_backward(p, fwd, strategy, batch_sizes=batch_sizes, reverse=reverse)}
    for name in ("y", "h_n", "saved", "dgates_x", "dgates_h", "h0"):
        close(got[name], cpu[name], dtype, f"gru {name}")


def _valid_projected_call(**change):
    dtype = torch.float64
    B, T, H, P = 2, 3, 5, 2
    e = lambda *s: torch.zeros(*s, dtype=dtype)  # noqa: E731
    args = dict(gates_x=e(T, B, 4 * H), w_hh=e(4 * H, P), h0=e(B, P), c0=e(B, H), batch_sizes=None, reverse=False,
                y=e(T, B, P), h_n=e(B, P), c_n=e(B, H), saved_gates=None, saved_c=None,
                workspace=workspace("lstm_forward", dtype, B, H, "per_step"), strategy="per_step", w_hr=e(P, H),
                saved_m=e(T, B, H))
    args.update(change)
    EMU.lstm_forward(**args)


def test_valid_projected_arguments_run():
    _valid_projected_call()


@pytest.mark.parametrize("change, match", [
    (dict(saved_m=None), "w_hr and saved_m must be given together"),
    (dict(w_hr=None), "w_hr and saved_m must be given together"),
    (dict(w_hr=torch.zeros(5, 5, dtype=torch.float64)), "fewer rows than hidden_size 5"),
    (dict(w_hh=torch.zeros(20, 5, dtype=torch.float64)), "'w_hh' has shape"),
    (dict(h0=torch.zeros(2, 5, dtype=torch.float64)), "'h0' has shape"),
    (dict(y=torch.zeros(3, 2, 5, dtype=torch.float64)), "'y' has shape"),
    (dict(saved_m=torch.zeros(3, 2, 2, dtype=torch.float64)), "'saved_m' has shape"),
])
def test_bad_projected_arguments_raise(change, match):
    with pytest.raises(ValueError, match=match):
        _valid_projected_call(**change)


def test_projected_backward_needs_dh():
    dtype = torch.float64
    B, T, H, P = 2, 3, 5, 2
    e = lambda *s: torch.zeros(*s, dtype=dtype)  # noqa: E731
    with pytest.raises(ValueError, match="w_hr and dh must be given together"):
        EMU.lstm_backward(e(4 * H, P), e(T, B, 4 * H), e(T, B, H), e(B, H), None, False, e(T, B, P), e(B, P),
                          e(B, H), e(T, B, 4 * H), e(B, P), e(B, H),
                          workspace("lstm_backward", dtype, B, H, "per_step"), "per_step", w_hr=e(P, H))


def test_cuda_wrappers_pass_the_projection(monkeypatch):
    """fastgates/_cuda.py's wrappers (workspace allocation, keyword arguments) on the emulation."""
    from fastgates import _cuda
    from test_cuda_emulated import EmulatedGpuModule

    monkeypatch.setattr(_cuda, "_gpu", EmulatedGpuModule)
    monkeypatch.setattr(_cuda, "_device_index", lambda tensor: 0)
    monkeypatch.setattr(_cuda, "_stream", lambda device: 0)
    p, batch_sizes = run_layout(None, [3, 2, 2], 6, 2, torch.float64, seed=26)
    cpu = cpu_projected(p, batch_sizes, True)
    N, B, P, H = len(p["x"]), 3, 2, 6
    e = lambda *s: torch.zeros(*s, dtype=torch.float64)  # noqa: E731
    out = {"y": e(N, P), "h_n": e(B, P), "c_n": e(B, H), "saved_gates": e(N, 4 * H), "saved_c": e(N, H),
           "saved_m": e(N, H)}
    gates_x = gemm_input(p["x"], p["w_ih"].T, p["b_ih"] + p["b_hh"])
    _cuda.lstm_forward(gates_x, p["w_hh"], p["h0"], p["c0"], out["y"], out["h_n"], out["c_n"], out["saved_gates"],
                       out["saved_c"], strategy="persistent", batch_sizes=batch_sizes, reverse=True, w_hr=p["w_hr"],
                       saved_m=out["saved_m"])
    out.update(dgates=e(N, 4 * H), dh=e(N, P), h0=e(B, P), c0=e(B, H))
    _cuda.lstm_backward(p["w_hh"], out["saved_gates"], out["saved_c"], p["c0"], p["dy"], p["dh_n"], p["dc_n"],
                        out["dgates"], out["h0"], out["c0"], batch_sizes=batch_sizes, reverse=True, w_hr=p["w_hr"],
                        dh=out["dh"])
    for name in out:
        close(out[name], cpu[name], torch.float64, name)
