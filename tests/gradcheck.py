"""Central finite differences in float64, and a module-level gradient check."""

from __future__ import annotations

import numpy as np


def numeric_grad(f, x, eps=1e-6):
    """d f(x) / d x by central differences; ``f`` returns a scalar, ``x`` is changed in place."""
    g = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + eps
        fp = f()
        x[i] = old - eps
        fm = f()
        x[i] = old
        g[i] = (fp - fm) / (2 * eps)
    return g


def max_rel_err(a, b):
    """max |a − b| / max(1, max |b|)."""
    return float(np.max(np.abs(a - b)) / max(1.0, float(np.max(np.abs(b)))))


def check_module_grads(module, x, rng=None, tol=1e-6, eps=1e-6):
    """Compare backward's dx and every parameter gradient with central differences (float64).

    The scalar is L = Σ forward(x) ⊙ R for a fixed random R. Returns the largest error seen.
    """
    module.double()
    x = np.array(x, dtype=np.float64)
    rngs = [m.rng for m in module.modules() if isinstance(getattr(m, "rng", None),
                                                          np.random.Generator)]
    states = [g.bit_generator.state for g in rngs]
    y = module(x)
    r = np.random.default_rng(12345).standard_normal(y.shape)

    def loss():
        # re-seed stochastic layers (Dropout) identically for every evaluation
        for g, st in zip(rngs, states, strict=True):
            g.bit_generator.state = st
        return float(np.sum(module(x) * r))

    loss()
    module.zero_grad()
    dx = module.backward(r)
    worst = 0.0
    num_dx = numeric_grad(loss, x, eps)
    err = max_rel_err(dx, num_dx)
    assert err <= tol, f"dx mismatch: {err:.3g}"
    worst = max(worst, err)
    for name, p in module.named_parameters():
        num = numeric_grad(loss, p.data, eps)
        got = p.grad if p.grad is not None else np.zeros_like(p.data)
        err = max_rel_err(got, num)
        assert err <= tol, f"{name} grad mismatch: {err:.3g}"
        worst = max(worst, err)
    return worst
