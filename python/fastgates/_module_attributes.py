"""Fast reads of a module's parameters by name, for the per-call paths of the layers."""

from __future__ import annotations

from torch.nn import Module


def module_attribute(module: Module, name: str):
    """``getattr(module, name)``, from the module's registered parameters when the name is one
    of them: a dict lookup (about 0.1 µs) where ``Module.__getattr__``, reached only after the
    instance and class lookups fail, takes about 0.7 µs; a one-step layer call reads each
    weight twice. Other names (a parametrized weight, which is a property, or an attribute
    set by a hook) go through getattr as before."""
    value = module._parameters.get(name)
    return value if value is not None else getattr(module, name)
