"""How much memory a model will take, estimated before anything is allocated.

A mistyped width (``--hidden 100000000``) or channel count must be refused at once with the
size it asks for, not after a minute of swapping and a raw ``MemoryError``. The estimate is
an upper-bound count of parameters (every weight, in float32) and of the activations one
training step keeps, from the builder's options alone; training needs each parameter about
four times (value, gradient, two Adam moments).
"""

from __future__ import annotations

import math

from ..data.limits import available_memory
from ..errors import ConfigError

__all__ = ["estimate_bytes", "check_fits"]

_BYTES = 4            # float32
_PER_PARAM = 4        # value, gradient, Adam's two moments
_PER_ACTIVATION = 6   # output of Linear/Conv, BN, activation, dropout mask, and their gradients


def _widths(hidden) -> list[int]:
    pieces = hidden.split(",") if isinstance(hidden, str) else list(hidden or (256, 256))
    return [int(p) for p in pieces]


def estimate_bytes(model: str, input_shape, num_classes: int, batch_size: int,
                   options: dict) -> tuple[int, int]:
    """``(parameters, bytes)``: an upper bound on a training step's memory for ``model``."""
    d_in = math.prod(input_shape)
    if model in ("mlp", "resmlp"):
        widths = _widths(options.get("hidden"))
        sizes = [d_in, *widths, num_classes]
        params = sum(a * b + 3 * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
        acts = sum(widths) + num_classes
    else:
        channels = int(options.get("channels", 32))
        depth = int(options.get("layers", 8)) + 2 * int(options.get("stages", 3)) * \
            int(options.get("blocks", 1)) + 3
        scale = 2 ** max(int(options.get("stages", 3)) - 1, 0) if model == "resnet" else 1
        widest = channels * scale
        spatial = math.prod(input_shape[1:]) if len(input_shape) > 1 else d_in
        params = depth * 9 * widest * widest + widest * spatial * num_classes
        acts = depth * widest * spatial
    total = _BYTES * (_PER_PARAM * params + _PER_ACTIVATION * batch_size * acts)
    return int(params), int(total)


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def check_fits(model: str, input_shape, num_classes: int, batch_size: int,
               options: dict) -> None:
    """Raise :class:`ConfigError` when the estimate exceeds the memory available now."""
    params, need = estimate_bytes(model, input_shape, num_classes, batch_size, options)
    have = available_memory()
    if have is not None and need > have:
        raise ConfigError(
            f"model {model!r} with input {tuple(input_shape)}, {num_classes} classes and "
            f"batch size {batch_size} needs about {_gib(need)} ({params:,} parameters); "
            f"{_gib(have)} is available: use smaller --hidden/--channels/--batch-size")
