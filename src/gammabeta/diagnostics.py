"""Per-layer diagnostics for any model: activation statistics and gradient norms per step.

:class:`Diagnostics` attaches a forward hook to each chosen layer; the hook only keeps a
reference to the layer's latest output. :meth:`Diagnostics.record_step` then turns those
outputs into statistics (mean, std, percentiles; optionally of single channels) and adds the
L2 norm of every parameter's current gradient, so calling it after ``backward`` (or after
``optimizer.step``, which leaves ``.grad`` in place) records one row per step. Nothing is
computed on steps that are not recorded.

Example
-------
>>> diag = attach(model)                        # every leaf layer
>>> for step, (xb, yb) in enumerate(loader, 1):
...     ...forward, backward, optimizer.step()...
...     if step % 10 == 0:
...         diag.record_step(step)
>>> diag.save("diagnostics.json"); diag.remove()

The JSON is columnar: ``{"steps": [...], "activations": {layer: {"mean": [...], "std": [...],
"p15": [...], ...}}, "units": {layer: {"0": {"p15": [...], ...}}}, "grad_norms": {param:
[...]}}``, one list entry per recorded step (``None`` where a value was unavailable).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from .errors import ConfigError
from .io import atomic_write_text
from .nn.module import Module

__all__ = ["Diagnostics", "attach", "leaf_layers", "activation_inputs"]


def leaf_layers(model: Module) -> list[str]:
    """Dotted names of every module without children (the layers that compute something)."""
    return [name for name, m in model.named_modules() if name and not any(m.children())]


def activation_inputs(model: Module) -> list[str]:
    """Names of the layers whose outputs feed an activation (the pre-activations).

    Looks at every :class:`~gammabeta.nn.Sequential` in the model: the module just before an
    activation (ReLU, Sigmoid, Tanh, GELU, LeakyReLU) is returned, e.g. a BatchNorm or Linear.
    """
    from . import nn

    acts = (nn.ReLU, nn.Sigmoid, nn.Tanh, nn.GELU, nn.LeakyReLU)
    out = []
    for name, m in model.named_modules():
        if isinstance(m, nn.Sequential):
            kids = list(m._modules.items())
            for (prev, _), (_, cur) in zip(kids, kids[1:], strict=False):
                if isinstance(cur, acts):
                    out.append(f"{name}.{prev}" if name else prev)
    return out


def _stats(a: np.ndarray, percentiles: Sequence[float]) -> dict:
    a = np.asarray(a, dtype=np.float64).ravel()
    if a.size == 0:
        return {}
    finite = a[np.isfinite(a)]
    if finite.size == 0:
        return {"mean": None, "std": None, **{f"p{p:g}": None for p in percentiles},
                "frac_nonfinite": 1.0}
    out = {"mean": float(finite.mean()), "std": float(finite.std())}
    for p, v in zip(percentiles, np.percentile(finite, list(percentiles)), strict=True):
        out[f"p{p:g}"] = float(v)
    out["frac_zero"] = float(np.mean(finite == 0))
    out["frac_nonfinite"] = 1.0 - finite.size / a.size
    return out


class Diagnostics:
    """Record activation statistics and gradient norms of a model's layers, step by step.

    Parameters
    ----------
    model : Module
        Any gammabeta model.
    layers : sequence of str, or callable, optional
        Dotted module names (as in ``model.named_modules()``), or a predicate
        ``(name, module) -> bool``. Default: every leaf layer (:func:`leaf_layers`).
    percentiles : sequence of float
        Percentiles of each layer's output to record (default 15, 50, 85: Ioffe & Szegedy's
        Figure 1).
    units : sequence of int, optional
        Also record the statistics of these channels (axis 1 of the output), each over the
        batch (and positions); e.g. ``units=[0]`` follows one neuron's input distribution.
    grads : bool
        Record the L2 norm of every parameter's gradient at each :meth:`record_step`.

    Notes
    -----
    The hooks see every forward pass, training or evaluation; a record describes the most
    recent one. Call :meth:`remove` (or use the object as a context manager) to detach.
    """

    def __init__(self, model: Module, layers: Sequence[str] | Callable | None = None,
                 percentiles: Iterable[float] = (15, 50, 85), units: Sequence[int] | None = None,
                 grads: bool = True):
        if not isinstance(model, Module):
            raise ConfigError(f"Diagnostics: got a {type(model).__name__}, expected a Module")
        self.model = model
        self.percentiles = tuple(float(p) for p in percentiles)
        if any(not 0 <= p <= 100 for p in self.percentiles):
            raise ConfigError(f"Diagnostics: percentiles {self.percentiles}; expected 0..100")
        self.units = tuple(int(u) for u in (units or ()))
        self.grads = bool(grads)
        mods = dict(model.named_modules())
        if layers is None:
            names = leaf_layers(model)
        elif callable(layers):
            names = [n for n, m in mods.items() if n and layers(n, m)]
        else:
            names = [str(n) for n in layers]
            bad = [n for n in names if n not in mods or not n]
            if bad:
                raise ConfigError(f"Diagnostics: no layer(s) {bad} in the model; valid names: "
                                  f"{[n for n in mods if n]}")
        self.layers = names
        self._latest: dict[str, np.ndarray] = {}
        self._handles = [mods[n].register_forward_hook(self._hook(n)) for n in names]
        self.steps: list[int] = []
        self.activations: dict[str, dict[str, list]] = {n: {} for n in names}
        self.unit_stats: dict[str, dict[str, dict[str, list]]] = {
            n: {str(u): {} for u in self.units} for n in names}
        self.grad_norms: dict[str, list] = {}

    def _hook(self, name: str):
        def hook(module, x, y):
            self._latest[name] = y

        return hook

    @staticmethod
    def _append(table: dict, values: dict, n_before: int) -> None:
        """Append one row of ``values`` to the columns of ``table``, padding with None."""
        for k in [*table, *(k for k in values if k not in table)]:
            table.setdefault(k, [None] * n_before).append(values.get(k))

    def record_step(self, step: int) -> dict:
        """Snapshot the latest outputs of the layers and the current gradient norms.

        Returns the row that was recorded: ``{"step", "activations", "units", "grad_norms"}``.
        """
        n = len(self.steps)
        row: dict = {"step": int(step), "activations": {}, "units": {}, "grad_norms": {}}
        for name in self.layers:
            y = self._latest.get(name)
            st = _stats(y, self.percentiles) if y is not None else {}
            self._append(self.activations[name], st, n)
            row["activations"][name] = st
            for u in self.units:
                us = {}
                if y is not None and np.ndim(y) >= 2 and u < np.shape(y)[1]:
                    us = _stats(np.asarray(y)[:, u], self.percentiles)
                self._append(self.unit_stats[name][str(u)], us, n)
                row["units"].setdefault(name, {})[str(u)] = us
        if self.grads:
            norms = {}
            for pname, p in self.model.named_parameters():
                g = p.grad
                norms[pname] = None if g is None else float(np.linalg.norm(
                    np.asarray(g, dtype=np.float64).ravel()))
            self._append(self.grad_norms, norms, n)
            row["grad_norms"] = norms
        self.steps.append(int(step))
        return row

    def to_dict(self) -> dict:
        """Everything recorded, as JSON-ready columns (see the module docstring)."""
        return {"layers": list(self.layers), "percentiles": list(self.percentiles),
                "units_tracked": list(self.units), "steps": list(self.steps),
                "activations": self.activations, "units": self.unit_stats,
                "grad_norms": self.grad_norms}

    def save(self, path) -> None:
        """Write :meth:`to_dict` as JSON, atomically."""
        atomic_write_text(path, json.dumps(self.to_dict(), allow_nan=False,
                                           default=_none) + "\n")

    def remove(self) -> None:
        """Detach every hook and drop the references to the latest outputs."""
        for h in self._handles:
            h.remove()
        self._handles = []
        self._latest.clear()

    def __enter__(self) -> Diagnostics:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def _none(obj):  # pragma: no cover - json fallback for numpy scalars
    return obj.item() if hasattr(obj, "item") else None


def attach(model: Module, layers: Sequence[str] | Callable | None = None,
           **kwargs) -> Diagnostics:
    """Attach :class:`Diagnostics` to ``model`` (every leaf layer unless ``layers`` is given).

    This is what ``gammabeta train --diagnostics`` uses: call ``record_step(step)`` from the
    training loop's ``on_step`` callback (after the optimizer step, gradients are still set)
    and ``save(path)`` at the end.
    """
    return Diagnostics(model, layers=layers, **kwargs)
