"""torch in eager mode without loading its compiler stack.

Two torch calls the client makes in every process that trains or scores import TorchDynamo (and
with it sympy and TorchInductor's configuration) the first time they run, though nothing here is
ever compiled with ``torch.compile``:

* ``torch.use_deterministic_algorithms`` also sets ``torch._inductor.config.deterministic``;
* the methods of ``torch.optim.Optimizer`` (``add_param_group``, ``zero_grad``, ``state_dict``,
  ``load_state_dict``) are wrapped by ``torch._disable_dynamo``, which imports TorchDynamo on
  their first call to build the ``torch._dynamo.disable`` wrapper it then calls; and every
  ``step`` imports it to mark a graph break for the compiler.

Each costs about 3 s per process on this project's 2-core machine: ``mine train`` spent half its
12 s importing them. :func:`use_deterministic_algorithms`, :func:`eager_optimizers` and
:func:`optimizer_step` do the same work without the import while TorchDynamo is not loaded: code
that TorchDynamo never traces needs neither a "disable" wrapper nor a graph break, so the same
method bodies run, with the same arithmetic. If something in the process has already loaded
TorchDynamo, torch's own paths run unchanged.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable
from typing import Any

import torch
from torch.optim import optimizer as _optim

__all__ = ["eager_optimizers", "optimizer_step", "use_deterministic_algorithms"]

_DYNAMO = "torch._dynamo"
_INDUCTOR_CONFIG = "torch._inductor.config"


def use_deterministic_algorithms(mode: bool, *, warn_only: bool = False) -> None:
    """``torch.use_deterministic_algorithms(mode, warn_only=...)``, without importing TorchInductor's
    configuration when it is not loaded (then no compiled code can read its flag)."""
    if _INDUCTOR_CONFIG in sys.modules:
        torch.use_deterministic_algorithms(mode, warn_only=warn_only)
    else:
        torch._C._set_deterministic_algorithms(mode, warn_only=warn_only)


@functools.cache
def eager_optimizers() -> int:
    """Let ``torch.optim.Optimizer``'s dynamo-disabled methods run without importing TorchDynamo.

    ``torch._disable_dynamo``'s wrapper looks for a cached ``__dynamo_disable`` function on the
    method it wraps and builds one (importing TorchDynamo) only if it is missing; this caches the
    method itself there. Done once per process, only while TorchDynamo is not loaded; returns how
    many methods it set (0 if TorchDynamo was loaded, or torch changed the wrapper).
    """
    if _DYNAMO in sys.modules:
        return 0
    probe = torch._disable_dynamo(lambda: None)
    count = 0
    for method in vars(torch.optim.Optimizer).values():
        wrapped = getattr(method, "__wrapped__", None)
        if getattr(method, "__code__", None) is probe.__code__ and wrapped is not None \
                and getattr(wrapped, "__dynamo_disable", None) is None:
            wrapped.__dynamo_disable = wrapped
            count += 1
    return count


def optimizer_step(optimizer: torch.optim.Optimizer) -> None:
    """``optimizer.step()`` (no closure, no step hooks), without importing TorchDynamo.

    ``step`` is wrapped twice by torch: step hooks and a profiler range around it, then a grad mode
    set from ``defaults["differentiable"]`` and TorchDynamo's graph break. While TorchDynamo is not
    loaded this runs the unwrapped method under ``torch.no_grad()``, which is what those wrappers
    amount to for an optimizer without hooks and not differentiable (the client's).
    """
    if _DYNAMO in sys.modules or optimizer.defaults.get("differentiable") or _has_step_hooks(optimizer):
        optimizer.step()
        return
    with torch.no_grad():
        _unwrapped_step(type(optimizer))(optimizer)


@functools.cache
def _unwrapped_step(cls: type) -> Callable[..., Any]:
    return inspect.unwrap(cls.step)


def _has_step_hooks(optimizer: torch.optim.Optimizer) -> bool:
    return bool(optimizer._optimizer_step_pre_hooks or optimizer._optimizer_step_post_hooks
                or _optim._global_optimizer_pre_hooks or _optim._global_optimizer_post_hooks)
