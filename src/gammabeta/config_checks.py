"""The checks of :class:`~gammabeta.config.TrainConfig` across options: options that would be
set but have no effect (said, not silently dropped), combinations that cannot work, and the
model options checked against the builder's signature."""

from __future__ import annotations

import dataclasses
import inspect

from .errors import ConfigError

__all__ = ["ignored_options", "check_model_options"]

_BATCH_STATS = ("batch", "renorm", "ghost")  # norms that take statistics over the batch
_NORM_OPTIONS = {"groups": "group", "virtual_batch_size": "ghost", "renorm_r_max": "renorm",
                 "renorm_d_max": "renorm", "renorm_warmup_steps": "renorm",
                 "renorm_ramp_steps": "renorm"}


def _widths(v: dict) -> list[int]:
    """The widths a norm layer will see (hidden widths, or the conv channels)."""
    from .models import BUILDERS
    from .models.mlp import _hidden

    if v["model"] in ("mlp", "resmlp"):
        return list(_hidden(v["hidden"] or "256,256"))
    channels = v["model_options"].get("channels")
    if channels is None:
        channels = inspect.signature(BUILDERS[v["model"]]).parameters["channels"].default
    if v["model"] == "resnet":
        stages = v["model_options"].get("stages", 3)
        return [channels * 2**s for s in range(stages)]
    return [channels]


def ignored_options(v: dict, label) -> list[str]:
    """Options that would be set but have no effect, and combinations that cannot work."""
    from .config import TrainConfig

    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    out = []
    norm = v["norm"]
    if norm == "none":
        out += [f"{label(k)}={v[k]!r} sets the normalization layers' {k.split('_')[0]}; "
                "with norm='none' there are none" for k in ("gamma_init", "beta_init",
                                                            "gamma_lr_scale")
                if v[k] != defaults[k]]
    if v["model_options"].get("zero_init_residual") and norm not in _BATCH_STATS:
        out.append(f"{label('model_options.zero_init_residual')} zeroes the γ of the last "
                   f"BatchNorm of each block; norm={norm!r} has no BatchNorm")
    for key, owner in _NORM_OPTIONS.items():
        if v[key] is not None and norm != owner:
            out.append(f"{label(key)}={v[key]!r} applies to norm={owner!r}, not {norm!r}")
    if norm == "instance" and v["model"] in ("mlp", "resmlp"):
        out.append(f"{label('norm')}='instance' normalizes each channel over its positions; "
                   f"model {v['model']!r} has features without positions (use a conv model, "
                   "or norm='layer')")
    if norm == "group" and v["groups"] is not None:
        bad = sorted({w for w in _widths(v) if w % v["groups"]})
        if bad:
            out.append(f"{label('groups')}={v['groups']} does not divide the layer width(s) "
                       f"{bad}; GroupNorm splits the channels evenly")
    if v["hidden"] is not None and v["model"] not in ("mlp", "resmlp"):
        out.append(f"{label('hidden')}={v['hidden']!r} sets the widths of mlp and resmlp; "
                   f"model {v['model']!r} has none (its size: channels, layers)")
    if v["optimizer"] != "sgd" and v["momentum"] != defaults["momentum"]:
        out.append(f"{label('momentum')}={v['momentum']!r} applies to optimizer 'sgd', not "
                   f"{v['optimizer']!r} (Adam's moments have their own betas)")
    if v["data"].lower().endswith((".npz", ".csv")):
        out += [f"{label(k)} applies to mnist/fashion, not to the file {v['data']!r}"
                for k in ("data_dir", "download") if v[k]]
    if norm in _BATCH_STATS and v["batch_size"] < 2:
        out.append(f"{label('batch_size')}={v['batch_size']}: norm={norm!r} needs at least 2 "
                   "samples per batch (its variance of one sample is 0)")
    return out


def check_model_options(model: str, options: dict, label=lambda name: name) -> dict:
    """Check builder options against the builder's signature: the names it takes, and for
    each, a value of its default's type (whole numbers from 1 to a size limit, true/false)."""
    from .config import _TRAIN_KEYS, LIMITS, MODEL_FLAGS, Option, check_option
    from .models import BUILDERS

    params = inspect.signature(BUILDERS[model]).parameters
    valid = [k for k in params if k not in ("input_shape", "num_classes", "rng", *_TRAIN_KEYS,
                                            "norm_options")]
    out = {}
    for key, value in options.items():
        where = label(f"model_options.{key}")
        if key not in valid:
            takes = f"it takes {', '.join(valid)}" if valid else "it takes none"
            raise ConfigError(f"{where}: model {model!r} has no option {key!r}; {takes}")
        o = MODEL_FLAGS.get(key)
        if o is None:
            default = params[key].default
            o = (Option("bool", "") if isinstance(default, bool) else
                 Option("int", "", lo=1, hi=LIMITS["channels"]) if isinstance(default, int)
                 else Option("str", ""))
        out[key] = check_option(key, value, o, where)
    return out
