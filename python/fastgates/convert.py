"""Moving between torch.nn and fastgates modules.

``fastgates.from_torch(module)`` turns one ``torch.nn.LSTM`` / ``GRU`` / ``LSTMCell`` /
``GRUCell`` into its fastgates equivalent; ``module.to_torch()`` on a fastgates layer or cell
goes back; ``fastgates.convert(model)`` swaps every such torch.nn module inside a model.

Conversions copy the weights (strict ``load_state_dict``) onto the source's device and dtype,
keep the training mode and each parameter's ``requires_grad``, and draw no random numbers (the
new module is built on the meta device first). Hooks, parametrizations and other state attached
to the source module are not carried over. Only those exact torch.nn classes convert, not
subclasses of them (a subclass may change what ``forward`` does).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch.nn import Module

__all__ = ["convert", "from_torch"]

_DROPOUT_WARNING = "dropout option adds dropout after all but last recurrent layer"


def _source_device_dtype(module: Module) -> tuple[torch.device | None, torch.dtype | None]:
    for p in module.parameters():
        return p.device, p.dtype
    return None, None


def _copy_into(source: Module, build: Callable[..., Module]) -> Module:
    """``build(device=..., dtype=...)`` on the meta device, then materialised on the source's
    device and dtype, with the source's weights, training mode and requires_grad flags."""
    device, dtype = _source_device_dtype(source)
    with warnings.catch_warnings():
        # Already warned when the source module was built.
        warnings.filterwarnings("ignore", message=_DROPOUT_WARNING)
        target = build(device="meta", dtype=dtype)
    target = target.to_empty(device=device if device is not None else "cpu")
    target.load_state_dict(source.state_dict(), strict=True)
    sources = dict(source.named_parameters())
    for name, p in target.named_parameters():
        p.requires_grad_(sources[name].requires_grad)
    target.train(source.training)
    return target


def _convertible() -> dict[type, type]:
    from . import nn as fnn

    return {
        torch.nn.LSTM: fnn.LSTM,
        torch.nn.GRU: fnn.GRU,
        torch.nn.LSTMCell: fnn.LSTMCell,
        torch.nn.GRUCell: fnn.GRUCell,
    }


def from_torch(module: Module) -> Module:
    """The fastgates equivalent of a ``torch.nn.LSTM``, ``GRU``, ``LSTMCell`` or ``GRUCell``:
    same constructor arguments (proj_size too), a copy of its weights, same device, dtype and
    training mode. Raises ``TypeError`` for any other module type (subclasses included)."""
    target_cls = _convertible().get(type(module))
    if target_cls is None:
        raise TypeError(
            "fastgates.from_torch: expected a torch.nn.LSTM, torch.nn.GRU, torch.nn.LSTMCell or "
            f"torch.nn.GRUCell (not a subclass), got {type(module).__module__}."
            f"{type(module).__qualname__}"
        )
    if isinstance(module, torch.nn.RNNBase):
        # fastgates.GRU, like torch.nn.GRU, takes no proj_size argument.
        projection = {"proj_size": module.proj_size} if module.proj_size > 0 else {}

        def build(**factory):
            return target_cls(
                module.input_size, module.hidden_size, num_layers=module.num_layers,
                bias=module.bias, batch_first=module.batch_first, dropout=module.dropout,
                bidirectional=module.bidirectional, **projection, **factory,
            )
    else:
        def build(**factory):
            return target_cls(module.input_size, module.hidden_size, bias=module.bias, **factory)
    return _copy_into(module, build)


def convert(model: Module) -> Module:
    """Swaps every ``torch.nn.LSTM`` / ``GRU`` / ``LSTMCell`` / ``GRUCell`` in ``model``
    (recursively) for its fastgates equivalent (see ``from_torch``), in place, and returns
    ``model``; if ``model`` itself is one of them, returns the new module instead. A module
    shared at several places is converted once."""
    converted: dict[int, Module] = {}
    classes = _convertible()

    def swap(module: Module) -> Module:
        if type(module) not in classes:
            return module
        key = id(module)
        if key in converted:
            return converted[key]
        new = from_torch(module)
        converted[key] = new
        return new

    def walk(parent: Module, seen: set[int]) -> None:
        if id(parent) in seen:
            return
        seen.add(id(parent))
        for name, child in list(parent._modules.items()):
            if child is None:
                continue
            new = swap(child)
            if new is not child:
                parent._modules[name] = new
            else:
                walk(child, seen)

    top = swap(model)
    if top is model:
        walk(model, set())
    return top
