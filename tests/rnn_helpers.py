"""Shared helpers for the fastgates layer / op tests: paired modules, runs, tolerances."""

from __future__ import annotations

import torch

import fastgates

MODES = ("LSTM", "GRU")
DTYPES = (torch.float64, torch.float32)


def tolerances(dtype: torch.dtype, expected: torch.Tensor) -> dict:
    """rtol/atol for comparing against torch.nn, atol scaled by the result's magnitude
    (gradients summed over long sequences or wide layers grow)."""
    scale = max(1.0, expected.detach().abs().max().item()) if expected.numel() else 1.0
    if dtype == torch.float64:
        return {"rtol": 1e-10, "atol": 1e-10 * scale}
    return {"rtol": 1e-4, "atol": 1e-5 * scale}


def assert_close(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    torch.testing.assert_close(
        actual.detach(), expected.detach(), **tolerances(expected.dtype, expected),
        msg=lambda m: f"{what}: {m}",
    )


def make_pair(mode: str, input_size: int, hidden_size: int, *, dtype=torch.float64, seed=0, **kw):
    """(fastgates module, torch.nn module) with identical weights (torch's loaded into ours)."""
    torch.manual_seed(seed)
    ref = getattr(torch.nn, mode)(input_size, hidden_size, dtype=dtype, **kw)
    ours = getattr(fastgates, mode)(input_size, hidden_size, dtype=dtype, **kw)
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ours, ref


def make_input(mode, steps, batch, input_size, hidden_size, *, dtype, batch_first=False,
               unbatched=False, with_hx=True, seed=1, layers=1):
    """Random (input, hx) in torch.nn's layout; hx is None without with_hx. ``layers`` is
    num_layers * num_directions (the states' leading size)."""
    g = torch.Generator().manual_seed(seed)
    if unbatched:
        shape = (steps, input_size)
        state = (layers, hidden_size)
    else:
        shape = (batch, steps, input_size) if batch_first else (steps, batch, input_size)
        state = (layers, batch, hidden_size)
    x = torch.randn(shape, generator=g, dtype=dtype)
    if not with_hx:
        return x, None
    h0 = torch.randn(state, generator=g, dtype=dtype)
    if mode == "LSTM":
        return x, (h0, torch.randn(state, generator=g, dtype=dtype))
    return x, h0


def outputs_flat(mode, result):
    """LSTM's (y, (h, c)) / GRU's (y, h) as a flat list."""
    y, state = result
    return [y, *state] if mode == "LSTM" else [y, state]


def hx_flat(mode, hx):
    if hx is None:
        return []
    return list(hx) if mode == "LSTM" else [hx]


def leaf(t):
    return None if t is None else t.detach().clone().requires_grad_(True)


def leaf_hx(mode, hx):
    if hx is None:
        return None
    return tuple(leaf(t) for t in hx) if mode == "LSTM" else leaf(hx)


def run_with_grads(mode, module, x, hx, seed=2):
    """Forward, then backward of a random linear functional of every output.

    Returns (outputs, grads) where grads are those of [input, *hx, *parameters]."""
    x = leaf(x)
    hx = leaf_hx(mode, hx)
    outs = outputs_flat(mode, module(x, hx))
    g = torch.Generator().manual_seed(seed)
    loss = sum((o * torch.randn(o.shape, generator=g, dtype=o.dtype)).sum() for o in outs)
    inputs = [x, *hx_flat(mode, hx), *module.parameters()]
    grads = torch.autograd.grad(loss, inputs)
    return [o.detach() for o in outs], list(grads)


def run_with_grads_at_threads(threads, mode, module, x, hx):
    """run_with_grads on ``threads`` torch threads (the kernels and GEMMs use as many), then
    torch's thread count as it was."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return run_with_grads(mode, module, x, hx)
    finally:
        torch.set_num_threads(before)


def grad_names(mode, module, with_hx):
    names = ["input"]
    if with_hx:
        names += ["h_0", "c_0"] if mode == "LSTM" else ["h_0"]
    return names + [n for n, _ in module.named_parameters()]


def output_names(mode):
    return ["output", "h_n", "c_n"] if mode == "LSTM" else ["output", "h_n"]


# Stacked and bidirectional layouts for the construction and state-dict tests.
STACKED_LAYOUTS = [
    {"num_layers": 2},
    {"num_layers": 3, "bias": False},
    {"bidirectional": True},
    {"num_layers": 3, "bidirectional": True},
    {"num_layers": 2, "bidirectional": True, "bias": False, "batch_first": True,
     "dropout": 0.25},
]


# ---------------------------------------------------------------------------------------------
# PackedSequence input and LSTM projections (test_packed.py, test_projection.py).


def state_layers(kw: dict) -> int:
    """num_layers * num_directions for layer keyword arguments ``kw``."""
    return kw.get("num_layers", 1) * (2 if kw.get("bidirectional") else 1)


def make_states(mode, layers, batch, hidden_size, *, dtype, proj_size=0, unbatched=False,
                seed=3):
    """Random hx in torch.nn's layout, for a layer with ``layers`` = num_layers * num_directions:
    an LSTM's (h_0, c_0) with h_0 of size proj_size (when > 0) and c_0 of size hidden_size;
    a GRU's h_0. Unbatched: without the batch dimension."""
    g = torch.Generator().manual_seed(seed)
    lead = (layers,) if unbatched else (layers, batch)
    h_size = proj_size if proj_size > 0 else hidden_size
    h0 = torch.randn((*lead, h_size), generator=g, dtype=dtype)
    if mode == "LSTM":
        return h0, torch.randn((*lead, hidden_size), generator=g, dtype=dtype)
    return h0


def make_padded(lengths, input_size, *, dtype, batch_first=False, seed=1):
    """A random padded batch for sequences of ``lengths``: (max(lengths), B, input_size), or
    (B, max(lengths), input_size) batch_first. The padding is random too (not zeros): it must
    not matter."""
    g = torch.Generator().manual_seed(seed)
    steps, batch = max(lengths), len(lengths)
    shape = (batch, steps, input_size) if batch_first else (steps, batch, input_size)
    return torch.randn(shape, generator=g, dtype=dtype)


def packer(how, lengths, *, batch_first=False):
    """(leaves_from_padded, pack): how to build a PackedSequence from a padded batch.

    how: "sorted" (pack_padded_sequence, enforce_sorted=True: lengths must be non-increasing),
    "unsorted" (pack_padded_sequence, enforce_sorted=False), "list" (pack_sequence of the
    sequences cut out of the padded batch, enforce_sorted=False) or "list-sorted" (the same,
    enforce_sorted=True). leaves_from_padded(padded) gives the tensors to differentiate against
    (the padded batch, or the list of sequences); pack(*leaves) packs them."""
    from torch.nn.utils.rnn import pack_padded_sequence, pack_sequence

    lengths_t = torch.tensor(lengths, dtype=torch.int64)
    if how in ("sorted", "unsorted"):
        def leaves_from_padded(padded):
            return [padded]

        def pack(padded):
            return pack_padded_sequence(padded, lengths_t, batch_first=batch_first,
                                        enforce_sorted=how == "sorted")
        return leaves_from_padded, pack
    if how in ("list", "list-sorted"):
        def leaves_from_padded(padded):
            seq_first = padded.transpose(0, 1) if batch_first else padded
            return [seq_first[:n, b].clone() for b, n in enumerate(lengths)]

        def pack(*sequences):
            return pack_sequence(list(sequences), enforce_sorted=how == "list-sorted")
        return leaves_from_padded, pack
    raise ValueError(how)


PACKED_OUTPUT_NAMES = ("data", "batch_sizes", "sorted_indices", "unsorted_indices", "padded",
                       "lengths")


def run_packed_with_grads(mode, module, leaves, pack, hx, *, batch_first=False, seed=2):
    """module(pack(*leaves), hx), then backward of a random linear functional of the packed
    output's data and of every final state.

    Returns (results, grads): results maps "data", "batch_sizes", "sorted_indices",
    "unsorted_indices" (of the output PackedSequence), "padded" and "lengths" (its
    pad_packed_sequence, in the layer's batch_first layout), "h_n" (and "c_n") to tensors (None
    for absent indices); grads are those of [*leaves, *hx, *parameters]."""
    from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

    leaves = [leaf(t) for t in leaves]
    hx = leaf_hx(mode, hx)
    packed = pack(*leaves)
    out, state = module(packed) if hx is None else module(packed, hx)
    assert isinstance(out, PackedSequence), f"output is a {type(out).__name__}, not PackedSequence"
    states = list(state) if mode == "LSTM" else [state]
    padded, lengths = pad_packed_sequence(out, batch_first=batch_first)
    g = torch.Generator().manual_seed(seed)
    loss = sum((t * torch.randn(t.shape, generator=g, dtype=t.dtype)).sum()
               for t in [out.data, *states])
    inputs = [*leaves, *hx_flat(mode, hx), *module.parameters()]
    grads = torch.autograd.grad(loss, inputs)
    results = dict(zip(PACKED_OUTPUT_NAMES, (out.data.detach(), out.batch_sizes,
                                             out.sorted_indices, out.unsorted_indices,
                                             padded.detach(), lengths), strict=True))
    results.update(zip(output_names(mode)[1:], (s.detach() for s in states), strict=True))
    return results, list(grads)


def assert_same_packed_results(actual: dict, expected: dict, what: str = "") -> None:
    """Results of run_packed_with_grads: values close; batch_sizes, indices, lengths equal."""
    assert list(actual) == list(expected)
    for name, b in expected.items():
        a = actual[name]
        label = f"{what}{name}"
        if name in ("batch_sizes", "sorted_indices", "unsorted_indices", "lengths"):
            if b is None:
                assert a is None, f"{label}: {a} (torch.nn: None)"
                continue
            assert a is not None, f"{label}: None (torch.nn: {b})"
            assert a.dtype == b.dtype and a.device == b.device, f"{label}: {a.dtype} != {b.dtype}"
            assert torch.equal(a, b), f"{label}: {a} != {b}"
        else:
            assert_close(a, b, label)


def assert_constructed_like(ours, ref) -> None:
    """Same parameter names, order, shapes, dtypes and values (seeded construction draws the
    same weights), and the same repr."""
    ref_params = list(ref.named_parameters())
    our_params = list(ours.named_parameters())
    assert [n for n, _ in our_params] == [n for n, _ in ref_params]
    for (name, a), (_, b) in zip(our_params, ref_params, strict=True):
        assert a.shape == b.shape, name
        assert a.dtype == b.dtype, name
        assert isinstance(a, torch.nn.Parameter) and a.requires_grad, name
        assert torch.equal(a, b), name
    assert repr(ours) == repr(ref)


def assert_same_parameters(a, b) -> None:
    """Equal parameters (names, values, dtype, device) held in separate memory: a copy."""
    named_a, named_b = dict(a.named_parameters()), dict(b.named_parameters())
    assert list(named_a) == list(named_b)
    for name, p in named_a.items():
        q = named_b[name]
        assert torch.equal(p, q), name
        assert p.dtype == q.dtype and p.device == q.device, name
        assert p.data_ptr() != q.data_ptr(), f"{name} is shared, not copied"


class Halve(torch.nn.Module):
    """A parametrization (torch.nn.utils.parametrize) that halves the weight."""

    def forward(self, w):
        return 0.5 * w


def assert_gradients_with_halved(ours, ref, grads_ours, grads_ref, name: str) -> None:
    """The parameters' gradients, by name, of ``ours``, whose weight ``name`` is parametrized by
    Halve, against ``ref``, whose ``name`` holds the halved weight: the original's gradient is
    half of ref's, the others are equal. grads_*: gradients whose last entries are those of
    the module's parameters(), in order."""
    named_ours = dict(zip([n for n, _ in ours.named_parameters()], grads_ours[-len(list(ours.parameters())):]))
    named_ref = dict(zip([n for n, _ in ref.named_parameters()], grads_ref[-len(list(ref.parameters())):]))
    assert_close(named_ours.pop(f"parametrizations.{name}.original"), 0.5 * named_ref.pop(name),
                 "gradient of the parametrization's original")
    assert named_ours.keys() == named_ref.keys()
    for key in named_ref:
        assert_close(named_ours[key], named_ref[key], f"gradient of {key}")


def sequence_gradients(layer, x, packed, dy_of, dh_of):
    """The gradients of x and of every parameter, for gradients dy_of(y) (None: y not in the
    loss) and dh_of(h_n) of the layer's output (PackedSequence.data when packed) and final
    hidden state; sequences of different lengths when packed."""
    from torch.nn.utils.rnn import pack_padded_sequence

    x = x.detach().requires_grad_(True)
    lengths = torch.tensor([x.shape[0] - i % x.shape[0] for i in range(x.shape[1])])
    out, states = layer(pack_padded_sequence(x, lengths, enforce_sorted=False) if packed else x)
    y = out.data if packed else out
    h_n = states[0] if isinstance(states, tuple) else states
    inputs = [x, *layer.parameters()]
    dy = dy_of(y)
    if dy is None:  # y not in the loss
        return torch.autograd.grad([h_n], inputs, [dh_of(h_n)])
    return torch.autograd.grad([y, h_n], inputs, [dy, dh_of(h_n)])


def assert_shared_gradient_rows_act_as_dense(layer, x, packed, row):
    """A dy whose rows are all one row in memory (``row`` expanded, a scalar expanded as from
    y.sum(), or no dy at all) gives, bit for bit, the gradients of the same values made dense."""
    one = torch.ones((), dtype=row.dtype, device=row.device)
    for dy_of, dense_dy_of in [(lambda y: row.expand(y.shape), lambda y: row.expand(y.shape).contiguous()),
                               (lambda y: one.expand(y.shape), torch.ones_like),
                               (lambda y: None, torch.zeros_like)]:
        shared = sequence_gradients(layer, x, packed, dy_of, torch.ones_like)
        dense = sequence_gradients(layer, x, packed, dense_dy_of, torch.ones_like)
        for got, expected in zip(shared, dense, strict=True):
            assert torch.equal(got, expected)
