"""The layers and ops on the CUDA path: the input projection as a torch GEMM, then the CUDA
recurrent kernels. Without a GPU the same path runs on CPU tensors with the CUDA kernel
sources compiled for the CPU (the emulation), against torch.nn; with a GPU, on CUDA tensors
against torch.nn on cuDNN."""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import fastgates
from fastgates.ops._external_projection import emulate_cuda_on_cpu
from rnn_helpers import assert_shared_gradient_rows_act_as_dense

# (mode, constructor arguments, packed lengths or None); small: every emulated CUDA thread is
# a CPU thread.
CONFIGS = [
    ("LSTM", {}, None),
    ("GRU", {"bias": False}, None),
    ("LSTM", {"num_layers": 2, "batch_first": True}, None),
    ("GRU", {"bidirectional": True}, None),
    ("LSTM", {"bidirectional": True}, [4, 1, 3]),
    ("GRU", {"num_layers": 2, "bidirectional": True}, [4, 4, 2]),
    ("LSTM", {"proj_size": 2}, None),
    ("LSTM", {"proj_size": 4, "num_layers": 2, "bidirectional": True}, [4, 1, 3]),
]
IDS = ["lstm", "gru-no_bias", "lstm-L2-batch_first", "gru-bi", "lstm-bi-packed", "gru-L2-bi-packed", "lstm-proj",
       "lstm-proj-L2-bi-packed"]


# Where the CUDA path runs: on CPU tensors through the emulation, and on a GPU when there is one.
PATHS = [
    pytest.param("cpu", emulate_cuda_on_cpu, marks=pytest.mark.cuda_emulated, id="emulated"),
    pytest.param("cuda", contextlib.nullcontext, id="gpu",
                 marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")),
]


def _outputs_and_grads(module, x, lengths, batch_first):
    x = x.detach().requires_grad_(True)
    inp = pack_padded_sequence(x, torch.tensor(lengths), batch_first=batch_first, enforce_sorted=False) if lengths else x
    out, states = module(inp)
    if lengths:
        out = pad_packed_sequence(out, batch_first=batch_first)[0]
    states = states if isinstance(states, tuple) else (states,)
    weights = torch.linspace(-1, 1, out.numel(), dtype=out.dtype, device=out.device).view(out.shape)
    loss = (out * weights).sum() + sum((s * s).sum() for s in states)
    return [out, *states, *torch.autograd.grad(loss, [x, *module.parameters()])]


def _compare(mode, kwargs, lengths, device, run_fastgates):
    torch.manual_seed(0)
    twin = getattr(torch.nn, mode)(3, 5, dtype=torch.float64, device=device, **kwargs)
    layer = fastgates.from_torch(twin)
    batch_first = kwargs.get("batch_first", False)
    x = torch.randn((3, 4, 3) if batch_first else (4, 3, 3), dtype=torch.float64, device=device)
    expected = _outputs_and_grads(twin, x, lengths, batch_first)
    with run_fastgates():
        got = _outputs_and_grads(layer, x, lengths, batch_first)
    for e, g in zip(expected, got, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("device, run_fastgates", PATHS)
@pytest.mark.parametrize("mode, kwargs, lengths", CONFIGS, ids=IDS)
def test_layers_on_the_cuda_path_match_torch_nn(mode, kwargs, lengths, device, run_fastgates):
    _compare(mode, kwargs, lengths, device, run_fastgates)


@pytest.mark.parametrize("device, run_fastgates", PATHS)
def test_shared_gradient_rows_on_the_cuda_path(device, run_fastgates):
    # As on the CPU kernels (test_kernels): an expanded dy reaches the CUDA kernels as one row.
    for mode, kwargs, packed in [("LSTM", {}, True), ("GRU", {}, False), ("LSTM", {"proj_size": 3}, True)]:
        torch.manual_seed(0)
        layer = getattr(fastgates, mode)(3, 5, bidirectional=True, dtype=torch.float64, device=device, **kwargs)
        x = torch.randn(4, 3, 3, dtype=torch.float64, device=device)
        row = torch.randn(2 * kwargs.get("proj_size", 5), dtype=torch.float64, device=device)
        with run_fastgates():
            assert_shared_gradient_rows_act_as_dense(layer, x, packed, row)


@pytest.mark.parametrize("device, run_fastgates", PATHS)
def test_projected_lstm_gradcheck_on_the_cuda_path(device, run_fastgates):
    torch.manual_seed(1)
    layer = fastgates.LSTM(3, 5, proj_size=2, bidirectional=True, dtype=torch.float64, device=device)
    names = [name for name, _ in layer.named_parameters()]
    x = torch.randn(3, 2, 3, dtype=torch.float64, device=device, requires_grad=True)
    weights = [w.detach().clone().requires_grad_() for w in layer.parameters()]

    def run(x, *w):
        out, (h_n, c_n) = torch.func.functional_call(layer, dict(zip(names, w)), (x,))
        return out, h_n, c_n

    with run_fastgates():
        assert torch.autograd.gradcheck(run, (x, *weights), eps=1e-6, atol=1e-7)


# Which initial states require a gradient: the op asks the kernels for dh0 / dc0 only then, and
# without dh0 they skip the products that only dh0 needs.
STATE_GRADIENTS = [("LSTM", (True, True)), ("LSTM", (True, False)), ("LSTM", (False, True)), ("LSTM", (False, False)),
                   ("GRU", (True,)), ("GRU", (False,))]


@pytest.mark.parametrize("device, run_fastgates", PATHS)
def test_initial_state_gradients_on_the_cuda_path(device, run_fastgates):
    for mode, wanted in STATE_GRADIENTS:
        for kwargs, lengths in [({}, None), ({"bidirectional": True}, [4, 1, 3]), ({"proj_size": 2}, None)]:
            if mode == "GRU" and "proj_size" in kwargs:
                continue
            torch.manual_seed(2)
            twin = getattr(torch.nn, mode)(3, 5, dtype=torch.float64, device=device, **kwargs)
            layer = fastgates.from_torch(twin)
            x = torch.randn(4, 3, 3, dtype=torch.float64, device=device)
            directions = 2 if kwargs.get("bidirectional") else 1
            sizes = (kwargs.get("proj_size", 5), 5)[:len(wanted)]
            states = [torch.randn(directions, 3, size, dtype=torch.float64, device=device) for size in sizes]

            def outputs_and_grads(module):
                leaves = [s.clone().requires_grad_(w) for s, w in zip(states, wanted)]
                inp = pack_padded_sequence(x, torch.tensor(lengths), enforce_sorted=False) if lengths else x
                out, final = module(inp, tuple(leaves) if mode == "LSTM" else leaves[0])
                out = pad_packed_sequence(out)[0] if lengths else out
                final = final if isinstance(final, tuple) else (final,)
                loss = (out * out).sum() + sum((s * s).sum() for s in final)
                wrt = [*module.parameters(), *(s for s in leaves if s.requires_grad)]
                return [out, *final, *torch.autograd.grad(loss, wrt)]

            expected = outputs_and_grads(twin)
            with run_fastgates():
                got = outputs_and_grads(layer)
            assert len(got) == len(expected)
            for e, g in zip(expected, got, strict=True):
                torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-12)
