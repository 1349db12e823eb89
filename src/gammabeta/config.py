"""One typed source for every training option: :class:`TrainConfig` and its :class:`Option`\\ s.

Each field of :class:`TrainConfig` carries an :class:`Option` (its type, allowed range or
choices, and help text). Everything else is derived from it, so nothing can drift:

- the ``gammabeta train`` flags (:func:`add_train_arguments`: ``--batch-size`` from
  ``batch_size``, its help, its check);
- a study's ``[base]`` and ``[axes]`` values and ``train --config FILE.toml`` (the same keys,
  checked by :func:`check_option`);
- ``--resume``, which compares the options given with the ones stored in the run.

:meth:`TrainConfig.validate` checks every field before any data is loaded or any file is
written and names each problem: the option, the value it got and what is allowed.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError
from .recipes import recipe

__all__ = ["Option", "TrainConfig", "recipe", "MODEL_FLAGS", "check_option", "describe", "MODELS",
           "ACTIVATIONS", "LIMITS"]

MODELS = ("cnn", "mlp", "papercnn", "resmlp", "resnet")  # == sorted(models.BUILDERS), tested
ACTIVATIONS = ("relu", "leaky_relu", "tanh", "sigmoid", "gelu")
# --norm's values (models/norms.py builds each) and GroupNorm's default number of groups
NORMS = ("batch", "layer", "group", "instance", "renorm", "ghost", "none")
DEFAULT_GROUPS = 8
# Upper bounds that keep a typo (an extra zero or three) from asking for the machine's memory.
LIMITS = {"width": 65_536, "depth": 64, "channels": 4_096, "batch_size": 1_000_000,
          "epochs": 100_000, "seed": 2**63 - 1}


@dataclass(frozen=True)
class Option:
    """What one option accepts.

    ``kind`` is ``"int"``, ``"float"``, ``"str"``, ``"bool"``, ``"init"`` (an initializer:
    a name, ``name(k=v)`` or a number), ``"hidden"`` (layer widths: ``"256,256"`` or a list)
    or ``"dict"``. ``lo``/``hi`` bound numbers (``lo_open``: strictly above ``lo``);
    ``optional``: ``None`` is allowed (it means "the model's recipe" for training options).
    """

    kind: str
    help: str
    choices: tuple = ()
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    optional: bool = False
    cli: bool = True
    metavar: str | None = None
    unset: str = "the model's recipe"


def _opt(default, kind, help, **kw) -> Any:
    return field(default=default, metadata={"option": Option(kind, help, **kw)})


def _fmt(x) -> str:
    return f"{x:,}" if isinstance(x, int) else f"{x:g}"


def _interval(o: Option) -> str:
    if o.lo is not None and o.hi is not None:
        return (f"in {'(' if o.lo_open else '['}{_fmt(o.lo)}, {_fmt(o.hi)}"
                f"{')' if o.hi_open else ']'}")
    if o.lo is not None:
        return f"{'>' if o.lo_open else '>='} {_fmt(o.lo)}"
    if o.hi is not None:
        return f"{'<' if o.hi_open else '<='} {_fmt(o.hi)}"
    return ""


def describe(o: Option) -> str:
    """What the option expects, in words: ``"a whole number >= 1"``."""
    what = {"int": "a whole number", "float": "a finite number", "str": "text",
            "bool": "true or false", "dict": "a table of model options",
            "fractions": "a list of distinct fractions, each in [0, 1)",
            "init": "an initializer: a name (ones, zeros, kaiming_normal, ...), "
                    "'name(key=value, ...)' or a number",
            "hidden": f"comma-separated layer widths, each from 1 to {LIMITS['width']:,} "
                      f"(at most {LIMITS['depth']} layers), e.g. 256,256"}[o.kind]
    if o.choices:
        what = "one of " + ", ".join(map(str, o.choices))
    rng = _interval(o)
    if rng:
        what += " " + rng
    return what + (f" (or unset: {o.unset})" if o.optional else "")


def _number(name: str, value, o: Option):
    """``value`` as an int/float within ``o``'s bounds; strings are parsed (CLI, TOML)."""
    want = describe(o)
    v = value
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ConfigError(f"{name}={value!r}; expected {want}")
    if o.kind == "int":
        if isinstance(v, float):
            if not (math.isfinite(v) and v == int(v)):
                raise ConfigError(f"{name}={value!r}; expected {want}")
            v = int(v)
    else:
        v = float(v)
        if not math.isfinite(v):
            raise ConfigError(f"{name}={value!r}; expected {want}")
    if o.lo is not None and (v < o.lo or (o.lo_open and v == o.lo)):
        raise ConfigError(f"{name}={value!r}; expected {want}")
    if o.hi is not None and (v > o.hi or (o.hi_open and v == o.hi)):
        raise ConfigError(f"{name}={value!r}; expected {want}")
    return v


def parse_text(name: str, text: str, o: Option):
    """A command-line string as the option's type (then checked by :func:`check_option`)."""
    if o.kind in ("int", "float"):
        try:
            value = int(text.strip()) if o.kind == "int" else float(text.strip())
        except ValueError:
            raise ConfigError(f"{name}={text!r}; expected {describe(o)}") from None
        return check_option(name, value, o, name)
    if o.kind == "hidden":  # stored as "8,8" whatever was typed (" 8", "+8")
        return parse_hidden(name, text)
    return check_option(name, text, o, name)


def parse_hidden(name: str, value) -> str:
    """Layer widths as ``"256,256"``; refuses empty pieces, zeros and absurd sizes."""
    o = Option("hidden", "")
    pieces = value.split(",") if isinstance(value, str) else value
    if not isinstance(pieces, list | tuple) or not pieces or len(pieces) > LIMITS["depth"]:
        raise ConfigError(f"{name}={value!r}; expected {describe(o)}")
    widths = []
    for p in pieces:
        try:
            w = _number(name, int(p) if isinstance(p, str) else p,
                        Option("int", "", lo=1, hi=LIMITS["width"]))
        except (ConfigError, ValueError):
            raise ConfigError(f"{name}={value!r}: {p!r} is not a width; expected "
                              f"{describe(o)}") from None
        widths.append(w)
    return ",".join(map(str, widths))


def _check_init(name: str, value, shape=(4, 4)):
    from . import init

    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ConfigError(f"{name}={value!r}; expected {describe(Option('init', ''))}")
    if isinstance(value, int | float) and not math.isfinite(value):
        raise ConfigError(f"{name}={value!r}; expected a finite number or an initializer name")
    import numpy as np

    try:  # draw once on a small shape: wrong argument types and ranges show up here
        init.initialize(value, shape, np.random.default_rng(0), what=name)
    except ConfigError as e:
        raise ConfigError(f"{name}={value!r}: {e}") from None
    except (TypeError, ValueError, ArithmeticError) as e:
        raise ConfigError(f"{name}={value!r}: the initializer refused its arguments ({e})") \
            from None
    return value


def check_option(name: str, value, o: Option, label: str | None = None):
    """Check one value against its option; return it normalized (e.g. ``"4"`` -> 4).

    ``label`` names the option in the message (``--batch-size``, ``base.batch_size``).
    """
    label = label or name
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        value = value.item()  # numpy scalars behave as Python numbers
    if isinstance(value, os.PathLike) and o.kind == "str":
        value = os.fspath(value)
    if value is None:
        if o.optional:
            return None
        raise ConfigError(f"{label} is not set; expected {describe(o)}")
    if o.kind in ("int", "float"):
        return _number(label, value, o)
    if o.kind == "bool":
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{label}={value!r}; expected true or false")
    if o.kind == "hidden":
        parse_hidden(label, value)
        return value
    if o.kind == "init":  # weights are matrices; biases, γ and β vectors
        matrix = name.lstrip("-").replace("-", "_") == "weight_init"
        return _check_init(label, value, (4, 4) if matrix else (4,))
    if o.kind == "fractions":
        ok = isinstance(value, list) and len(set(map(repr, value))) == len(value) and all(
            not isinstance(v, bool) and isinstance(v, int | float) and math.isfinite(v)
            and 0 <= v < 1 for v in value)
        if not ok:
            raise ConfigError(f"{label}={value!r}; expected {describe(o)}")
        return list(value)
    if o.kind == "dict":
        if not isinstance(value, dict):
            raise ConfigError(f"{label}={value!r}; expected {describe(o)}")
        return dict(value)
    if not isinstance(value, str):
        raise ConfigError(f"{label}={value!r}; expected {describe(o)}")
    if o.choices and value not in o.choices:
        raise ConfigError(f"{label}={value!r}; expected {describe(o)}")
    if not o.choices and not value.strip():
        raise ConfigError(f"{label} is empty; expected {describe(o)}")
    return value


@dataclass
class TrainConfig:
    """Every option of a run; ``None`` means "the model's recipe" (see ``experiment.recipe``).

    Each field's :class:`Option` (``dataclasses.fields(TrainConfig)[i].metadata["option"]``)
    is the one definition of its type, range and help, shared by the CLI and the studies.
    """

    data: str = _opt("mnist1d", "str", "mnist1d, digits, mnist, fashion, or a .npz/.csv file")
    data_dir: str | None = _opt(None, "str", "folder with the MNIST/Fashion IDX files",
                                optional=True, metavar="DIR", unset="none")
    download: bool = _opt(False, "bool", "download MNIST/Fashion into the cache (MD5-checked)")
    model: str = _opt("mlp", "str", "the network", choices=MODELS)
    hidden: str | None = _opt(None, "hidden", "hidden widths (mlp, resmlp), e.g. 256,256",
                              optional=True)
    norm: str = _opt("batch", "str", "normalization after each Linear/Conv: batch, layer, "
                     "group (GroupNorm), instance, renorm (Batch Renormalization), ghost "
                     "(Ghost BatchNorm) or none", choices=NORMS)
    groups: int | None = _opt(None, "int", "GroupNorm's groups (--norm group); they must divide "
                              "every layer's width", lo=1, hi=LIMITS["channels"], optional=True,
                              unset=f"{DEFAULT_GROUPS}, or the largest divisor of the width "
                                    "below it")
    virtual_batch_size: int | None = _opt(None, "int", "samples per ghost batch (--norm ghost): "
                                          "statistics per chunk of the batch", lo=2,
                                          hi=LIMITS["batch_size"], optional=True,
                                          unset="a quarter of --batch-size, at least 2")
    renorm_r_max: float | None = _opt(None, "float", "Batch Renorm's final r_max (--norm "
                                      "renorm): r = σ_B/σ is clipped to [1/r_max, r_max]",
                                      lo=1, hi=1e6, optional=True, unset="the layer's default")
    renorm_d_max: float | None = _opt(None, "float", "Batch Renorm's final d_max: d = (μ_B − μ)/σ "
                                      "is clipped to [−d_max, d_max]", lo=0, hi=1e6,
                                      optional=True, unset="the layer's default")
    renorm_warmup_steps: int | None = _opt(None, "int", "Batch Renorm: training steps with "
                                           "r_max = 1, d_max = 0 (plain BatchNorm) before the "
                                           "limits open", lo=0, hi=10**9, optional=True,
                                           unset="the layer's default")
    renorm_ramp_steps: int | None = _opt(None, "int", "Batch Renorm: steps over which r_max, "
                                         "d_max then grow linearly to their final values", lo=0,
                                         hi=10**9, optional=True, unset="the layer's default")
    act: str = _opt("relu", "str", "activation", choices=ACTIVATIONS)
    dropout: float | None = _opt(None, "float", "dropout probability", lo=0, hi=1,
                                 hi_open=True, optional=True)
    weight_init: str = _opt("torch_default", "init", "any gammabeta.init name, e.g. "
                            "kaiming_normal, xavier_uniform")
    bias_init: str = _opt("torch_default", "init", "bias init, as --weight-init")
    gamma_init: str = _opt("ones", "init", "γ init: ones, zeros, uniform, slimming (0.5), "
                           "dcgan, a number, or 'normal(mean=1, std=0.1)'")
    beta_init: str = _opt("zeros", "init", "β init, as --gamma-init")
    gamma_lr_scale: float = _opt(1.0, "float", "multiply the learning rate of every "
                                 "normalization layer's γ by this (Davis & Frank 2022: 0.01, "
                                 "with --gamma-init 0.1)", lo=0, lo_open=True, hi=1e3)
    optimizer: str = _opt("adamw", "str", "optimizer", choices=("adamw", "adam", "sgd"))
    lr: float | None = _opt(None, "float", "(peak) learning rate", lo=0, lo_open=True,
                            optional=True)
    momentum: float = _opt(0.9, "float", "SGD momentum", lo=0, hi=1, hi_open=True)
    weight_decay: float = _opt(0.05, "float", "on weights only: biases, γ and β are never "
                               "decayed", lo=0)
    schedule: str = _opt("onecycle", "str", "learning-rate schedule",
                         choices=("onecycle", "cosine", "step", "constant"))
    label_smoothing: float = _opt(0.0, "float", "label smoothing", lo=0, hi=1)
    batch_size: int = _opt(100, "int", "samples per step", lo=1, hi=LIMITS["batch_size"])
    epochs: int | None = _opt(None, "int", "passes over the training set", lo=1,
                              hi=LIMITS["epochs"], optional=True)
    seed: int = _opt(0, "int", "seed of every random draw (init, order, dropout, splits)",
                     lo=0, hi=LIMITS["seed"])
    val_fraction: float = _opt(0.1, "float", "fraction of each class of the training data held "
                               "out for validation: the per-epoch val_* figures (test "
                               "accuracy is measured once, at the end); 0: none (a study's "
                               "runs use 0 unless its [base] sets it)", lo=0, hi=0.5)
    on_nonfinite: str = _opt("raise", "str", "at a NaN/inf loss, activation, statistic or "
                             "gradient: stop (naming the step and layer) or skip that step",
                             choices=("raise", "skip-step"))
    sync_bn: bool = _opt(True, "bool", "under mpiexec: BatchNorm statistics over the whole "
                         "global batch (SyncBatchNorm); --no-sync-bn keeps each worker's own")
    clip_grad_norm: float | None = _opt(None, "float", "clip the global gradient norm to this "
                                        "value", lo=0, lo_open=True, optional=True,
                                        unset="no clipping")
    model_options: dict = field(default_factory=dict, metadata={"option": Option(
        "dict", "builder options, e.g. {channels = 32, layers = 8}", cli=False)})

    # ----- the single source -----------------------------------------------------------------
    @classmethod
    def options(cls) -> dict[str, Option]:
        """``{field name: Option}`` in declaration order."""
        return {f.name: f.metadata["option"] for f in dataclasses.fields(cls)}

    @classmethod
    def check(cls, key: str, value, label: str | None = None):
        """Check one option by name (unknown names list the valid ones)."""
        opts = cls.options()
        if key not in opts:
            raise ConfigError(f"unknown training option {key!r}; valid: {', '.join(opts)}")
        return check_option(key, value, opts[key], label)

    def validate(self, label=lambda name: name) -> TrainConfig:
        """Check every field (and the model options against the model); return a normalized
        copy or raise :class:`ConfigError` naming every problem, one after the other."""
        problems, values = [], {}
        for name, o in self.options().items():
            try:
                values[name] = check_option(name, getattr(self, name), o, label(name))
            except ConfigError as e:
                problems.append(str(e))
        if not problems:
            try:
                values["model_options"] = check_model_options(values["model"],
                                                              values["model_options"], label)
            except ConfigError as e:
                problems.append(str(e))
            problems += ignored_options(values, label)
        if problems:
            raise ConfigError("; ".join(problems))
        return dataclasses.replace(self, **values)

    def resolved(self, input_rank: int = 1) -> TrainConfig:
        """A copy with every ``None`` filled from the model's recipe (model options merged)."""
        rec = recipe(self.model, input_rank)
        opts = {**rec.pop("model_options", {}), **self.model_options}
        updates = {k: v for k, v in rec.items() if getattr(self, k, None) is None}
        return dataclasses.replace(self, **updates, model_options=opts)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """Build from a dict, refusing unknown keys (a typo must not be silently ignored)."""
        if not isinstance(d, dict):
            raise ConfigError(f"a training config must be a table of options, got "
                              f"{type(d).__name__}")
        names = list(cls.options())
        bad = sorted(set(d) - set(names))
        if bad:
            raise ConfigError(f"unknown training option(s) {bad}; valid: {', '.join(names)}")
        return cls(**d)

    def model_kwargs(self) -> dict:
        """Options passed to the model builder."""
        kw = dict(hidden=self.hidden, norm=self.norm, act=self.act, dropout=self.dropout,
                  weight_init=self.weight_init, bias_init=self.bias_init,
                  gamma_init=self.gamma_init, beta_init=self.beta_init)
        kw = {k: v for k, v in kw.items() if v is not None}
        norm_options = self.norm_options()
        if norm_options:
            kw["norm_options"] = norm_options
        return {**kw, **self.model_options}

    def norm_options(self) -> dict:
        """The options of the chosen normalization layer (``norm_options`` of the builders)."""
        if self.norm == "group" and self.groups is not None:
            return {"groups": self.groups}
        if self.norm == "ghost":
            vbs = self.virtual_batch_size
            return {"virtual_batch_size": max(2, self.batch_size // 4) if vbs is None else vbs}
        if self.norm == "renorm":
            return {k: getattr(self, "renorm_" + k) for k in ("r_max", "d_max", "warmup_steps",
                                                               "ramp_steps")
                    if getattr(self, "renorm_" + k) is not None}
        return {}


# Builder options with a flag of their own (``--channels 32`` -> model_options["channels"]).
MODEL_FLAGS = {
    "channels": Option("int", "conv channels (cnn, papercnn, resnet)", lo=1,
                       hi=LIMITS["channels"]),
    "layers": Option("int", "conv layers (cnn)", lo=1, hi=LIMITS["depth"]),
    "zero_init_residual": Option("bool", "resnet: γ = 0 in the last BN of every residual "
                                 "block"),
}
_TRAIN_KEYS = ("hidden", "norm", "act", "dropout", "weight_init", "bias_init", "gamma_init",
               "beta_init")


from .config_checks import check_model_options, ignored_options  # noqa: E402
