"""Learning-rate schedules with PyTorch's names, arguments and values.

A scheduler is built on an optimizer and stepped once per epoch (or per batch for
:class:`OneCycleLR`), *after* ``optimizer.step()``. Construction already takes step 0 and
sets ``group["lr"]``. Every schedule here is computed in closed form from the step count
and each group's ``initial_lr`` (stored in the group on construction, as PyTorch does), so
``state_dict()`` / ``load_state_dict()`` resume exactly and the values match PyTorch's
recursive formulas to rounding (~1e-15 relative). A consequence: changing ``group["lr"]`` by
hand is overwritten at the next ``step()``; change ``group["initial_lr"]`` instead.
"""

from __future__ import annotations

import copy
import math
from numbers import Integral, Real

from ..errors import ConfigError, StateDictError
from .optimizers import Optimizer

__all__ = ["LRScheduler", "StepLR", "CosineAnnealingLR", "LinearWarmup", "OneCycleLR"]


def _positive_int(owner: str, key: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value <= 0:
        raise ConfigError(f"{owner}: invalid {key}={value!r}; expected a positive integer")
    return int(value)


def _real(owner: str, key: str, value, ok=lambda v: True, expected="a number") -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not ok(value):
        raise ConfigError(f"{owner}: invalid {key}={value!r}; expected {expected}")
    return float(value)


class LRScheduler:
    """Base class: ``step()``, ``get_last_lr()``, ``state_dict()``, ``load_state_dict()``.

    Subclasses implement :meth:`get_lr`, the learning rates at step ``self.last_epoch``.

    Parameters
    ----------
    optimizer : Optimizer
    last_epoch : int, default -1
        ``-1`` starts a new schedule (and stores ``initial_lr`` in every group); a
        non-negative value resumes one, which needs ``initial_lr`` in the groups already.
    """

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1):
        owner = type(self).__name__
        if not isinstance(optimizer, Optimizer):
            raise ConfigError(f"{owner}: expected a gammabeta Optimizer, got "
                              f"{type(optimizer).__name__}")
        self.optimizer = optimizer
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            for i, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise ConfigError(
                        f"{owner}: last_epoch={last_epoch} resumes a schedule, but "
                        f"param_groups[{i}] has no 'initial_lr'; load the optimizer state first"
                    )
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = int(last_epoch)
        self._step_count = 0
        self._last_lr: list[float] = []
        self.step()

    def get_lr(self) -> list[float]:  # pragma: no cover - abstract
        """Learning rates of every group at step ``self.last_epoch``."""
        raise NotImplementedError

    def _check_step(self, epoch: int) -> None:
        """Refuse to move to ``epoch`` (before any state changes); a no-op by default."""

    def step(self) -> None:
        """Advance one step and write the new learning rate into every group."""
        self._check_step(self.last_epoch + 1)
        self._step_count += 1
        self.last_epoch += 1
        for group, lr in zip(self.optimizer.param_groups, self.get_lr(), strict=True):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def get_last_lr(self) -> list[float]:
        """The learning rates set by the last :meth:`step` (one per group)."""
        return list(self._last_lr)

    def state_dict(self) -> dict:
        """Everything but the optimizer: counters, base rates and the options (plain values)."""
        return {k: copy.deepcopy(v) for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore :meth:`state_dict`'s output (load the optimizer's own state separately)."""
        if not isinstance(state_dict, dict) or "last_epoch" not in state_dict:
            raise StateDictError(f"{type(self).__name__}.load_state_dict: expected a dict "
                                 "from state_dict() with a 'last_epoch' entry")
        self.__dict__.update(copy.deepcopy(state_dict))


class StepLR(LRScheduler):
    """Multiply the learning rate by ``gamma`` every ``step_size`` steps.

    ``lr_t = initial_lr * gamma ** (t // step_size)``
    """

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1,
                 last_epoch: int = -1):
        self.step_size = _positive_int("StepLR", "step_size", step_size)
        self.gamma = _real("StepLR", "gamma", gamma, lambda v: v >= 0, "a number >= 0")
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        k = self.last_epoch // self.step_size
        return [base * self.gamma**k for base in self.base_lrs]


class CosineAnnealingLR(LRScheduler):
    """Cosine annealing from ``initial_lr`` to ``eta_min`` over ``T_max`` steps (no restarts).

    ``lr_t = eta_min + (initial_lr - eta_min) * (1 + cos(pi * t / T_max)) / 2``

    Loshchilov & Hutter (2017), SGDR. Past ``T_max`` the cosine continues (the rate rises
    again), as in PyTorch.
    """

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0,
                 last_epoch: int = -1):
        self.T_max = _positive_int("CosineAnnealingLR", "T_max", T_max)
        self.eta_min = _real("CosineAnnealingLR", "eta_min", eta_min, lambda v: v >= 0,
                             "a number >= 0")
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        c = (1 + math.cos(math.pi * self.last_epoch / self.T_max)) / 2
        return [self.eta_min + (base - self.eta_min) * c for base in self.base_lrs]


class LinearWarmup(LRScheduler):
    """Linear warmup from ``start_factor * initial_lr`` to ``initial_lr``, then constant.

    ``lr_t = initial_lr * (start_factor + (1 - start_factor) * min(t, warmup_steps) /
    warmup_steps)``

    This equals ``torch.optim.lr_scheduler.LinearLR(optimizer, start_factor,
    end_factor=1.0, total_iters=warmup_steps)``. Goyal et al. (2017) use such a warmup for
    large-batch SGD. ``start_factor=0`` is allowed (the first step then has lr 0), and
    ``warmup_steps=0`` means no warmup.
    """

    def __init__(self, optimizer: Optimizer, warmup_steps: int, start_factor: float = 1.0 / 3,
                 last_epoch: int = -1):
        if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, Integral) \
                or warmup_steps < 0:
            raise ConfigError(f"LinearWarmup: invalid warmup_steps={warmup_steps!r}; "
                              "expected an integer >= 0")
        self.warmup_steps = int(warmup_steps)
        self.start_factor = _real("LinearWarmup", "start_factor", start_factor,
                                  lambda v: 0 <= v <= 1, "a number in [0, 1]")
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        if self.warmup_steps == 0:
            return list(self.base_lrs)
        frac = min(self.last_epoch, self.warmup_steps) / self.warmup_steps
        f = self.start_factor + (1.0 - self.start_factor) * frac
        return [base * f for base in self.base_lrs]


def _per_group(owner: str, key: str, value, n: int) -> list[float]:
    values = list(value) if isinstance(value, (list, tuple)) else [value] * n
    if len(values) != n:
        raise ConfigError(f"{owner}: {key} has {len(values)} values, expected one per "
                          f"parameter group ({n})")
    return [_real(owner, key, v) for v in values]


class OneCycleLR(LRScheduler):
    """The 1cycle policy (Smith & Topin, 2017), step for step as PyTorch's ``OneCycleLR``.

    Step once per *batch*. With ``initial_lr = max_lr / div_factor`` and ``min_lr =
    initial_lr / final_div_factor``, the rate anneals ``initial_lr -> max_lr`` until step
    ``pct_start * total_steps - 1``, then ``max_lr -> min_lr`` until ``total_steps - 1``
    (``three_phase=True``: ``max_lr -> initial_lr`` until ``2 * pct_start * total_steps -
    2``, then ``initial_lr -> min_lr``). Within a phase from step ``s0`` to ``s1``,
    ``pct = (t - s0) / (s1 - s0)`` and

    - ``anneal_strategy="cos"``: ``end + (start - end) / 2 * (1 + cos(pi * pct))``
    - ``anneal_strategy="linear"``: ``start + (end - start) * pct``

    With ``cycle_momentum`` the momentum (SGD's ``momentum``, or ``betas[0]`` for Adam and
    AdamW) moves the opposite way, ``max_momentum -> base_momentum -> max_momentum``.
    Stepping past ``total_steps`` raises :class:`ConfigError`.
    """

    def __init__(self, optimizer: Optimizer, max_lr, total_steps: int | None = None,
                 epochs: int | None = None, steps_per_epoch: int | None = None,
                 pct_start: float = 0.3, anneal_strategy: str = "cos",
                 cycle_momentum: bool = True, base_momentum=0.85, max_momentum=0.95,
                 div_factor: float = 25.0, final_div_factor: float = 1e4,
                 three_phase: bool = False, last_epoch: int = -1):
        own = "OneCycleLR"
        if not isinstance(optimizer, Optimizer):
            raise ConfigError(f"{own}: expected a gammabeta Optimizer, got "
                              f"{type(optimizer).__name__}")
        if total_steps is not None:
            self.total_steps = _positive_int(own, "total_steps", total_steps)
        elif epochs is not None and steps_per_epoch is not None:
            self.total_steps = (_positive_int(own, "epochs", epochs)
                                * _positive_int(own, "steps_per_epoch", steps_per_epoch))
        else:
            raise ConfigError(f"{own}: you must define either total_steps OR (epochs AND "
                              f"steps_per_epoch); got total_steps={total_steps}, "
                              f"epochs={epochs}, steps_per_epoch={steps_per_epoch}")
        pct = _real(own, "pct_start", pct_start, lambda v: 0 <= v <= 1, "a number in [0, 1]")
        if anneal_strategy not in ("cos", "linear"):
            raise ConfigError(f"{own}: anneal_strategy must be 'cos' or 'linear', got "
                              f"{anneal_strategy!r}")
        self.anneal_strategy = anneal_strategy
        div = _real(own, "div_factor", div_factor, lambda v: v > 0, "a number > 0")
        fdiv = _real(own, "final_div_factor", final_div_factor, lambda v: v > 0,
                     "a number > 0")
        n = self.total_steps
        if three_phase:
            self._phases = [
                (float(pct * n) - 1, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
                (float(2 * pct * n) - 2, "max_lr", "initial_lr", "base_momentum",
                 "max_momentum"),
                (n - 1, "initial_lr", "min_lr", "max_momentum", "max_momentum"),
            ]
        else:
            self._phases = [
                (float(pct * n) - 1, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
                (n - 1, "max_lr", "min_lr", "base_momentum", "max_momentum"),
            ]
        groups = optimizer.param_groups
        max_lrs = _per_group(own, "max_lr", max_lr, len(groups))
        if last_epoch == -1:
            for group, m in zip(groups, max_lrs, strict=True):
                group["initial_lr"] = m / div
                group["max_lr"] = m
                group["min_lr"] = group["initial_lr"] / fdiv
        self.cycle_momentum = bool(cycle_momentum)
        if self.cycle_momentum:
            if "momentum" not in optimizer.defaults and "betas" not in optimizer.defaults:
                raise ConfigError(f"{own}: {type(optimizer).__name__} has neither 'momentum' "
                                  "nor 'betas'; use cycle_momentum=False")
            self.use_beta1 = "betas" in optimizer.defaults
            maxm = _per_group(own, "max_momentum", max_momentum, len(groups))
            basem = _per_group(own, "base_momentum", base_momentum, len(groups))
            if last_epoch == -1:
                for group, mx, bs in zip(groups, maxm, basem, strict=True):
                    self._set_momentum(group, mx)
                    group["max_momentum"] = mx
                    group["base_momentum"] = bs
        super().__init__(optimizer, last_epoch)

    def _set_momentum(self, group: dict, value: float) -> None:
        if self.use_beta1:
            group["betas"] = (value, *group["betas"][1:])
        else:
            group["momentum"] = value

    def _anneal(self, start: float, end: float, pct: float) -> float:
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def _check_step(self, epoch: int) -> None:
        if epoch > self.total_steps:
            raise ConfigError(f"OneCycleLR: tried to step {epoch} times; the specified number "
                              f"of total steps is {self.total_steps}")

    def get_lr(self):
        t, lrs = self.last_epoch, []
        for group in self.optimizer.param_groups:
            start = 0.0
            for i, (end, lr0, lr1, m0, m1) in enumerate(self._phases):
                if t <= end or i == len(self._phases) - 1:
                    # a zero-length phase (torch divides by zero) counts as finished
                    pct = (t - start) / (end - start) if end != start else 1.0
                    lrs.append(self._anneal(group[lr0], group[lr1], pct))
                    if self.cycle_momentum:
                        self._set_momentum(group, self._anneal(group[m0], group[m1], pct))
                    break
                start = end
        return lrs
