r"""Pure-NumPy float64 reference implementation of LSTM and GRU layers.

This module is the project's test oracle and a teaching reference.  It
implements a single-layer, unidirectional LSTM and GRU, forward pass and full
backpropagation through time (BPTT), directly from the equations below, using
``torch.nn`` conventions for weight layout and gate order.  It depends only on
NumPy (no torch, nothing else from ``fastgates``) so it can be loaded
standalone from its file path.

Notation
--------
``T`` sequence length, ``B`` batch size, ``I`` input size, ``H`` hidden size.
``x`` has shape (T, B, I); ``y`` has shape (T, B, H); hidden/cell states have
shape (B, H).  Row vectors are used throughout, so ``x_t W^T`` is a
(B, I) @ (I, 4H) product.  ``σ`` is the logistic sigmoid and ``⊙`` the
element-wise product.

LSTM (gate order i, f, g, o stacked in the rows of ``w_ih`` (4H, I),
``w_hh`` (4H, H), ``b_ih`` (4H,), ``b_hh`` (4H,))::

    [a_i, a_f, a_g, a_o] = x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh
    i = σ(a_i)    f = σ(a_f)    g = tanh(a_g)    o = σ(a_o)
    c_t = f ⊙ c_{t-1} + i ⊙ g
    h_t = o ⊙ tanh(c_t)
    y_t = h_t

GRU (torch.nn / cuDNN form, gate order r, z, n stacked in the rows of
``w_ih`` (3H, I), ``w_hh`` (3H, H), ``b_ih`` (3H,), ``b_hh`` (3H,))::

    r   = σ(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)
    z   = σ(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)
    n   = tanh(W_in x_t + b_in + r ⊙ (W_hn h_{t-1} + b_hn))
    h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}
    y_t = h_t

Note that in the GRU the reset gate multiplies the *hidden projection
including its bias* ``b_hn``, which is why the input and hidden biases are not
interchangeable for the ``n`` gate.

Gradients
---------
``lstm_grad`` / ``gru_grad`` return the gradients of the scalar

    L = sum(dy ⊙ y) + sum(dh_n ⊙ h_n) [+ sum(dc_n ⊙ c_n)   (LSTM only)]

with respect to every input, i.e. a vector-Jacobian product with the upstream
gradients ``dy``, ``dh_n`` (and ``dc_n``), exactly what autograd computes for
``torch.nn.LSTM`` / ``torch.nn.GRU``.  Any of the upstream gradients may be
``None``, meaning zeros.

Backward equations, with ``dh`` the total gradient reaching ``h_t``
(``dy_t`` plus what flows back from step t+1)::

    LSTM:  dc   = dc_next + dh ⊙ o ⊙ (1 - tanh(c_t)^2)
           da_i = dc ⊙ g ⊙ i(1-i)          da_f = dc ⊙ c_{t-1} ⊙ f(1-f)
           da_g = dc ⊙ i ⊙ (1-g^2)         da_o = dh ⊙ tanh(c_t) ⊙ o(1-o)
           dc_{t-1} = dc ⊙ f
           da = [da_i, da_f, da_g, da_o]                           (B, 4H)
           dx_t = da W_ih      dW_ih += da^T x_t      db_ih += Σ_B da
           dh_{t-1} = da W_hh  dW_hh += da^T h_{t-1}  db_hh += Σ_B da

    GRU:   da_n = dh ⊙ (1-z) ⊙ (1-n^2)
           da_z = dh ⊙ (h_{t-1} - n) ⊙ z(1-z)
           da_r = da_n ⊙ (W_hn h_{t-1} + b_hn) ⊙ r(1-r)
           dgi = [da_r, da_z, da_n]         (input-side pre-activations)
           dgh = [da_r, da_z, da_n ⊙ r]     (hidden-side pre-activations)
           dx_t = dgi W_ih     dW_ih += dgi^T x_t      db_ih += Σ_B dgi
           dh_{t-1} = dh ⊙ z + dgh W_hh
                               dW_hh += dgh^T h_{t-1}  db_hh += Σ_B dgh

All computation is done in float64; inputs are converted with
``np.asarray(..., dtype=np.float64)``.  Computation is vectorised over the
batch and loops over time only.
"""

import numpy as np

__all__ = ["lstm", "lstm_grad", "gru", "gru_grad"]


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def _sigmoid(a):
    """Numerically stable logistic sigmoid.

    Uses the identity σ(a) = (1 + tanh(a / 2)) / 2, which never overflows
    (unlike 1 / (1 + exp(-a)) for large negative ``a``).
    """
    return 0.5 * (1.0 + np.tanh(0.5 * a))


def _sum_outer(da, v):
    """Sum over time and batch of the outer products ``da_t[b]^T v_t[b]``.

    ``da`` is (T, B, G), ``v`` is (T, B, K); returns the (G, K) weight
    gradient ``sum_t da_t^T v_t``.
    """
    return np.tensordot(da, v, axes=([0, 1], [0, 1]))


def _as_f64(name, value):
    """Convert ``value`` to a float64 ndarray; ``name`` is used in errors."""
    if value is None:
        raise ValueError(f"{name} must be an array, got None")
    return np.asarray(value, dtype=np.float64)


def _check_shape(name, arr, expected, descr):
    """Raise ValueError unless ``arr.shape == expected``.

    ``descr`` is the symbolic form of the expected shape, e.g. ``"(4H, I)"``.
    """
    if arr.shape != tuple(expected):
        raise ValueError(
            f"{name} has shape {arr.shape}, expected {descr} = {tuple(expected)}"
        )


def _check_layer_args(x, w_ih, w_hh, b_ih, b_hh, n_gates):
    """Validate and convert the layer inputs shared by LSTM and GRU.

    ``n_gates`` is 4 for the LSTM and 3 for the GRU.  Returns the converted
    arrays and the sizes ``(T, B, I, H)``.  ``T`` , ``B``, ``I`` are taken
    from ``x`` and ``H`` from ``w_hh.shape[1]``; all must be >= 1.
    """
    x = _as_f64("x", x)
    if x.ndim != 3 or min(x.shape) < 1:
        raise ValueError(
            f"x has shape {x.shape}, expected (T, B, I) with T, B, I >= 1"
        )
    T, B, I = x.shape

    G = n_gates
    w_hh = _as_f64("w_hh", w_hh)
    if w_hh.ndim != 2 or w_hh.shape[1] < 1 or w_hh.shape[0] != G * w_hh.shape[1]:
        raise ValueError(
            f"w_hh has shape {w_hh.shape}, expected ({G}H, H) with H >= 1"
        )
    H = w_hh.shape[1]

    w_ih = _as_f64("w_ih", w_ih)
    _check_shape("w_ih", w_ih, (G * H, I), f"({G}H, I)")
    b_ih = _as_f64("b_ih", b_ih)
    _check_shape("b_ih", b_ih, (G * H,), f"({G}H,)")
    b_hh = _as_f64("b_hh", b_hh)
    _check_shape("b_hh", b_hh, (G * H,), f"({G}H,)")
    return x, w_ih, w_hh, b_ih, b_hh, (T, B, I, H)


def _state(name, value, B, H):
    """Convert and validate a (B, H) state array (must not be None)."""
    arr = _as_f64(name, value)
    _check_shape(name, arr, (B, H), "(B, H)")
    return arr


def _upstream(name, value, shape, descr):
    """Convert and validate an upstream gradient; ``None`` means zeros."""
    if value is None:
        return np.zeros(shape, dtype=np.float64)
    arr = np.asarray(value, dtype=np.float64)
    _check_shape(name, arr, shape, descr)
    return arr


# ---------------------------------------------------------------------------
# LSTM
# ---------------------------------------------------------------------------


def _lstm_forward(x, w_ih, w_hh, b_ih, b_hh, h0, c0):
    """LSTM forward on validated float64 arrays, keeping what BPTT needs.

    Returns ``y`` (T, B, H), ``hs`` (T+1, B, H) and ``cs`` (T+1, B, H) with
    ``hs[0] = h0``, ``cs[0] = c0``, and the activated gates ``gates``
    (T, 4, B, H) in order i, f, g, o.
    """
    T, B, _ = x.shape
    H = h0.shape[1]
    hs = np.empty((T + 1, B, H))
    cs = np.empty((T + 1, B, H))
    gates = np.empty((T, 4, B, H))
    hs[0], cs[0] = h0, c0

    # The input projection does not depend on the recurrence: do it at once.
    x_proj = x @ w_ih.T + b_ih  # (T, B, 4H)
    for t in range(T):
        a = x_proj[t] + hs[t] @ w_hh.T + b_hh  # (B, 4H)
        i = _sigmoid(a[:, 0 * H:1 * H])
        f = _sigmoid(a[:, 1 * H:2 * H])
        g = np.tanh(a[:, 2 * H:3 * H])
        o = _sigmoid(a[:, 3 * H:4 * H])
        cs[t + 1] = f * cs[t] + i * g
        hs[t + 1] = o * np.tanh(cs[t + 1])
        gates[t] = i, f, g, o
    y = hs[1:].copy()
    return y, hs, cs, gates


def lstm(x, w_ih, w_hh, b_ih, b_hh, h0, c0):
    """Single-layer unidirectional LSTM forward pass.

    Parameters
    ----------
    x : (T, B, I) input sequence.
    w_ih : (4H, I) input-hidden weights, gate rows i, f, g, o.
    w_hh : (4H, H) hidden-hidden weights, gate rows i, f, g, o.
    b_ih, b_hh : (4H,) biases (pass zeros for a bias-free layer).
    h0, c0 : (B, H) initial hidden and cell state.

    Returns
    -------
    y : (T, B, H) hidden state at every step.
    (h_n, c_n) : each (B, H), the final hidden and cell state.
    """
    x, w_ih, w_hh, b_ih, b_hh, (T, B, I, H) = _check_layer_args(
        x, w_ih, w_hh, b_ih, b_hh, n_gates=4
    )
    h0 = _state("h0", h0, B, H)
    c0 = _state("c0", c0, B, H)
    y, hs, cs, _ = _lstm_forward(x, w_ih, w_hh, b_ih, b_hh, h0, c0)
    return y, (hs[T].copy(), cs[T].copy())


def lstm_grad(x, w_ih, w_hh, b_ih, b_hh, h0, c0, dy, dh_n, dc_n):
    """Gradients of an LSTM layer by backpropagation through time.

    Computes the gradient of
    ``L = sum(dy * y) + sum(dh_n * h_n) + sum(dc_n * c_n)``
    where ``y, (h_n, c_n) = lstm(x, w_ih, w_hh, b_ih, b_hh, h0, c0)``.

    Parameters
    ----------
    x, w_ih, w_hh, b_ih, b_hh, h0, c0 : as for :func:`lstm`.
    dy : (T, B, H) or None (zeros) -- upstream gradient of ``y``.
    dh_n : (B, H) or None (zeros) -- upstream gradient of ``h_n``.
    dc_n : (B, H) or None (zeros) -- upstream gradient of ``c_n``.

    Returns
    -------
    dict with float64 arrays, each shaped like the corresponding input:
    ``x`` (T, B, I), ``w_ih`` (4H, I), ``w_hh`` (4H, H), ``b_ih`` (4H,),
    ``b_hh`` (4H,), ``h0`` (B, H), ``c0`` (B, H).
    """
    x, w_ih, w_hh, b_ih, b_hh, (T, B, I, H) = _check_layer_args(
        x, w_ih, w_hh, b_ih, b_hh, n_gates=4
    )
    h0 = _state("h0", h0, B, H)
    c0 = _state("c0", c0, B, H)
    dy = _upstream("dy", dy, (T, B, H), "(T, B, H)")
    dh_n = _upstream("dh_n", dh_n, (B, H), "(B, H)")
    dc_n = _upstream("dc_n", dc_n, (B, H), "(B, H)")

    _, hs, cs, gates = _lstm_forward(x, w_ih, w_hh, b_ih, b_hh, h0, c0)

    dx = np.empty((T, B, I))
    da_all = np.empty((T, B, 4 * H))  # gate pre-activation grads, every step
    dh_next = dh_n.copy()  # gradient flowing into h_t from later steps
    dc_next = dc_n.copy()  # gradient flowing into c_t from later steps
    for t in reversed(range(T)):
        i, f, g, o = gates[t]
        tanh_c = np.tanh(cs[t + 1])
        dh = dy[t] + dh_next
        dc = dc_next + dh * o * (1.0 - tanh_c**2)

        da = da_all[t]
        da[:, 0 * H:1 * H] = dc * g * i * (1.0 - i)  # input gate
        da[:, 1 * H:2 * H] = dc * cs[t] * f * (1.0 - f)  # forget gate
        da[:, 2 * H:3 * H] = dc * i * (1.0 - g**2)  # cell candidate
        da[:, 3 * H:4 * H] = dh * tanh_c * o * (1.0 - o)  # output gate

        dx[t] = da @ w_ih
        dh_next = da @ w_hh
        dc_next = dc * f

    # Parameter gradients summed over time and batch.
    d_w_ih = _sum_outer(da_all, x)
    d_w_hh = _sum_outer(da_all, hs[:-1])
    d_b = da_all.sum(axis=(0, 1))
    return {
        "x": dx,
        "w_ih": d_w_ih,
        "w_hh": d_w_hh,
        "b_ih": d_b,
        "b_hh": d_b.copy(),
        "h0": dh_next,
        "c0": dc_next,
    }


# ---------------------------------------------------------------------------
# GRU
# ---------------------------------------------------------------------------


def _gru_forward(x, w_ih, w_hh, b_ih, b_hh, h0):
    """GRU forward on validated float64 arrays, keeping what BPTT needs.

    Returns ``y`` (T, B, H), ``hs`` (T+1, B, H) with ``hs[0] = h0``, the
    activated gates ``gates`` (T, 3, B, H) in order r, z, n, and ``hn_proj``
    (T, B, H) = ``W_hn h_{t-1} + b_hn`` (needed for the reset-gate gradient).
    """
    T, B, _ = x.shape
    H = h0.shape[1]
    hs = np.empty((T + 1, B, H))
    gates = np.empty((T, 3, B, H))
    hn_proj = np.empty((T, B, H))
    hs[0] = h0

    x_proj = x @ w_ih.T + b_ih  # (T, B, 3H), input-side pre-activations
    for t in range(T):
        gi = x_proj[t]
        gh = hs[t] @ w_hh.T + b_hh  # (B, 3H), hidden-side pre-activations
        r = _sigmoid(gi[:, 0 * H:1 * H] + gh[:, 0 * H:1 * H])
        z = _sigmoid(gi[:, 1 * H:2 * H] + gh[:, 1 * H:2 * H])
        n = np.tanh(gi[:, 2 * H:3 * H] + r * gh[:, 2 * H:3 * H])
        hs[t + 1] = (1.0 - z) * n + z * hs[t]
        gates[t] = r, z, n
        hn_proj[t] = gh[:, 2 * H:3 * H]
    y = hs[1:].copy()
    return y, hs, gates, hn_proj


def gru(x, w_ih, w_hh, b_ih, b_hh, h0):
    """Single-layer unidirectional GRU forward pass (torch.nn/cuDNN form).

    Parameters
    ----------
    x : (T, B, I) input sequence.
    w_ih : (3H, I) input-hidden weights, gate rows r, z, n.
    w_hh : (3H, H) hidden-hidden weights, gate rows r, z, n.
    b_ih, b_hh : (3H,) biases (pass zeros for a bias-free layer).
    h0 : (B, H) initial hidden state.

    Returns
    -------
    y : (T, B, H) hidden state at every step.
    h_n : (B, H) final hidden state.
    """
    x, w_ih, w_hh, b_ih, b_hh, (T, B, I, H) = _check_layer_args(
        x, w_ih, w_hh, b_ih, b_hh, n_gates=3
    )
    h0 = _state("h0", h0, B, H)
    y, hs, _, _ = _gru_forward(x, w_ih, w_hh, b_ih, b_hh, h0)
    return y, hs[T].copy()


def gru_grad(x, w_ih, w_hh, b_ih, b_hh, h0, dy, dh_n):
    """Gradients of a GRU layer by backpropagation through time.

    Computes the gradient of ``L = sum(dy * y) + sum(dh_n * h_n)`` where
    ``y, h_n = gru(x, w_ih, w_hh, b_ih, b_hh, h0)``.

    Parameters
    ----------
    x, w_ih, w_hh, b_ih, b_hh, h0 : as for :func:`gru`.
    dy : (T, B, H) or None (zeros) -- upstream gradient of ``y``.
    dh_n : (B, H) or None (zeros) -- upstream gradient of ``h_n``.

    Returns
    -------
    dict with float64 arrays, each shaped like the corresponding input:
    ``x`` (T, B, I), ``w_ih`` (3H, I), ``w_hh`` (3H, H), ``b_ih`` (3H,),
    ``b_hh`` (3H,), ``h0`` (B, H).
    """
    x, w_ih, w_hh, b_ih, b_hh, (T, B, I, H) = _check_layer_args(
        x, w_ih, w_hh, b_ih, b_hh, n_gates=3
    )
    h0 = _state("h0", h0, B, H)
    dy = _upstream("dy", dy, (T, B, H), "(T, B, H)")
    dh_n = _upstream("dh_n", dh_n, (B, H), "(B, H)")

    _, hs, gates, hn_proj = _gru_forward(x, w_ih, w_hh, b_ih, b_hh, h0)

    dx = np.empty((T, B, I))
    dgi_all = np.empty((T, B, 3 * H))  # input-side pre-activation grads
    dgh_all = np.empty((T, B, 3 * H))  # hidden-side pre-activation grads
    dh_next = dh_n.copy()  # gradient flowing into h_t from later steps
    for t in reversed(range(T)):
        r, z, n = gates[t]
        h_prev = hs[t]
        dh = dy[t] + dh_next

        da_n = dh * (1.0 - z) * (1.0 - n**2)  # pre-activation of n
        da_z = dh * (h_prev - n) * z * (1.0 - z)
        da_r = da_n * hn_proj[t] * r * (1.0 - r)

        dgi = dgi_all[t]
        dgi[:, 0 * H:1 * H] = da_r
        dgi[:, 1 * H:2 * H] = da_z
        dgi[:, 2 * H:3 * H] = da_n
        dgh = dgh_all[t]
        dgh[:, 0 * H:1 * H] = da_r
        dgh[:, 1 * H:2 * H] = da_z
        dgh[:, 2 * H:3 * H] = da_n * r  # r gates the hidden projection of n

        dx[t] = dgi @ w_ih
        dh_next = dh * z + dgh @ w_hh

    return {
        "x": dx,
        "w_ih": _sum_outer(dgi_all, x),
        "w_hh": _sum_outer(dgh_all, hs[:-1]),
        "b_ih": dgi_all.sum(axis=(0, 1)),
        "b_hh": dgh_all.sum(axis=(0, 1)),
        "h0": dh_next,
    }
