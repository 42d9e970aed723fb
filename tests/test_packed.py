"""PackedSequence input for fastgates.LSTM / fastgates.GRU against torch.nn.LSTM / torch.nn.GRU with
identical weights: the output PackedSequence (data, batch_sizes, sorted_indices,
unsorted_indices, and its pad_packed_sequence), the final states, and the gradients of every
parameter, of the padded batch (or list of sequences) that was packed and of h_0 / c_0.

torch.nn's conventions that the layers must follow:
  * batch_first only concerns padded input: packed input and output are the same either way;
  * given hx is in the caller's batch order: torch.nn permutes it by sorted_indices before the
    run and h_n / c_n back by unsorted_indices after it;
  * the reverse direction runs over each sequence's own steps (from its last real step back);
  * h_n / c_n of a sequence are the states after its last real step (forward direction).
"""

from __future__ import annotations

import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

import fastgates
from rnn_helpers import (
    MODES,
    assert_close,
    assert_same_packed_results,
    make_pair,
    make_padded,
    make_states,
    output_names,
    outputs_flat,
    packer,
    run_packed_with_grads,
    state_layers,
)

pytestmark = pytest.mark.usefixtures("each_cpu_gemm")  # conftest.py: with both CPU GEMMs

INPUT, HIDDEN = 3, 5


def _compare(mode, dtype, lengths, how, kw, with_hx, *, input_size=INPUT, hidden=HIDDEN,
             proj_size=0, seed=0):
    """Packs a random padded batch of ``lengths`` (as ``how`` says, see rnn_helpers.packer), runs
    fastgates and torch.nn on it and compares everything."""
    kw = dict(kw)
    evaluate = kw.pop("eval", False)
    if proj_size:
        kw["proj_size"] = proj_size
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # dropout with one layer
        ours, ref = make_pair(mode, input_size, hidden, dtype=dtype, seed=seed, **kw)
    if evaluate:
        ours.eval()
        ref.eval()
    batch_first = kw.get("batch_first", False)
    padded = make_padded(lengths, input_size, dtype=dtype, batch_first=batch_first)
    hx = None
    if with_hx:
        hx = make_states(mode, state_layers(kw), len(lengths), hidden, dtype=dtype,
                         proj_size=proj_size)
    leaves_from_padded, pack = packer(how, lengths, batch_first=batch_first)
    leaves = leaves_from_padded(padded)

    got, grads_ours = run_packed_with_grads(mode, ours, leaves, pack, hx, batch_first=batch_first)
    expected, grads_ref = run_packed_with_grads(mode, ref, leaves, pack, hx,
                                                batch_first=batch_first)
    assert_same_packed_results(got, expected)
    names = ([f"input[{i}]" for i in range(len(leaves))]
             + (output_names(mode)[1:] if with_hx else []) + [n for n, _ in ref.named_parameters()])
    names = [n.replace("h_n", "h_0").replace("c_n", "c_0") for n in names]
    assert len(names) == len(grads_ours) == len(grads_ref)
    for name, a, b in zip(names, grads_ours, grads_ref, strict=True):
        assert_close(a, b, f"grad of {name}")
    return got


# (id, lengths, how, layer kwargs, with_hx)
CASES = [
    ("sorted", [6, 4, 4, 1], "sorted", {}, False),
    ("sorted-hx", [6, 4, 4, 1], "sorted", {}, True),
    ("unsorted", [3, 6, 1, 4, 2], "unsorted", {}, False),
    ("unsorted-hx", [3, 6, 1, 4, 2], "unsorted", {}, True),
    ("list", [2, 5, 1, 3], "list", {}, True),
    ("list-sorted", [5, 3, 3, 1], "list-sorted", {}, False),
    ("equal-lengths", [4, 4, 4], "unsorted", {}, True),
    ("equal-lengths-sorted", [4, 4, 4], "sorted", {"bidirectional": True}, True),
    ("single-sequence", [6], "sorted", {}, True),
    ("single-sequence-bi-L2", [5], "unsorted", {"num_layers": 2, "bidirectional": True}, True),
    ("single-step", [1, 1, 1], "unsorted", {"bidirectional": True}, True),
    ("runs", [7, 7, 5, 2, 2, 1], "sorted", {}, True),
    ("runs-unsorted", [2, 7, 1, 5, 2, 7], "unsorted", {}, True),
    ("runs-unsorted-bi", [2, 7, 1, 5, 2, 7], "unsorted", {"bidirectional": True}, True),
    ("batch_first", [3, 5, 1, 4], "unsorted", {"batch_first": True}, True),
    ("batch_first-sorted", [5, 4, 1], "sorted", {"batch_first": True}, False),
    ("batch_first-list", [3, 5, 1, 4], "list", {"batch_first": True, "bidirectional": True},
     True),
    ("bi", [3, 5, 1, 4], "unsorted", {"bidirectional": True}, True),
    ("bi-hx_none", [5, 4, 2, 1], "sorted", {"bidirectional": True}, False),
    ("L2", [4, 6, 2, 1], "unsorted", {"num_layers": 2}, True),
    ("L3", [5, 5, 3, 1], "sorted", {"num_layers": 3}, False),
    ("L3-hx", [2, 5, 1, 3], "unsorted", {"num_layers": 3}, True),
    ("L2-bi", [4, 6, 2, 1], "unsorted", {"num_layers": 2, "bidirectional": True}, True),
    ("L3-bi-batch_first", [7, 7, 5, 2, 2, 1], "sorted",
     {"num_layers": 3, "bidirectional": True, "batch_first": True}, True),
    ("L2-bi-list", [1, 4, 3, 4], "list", {"num_layers": 2, "bidirectional": True}, False),
    ("no_bias", [3, 6, 1, 4, 2], "unsorted", {"bias": False}, True),
    ("L2-bi-no_bias", [5, 2, 4], "unsorted",
     {"num_layers": 2, "bidirectional": True, "bias": False}, True),
    ("L3-bi-dropout-eval", [2, 7, 1, 5, 2, 7], "unsorted",
     {"num_layers": 3, "bidirectional": True, "dropout": 0.5, "eval": True}, True),
    ("L2-dropout-eval-batch_first", [4, 6, 2], "unsorted",
     {"num_layers": 2, "dropout": 0.3, "batch_first": True, "eval": True}, False),
    ("dropout-eval-one-layer", [4, 6, 2], "unsorted", {"dropout": 0.5, "eval": True}, True),
]
FLOAT32_CASES = {"unsorted-hx", "runs-unsorted-bi", "L2-bi", "L3-bi-batch_first", "list",
                 "L3-bi-dropout-eval"}


def _params():
    for case_id, lengths, how, kw, with_hx in CASES:
        for mode in MODES:
            yield pytest.param(mode, torch.float64, lengths, how, kw, with_hx,
                               id=f"{mode}-float64-{case_id}")
            if case_id in FLOAT32_CASES:
                yield pytest.param(mode, torch.float32, lengths, how, kw, with_hx,
                                   id=f"{mode}-float32-{case_id}")


@pytest.mark.parametrize("mode, dtype, lengths, how, kw, with_hx", list(_params()))
def test_packed_matches_torch_nn(mode, dtype, lengths, how, kw, with_hx):
    got = _compare(mode, dtype, lengths, how, kw, with_hx)
    # The output's features: D * hidden_size.
    directions = 2 if kw.get("bidirectional") else 1
    assert got["data"].shape == (sum(lengths), directions * HIDDEN)


@pytest.mark.parametrize("mode", MODES)
def test_packed_larger_float32(mode):
    # A modest float32 case: longer sequences, wider layers, two bidirectional layers.
    lengths = [23, 30, 4, 17, 30, 1, 12, 9]
    _compare(mode, torch.float32, lengths, "unsorted", {"num_layers": 2, "bidirectional": True},
             True, input_size=10, hidden=40)


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("mode", MODES)
def test_packed_other_thread_counts(mode, threads):
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        _compare(mode, torch.float64, [2, 7, 1, 5, 2, 7], "unsorted", {"bidirectional": True},
                 True, hidden=9)
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("mode", MODES)
def test_each_sequence_as_if_run_alone(mode, bidirectional):
    # Independent of torch.nn: a sequence's packed output and final states are those of the
    # same layer run on that sequence alone (padded path, batch of one, its own h_0 / c_0).
    lengths = [3, 6, 1, 4]
    kw = {"num_layers": 2, "bidirectional": bidirectional}
    ours, _ = make_pair(mode, INPUT, HIDDEN, **kw)
    padded = make_padded(lengths, INPUT, dtype=torch.float64)
    hx = make_states(mode, state_layers(kw), len(lengths), HIDDEN, dtype=torch.float64)
    packed = pack_padded_sequence(padded, torch.tensor(lengths), enforce_sorted=False)
    with torch.no_grad():
        out, state = ours(packed, hx)
        y, _ = torch.nn.utils.rnn.pad_packed_sequence(out)
        finals = list(state) if mode == "LSTM" else [state]
        for b, n in enumerate(lengths):
            alone_hx = tuple(t[:, b : b + 1] for t in (hx if mode == "LSTM" else (hx,)))
            alone = outputs_flat(mode, ours(padded[:n, b : b + 1],
                                            alone_hx if mode == "LSTM" else alone_hx[0]))
            assert_close(y[:n, b], alone[0][:, 0], f"output of sequence {b}")
            assert torch.equal(y[n:, b], torch.zeros_like(y[n:, b])), f"padding of sequence {b}"
            for name, a, e in zip(output_names(mode)[1:], finals, alone[1:], strict=True):
                assert_close(a[:, b], e[:, 0], f"{name} of sequence {b}")


@pytest.mark.parametrize("proj_size", [0, 2])
def test_packed_cell_state_gradient_without_hidden_state_gradient(proj_size):
    # In the reverse direction of a packed batch each sequence starts from its initial state at
    # its own step, so the backward meets initial rows at several passes; with h_0 needing no
    # gradient it writes dc0 there without the product for dh0 (kernels.h).
    lengths = [4, 1, 3, 2]
    grads = []
    for module in make_pair("LSTM", INPUT, HIDDEN, proj_size=proj_size, bidirectional=True):
        padded = make_padded(lengths, INPUT, dtype=torch.float64).requires_grad_(True)
        h0, c0 = make_states("LSTM", 2, len(lengths), HIDDEN, dtype=torch.float64, proj_size=proj_size)
        c0.requires_grad_(True)
        packed = pack_padded_sequence(padded, torch.tensor(lengths), enforce_sorted=False)
        out, (h_n, c_n) = module(packed, (h0, c0))
        loss = sum((t * torch.linspace(-1, 1, t.numel(), dtype=t.dtype).view(t.shape)).sum()
                   for t in (out.data, h_n, c_n))
        grads.append(torch.autograd.grad(loss, [padded, c0, *module.parameters()]))
    for a, b in zip(*grads, strict=True):
        assert_close(a, b, "gradients with c_0's and not h_0's")


@pytest.mark.parametrize("mode", MODES)
def test_packed_no_grad_and_inference_mode(mode):
    lengths = [2, 7, 1, 5, 2, 7]
    ours, ref = make_pair(mode, INPUT, HIDDEN, num_layers=2, bidirectional=True)
    packed = pack_padded_sequence(make_padded(lengths, INPUT, dtype=torch.float64),
                                  torch.tensor(lengths), enforce_sorted=False)
    hx = make_states(mode, 4, len(lengths), HIDDEN, dtype=torch.float64)
    out_ref, state_ref = ref(packed, hx)
    expected = [out_ref.data, *(state_ref if mode == "LSTM" else [state_ref])]
    for ctx in (torch.no_grad, torch.inference_mode):
        with ctx():
            out, state = ours(packed, hx)
        assert isinstance(out, PackedSequence)
        got = [out.data, *(state if mode == "LSTM" else [state])]
        for name, a, b in zip(output_names(mode), got, expected, strict=True):
            assert not a.requires_grad
            assert_close(a, b, f"{name} under {ctx.__name__}")
        assert torch.equal(out.batch_sizes, out_ref.batch_sizes)
        assert torch.equal(out.sorted_indices, out_ref.sorted_indices)
        assert torch.equal(out.unsorted_indices, out_ref.unsorted_indices)


@pytest.mark.parametrize(
    "mode, which, proj_size",
    [(m, w, 0) for m in MODES for w in ("data", "h_n", "c_n", "data.sum")
     if not (m == "GRU" and w == "c_n")]
    + [("LSTM", w, 2) for w in ("data", "h_n", "c_n")],
)
def test_packed_gradients_when_only_some_outputs_are_used(mode, which, proj_size):
    # Unused outputs reach the backward as None; .sum() reaches it as an expanded tensor.
    lengths = [3, 6, 1, 4]
    kw = {"num_layers": 2, "bidirectional": True}
    if proj_size:
        kw["proj_size"] = proj_size
    ours, ref = make_pair(mode, INPUT, HIDDEN, **kw)
    padded = make_padded(lengths, INPUT, dtype=torch.float64)
    hx = make_states(mode, 4, len(lengths), HIDDEN, dtype=torch.float64, proj_size=proj_size)
    grads = []
    for module in (ours, ref):
        xl = padded.clone().requires_grad_(True)
        packed = pack_padded_sequence(xl, torch.tensor(lengths), enforce_sorted=False)
        out, state = module(packed, hx)
        outs = {"data": out.data, **dict(zip(output_names(mode)[1:],
                                             state if mode == "LSTM" else [state]))}
        loss = out.data.sum() if which == "data.sum" else (outs[which] ** 2).sum()
        grads.append(torch.autograd.grad(loss, [xl, *module.parameters()]))
    names = ["input"] + [n for n, _ in ref.named_parameters()]
    for name, a, b in zip(names, *grads, strict=True):
        assert_close(a, b, f"grad of {name} through {which} only")


@pytest.mark.parametrize("mode", MODES)
def test_packed_dropout_one_in_training_mode(mode):
    # dropout=1 in training mode zeroes the inputs of layers > 0 deterministically: the same
    # results as torch.nn's (with packed input too).
    lengths = [3, 6, 1, 4]
    ours, ref = make_pair(mode, INPUT, HIDDEN, num_layers=3, bidirectional=True, dropout=1.0)
    ours.train()
    ref.train()
    padded = make_padded(lengths, INPUT, dtype=torch.float64)
    hx = make_states(mode, 6, len(lengths), HIDDEN, dtype=torch.float64)
    leaves_from_padded, pack = packer("unsorted", lengths)
    got, grads_ours = run_packed_with_grads(mode, ours, leaves_from_padded(padded), pack, hx)
    expected, grads_ref = run_packed_with_grads(mode, ref, leaves_from_padded(padded), pack, hx)
    assert_same_packed_results(got, expected, "dropout=1: ")
    for a, b in zip(grads_ours, grads_ref, strict=True):
        assert_close(a, b, "dropout=1: gradient")


@pytest.mark.parametrize("mode", MODES)
def test_packed_dropout_in_training_mode_differs_from_eval(mode):
    lengths = [3, 6, 1, 4]
    ours, _ = make_pair(mode, INPUT, HIDDEN, num_layers=2, dropout=0.5)
    packed = pack_padded_sequence(make_padded(lengths, INPUT, dtype=torch.float64),
                                  torch.tensor(lengths), enforce_sorted=False)
    ours.eval()
    evaluated = ours(packed)[0].data
    ours.train()
    torch.manual_seed(0)
    trained = ours(packed)[0].data
    assert trained.shape == evaluated.shape
    assert not torch.allclose(trained, evaluated)


@settings(max_examples=25, deadline=None, derandomize=True, database=None)
@given(
    data=st.data(),
    mode=st.sampled_from(MODES),
    lengths=st.lists(st.integers(1, 8), min_size=1, max_size=6),
    how=st.sampled_from(["sorted", "unsorted", "list"]),
    num_layers=st.integers(1, 3),
    bidirectional=st.booleans(),
    batch_first=st.booleans(),
    bias=st.booleans(),
    with_hx=st.booleans(),
    hidden=st.integers(2, 9),
    input_size=st.integers(1, 5),
)
def test_packed_random_configurations(data, mode, lengths, how, num_layers, bidirectional,
                                      batch_first, bias, with_hx, hidden, input_size):
    if how == "sorted":
        lengths = sorted(lengths, reverse=True)
    proj_size = 0
    if mode == "LSTM":
        proj_size = data.draw(st.integers(0, hidden - 1), label="proj_size")
    kw = {"num_layers": num_layers, "bidirectional": bidirectional, "batch_first": batch_first,
          "bias": bias}
    _compare(mode, torch.float64, lengths, how, kw, with_hx, input_size=input_size,
             hidden=hidden, proj_size=proj_size)


# ---------------------------------------------------------------------------------------------
# Bad packed input: the exception types torch.nn raises for the same input.


def _error(module, *args):
    with pytest.raises(Exception) as info:
        module(*args)
    return info


def _bad_packed_cases():
    good = make_padded([5, 3, 2], 4, dtype=torch.float32)
    lengths = torch.tensor([5, 3, 2])
    yield "data-float64", lambda mode: (
        pack_padded_sequence(good.double(), lengths),)
    yield "data-float64-unsorted", lambda mode: (
        pack_padded_sequence(good.double(), torch.tensor([2, 5, 3]), enforce_sorted=False),)
    yield "data-features", lambda mode: (
        pack_padded_sequence(make_padded([5, 3, 2], 5, dtype=torch.float32), lengths),)
    yield "hx-wrong-batch", lambda mode: (
        pack_padded_sequence(good, lengths),
        make_states(mode, 1, 2, 3, dtype=torch.float32))
    yield "hx-wrong-batch-unsorted", lambda mode: (
        pack_padded_sequence(good, torch.tensor([2, 5, 3]), enforce_sorted=False),
        make_states(mode, 1, 2, 3, dtype=torch.float32))
    yield "hx-wrong-hidden", lambda mode: (
        pack_padded_sequence(good, lengths),
        make_states(mode, 1, 3, 4, dtype=torch.float32))


@pytest.mark.parametrize("case", [pytest.param(f, id=i) for i, f in _bad_packed_cases()])
@pytest.mark.parametrize("mode", MODES)
def test_bad_packed_input_raises_like_torch_nn(mode, case):
    # torch.nn.GRU checks packed data like padded input (ValueError for a dtype mismatch,
    # RuntimeError for a wrong feature size or state); torch.nn.LSTM does not check packed
    # input or states at all, and its kernel raises RuntimeError for each of these (so a dtype
    # mismatch is a ValueError for padded but a RuntimeError for packed LSTM input). States of
    # the wrong batch size with unsorted sequences fail in torch.nn's permutation of hx
    # (RuntimeError). fastgates must raise torch.nn's type in each case.
    args = case(mode)
    ours = getattr(fastgates, mode)(4, 3)
    ref = getattr(torch.nn, mode)(4, 3)
    ours.load_state_dict(ref.state_dict())
    expected = _error(ref, *args)
    got = _error(ours, *args)
    # Code that catches torch.nn's exception type must catch ours: the same type, or a subclass
    # of it (e.g. one deriving from both ValueError and RuntimeError).
    assert issubclass(got.type, expected.type), (
        f"fastgates: {got.type.__name__}: {got.value}; torch.nn: {expected.type.__name__}: "
        f"{expected.value}")
