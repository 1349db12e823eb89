"""The task options of a study run (``[options]`` in a study file): what each accepts, and
which combinations with a run's config cannot work (refused before any run starts)."""

from __future__ import annotations

from ..config import LIMITS, Option
from ..errors import ConfigError

__all__ = ["OPTIONS", "check_combination"]


def _o(default, kind, help, **kw) -> tuple:
    return default, Option(kind, help, **kw)


# name: (default, Option): types and ranges checked by the study loader (config.check_option)
OPTIONS: dict[str, tuple] = {
    "eval_every": _o(0, "int", "test accuracy every N steps (0: at the end of every epoch)",
                     lo=0),
    "max_train": _o(0, "int", "use only the first N training samples (0: all); for tiny runs",
                    lo=0),
    "max_test": _o(0, "int", "use only the first N test samples (0: all); for tiny runs", lo=0),
    "l1_gamma": _o(0.0, "float", "L1 penalty λ on γ: λ·sign(γ) added to γ.grad", lo=0),
    "prune": _o([], "fractions", "after training, prune these fractions of BN channels "
                                 "(smallest |γ|)"),
    "finetune_epochs": _o(0, "int", "epochs of fine-tuning after each pruning (0: none)", lo=0,
                          hi=LIMITS["epochs"]),
    "finetune_lr": _o(1e-3, "float", "constant AdamW learning rate of the fine-tuning", lo=0,
                      lo_open=True),
    "trainable": _o("all", "str", "all | bn (only γ, β) | random (as many random weights as "
                                  "γ, β)", choices=("all", "bn", "random")),
    "zero_last_gamma": _o(False, "bool", "γ = 0 in the last BN of every residual block"),
    "track": _o("", "str", "'' or 'last_activation_input': percentiles of the input to the last "
                           "activation (unit 0) and gradient norms at every evaluation",
                choices=("", "last_activation_input")),
    "record_gamma": _o(False, "bool", "store the final γ of every BN channel in the row"),
    "weight_scale": _o(1.0, "float", "multiply every weight (ndim >= 2) by this after "
                                     "initialization: the init's std × s", lo=0),
    "weight_scale_layers": _o("all", "str", "all | hidden: which weights weight_scale "
                              "multiplies (hidden: all but the output layer's)",
                              choices=("all", "hidden")),
    "ranks": _o(1, "int", "train data-parallel on this many MPI processes (mpiexec -n R; the "
                          "batch size is the global batch)", lo=1, hi=64),
    "bn_gap": _o(False, "bool", "record how far each BatchNorm's running statistics are from "
                                "the population statistics of its input over the training set"),
    "bn_momentum": _o(0.1, "float", "the momentum of every BatchNorm's running statistics "
                                    "(PyTorch's convention: the new batch's weight)", lo=0,
                      lo_open=True, hi=1),
    "precise_bn": _o(0, "int", "after training, also measure the test accuracy with PreciseBN "
                               "statistics: recomputed over this many training batches with "
                               "the weights frozen (nn.update_bn_stats); 0: off", lo=0,
                     hi=1_000_000),
    "steps": _o(0, "int", "train for exactly this many optimizer steps, however many epochs "
                          "that takes (the config's epochs is then ignored; 0: train for the "
                          "epochs)", lo=0, hi=100_000_000),
}


def check_combination(config: dict, options: dict) -> None:
    """Refuse task options that cannot work with the run's config, before any run starts."""
    norm = config.get("norm", "batch")
    opts = {k: v[0] for k, v in OPTIONS.items()} | options
    if norm == "none" and (opts["prune"] or opts["trainable"] == "bn" or opts["l1_gamma"]
                           or opts["record_gamma"]):
        what = next(k for k in ("prune", "trainable", "l1_gamma", "record_gamma")
                    if opts[k] and opts[k] != "all")
        raise ConfigError(f"options.{what}={opts[what]!r} works on BatchNorm's γ, and this "
                          "run has norm='none'")
    if norm not in ("batch", "renorm", "ghost") and (opts["precise_bn"]
                                                     or opts["bn_momentum"] != 0.1):
        what = "precise_bn" if opts["precise_bn"] else "bn_momentum"
        raise ConfigError(f"options.{what}={opts[what]!r} works on BatchNorm's running "
                          f"statistics, and this run has norm={norm!r}")
    if (opts["ranks"] > 1 and norm == "batch" and not config.get("sync_bn", True)
            and config.get("batch_size", 100) // opts["ranks"] < 2):
        raise ConfigError(f"batch_size={config.get('batch_size', 100)} on ranks="
                          f"{opts['ranks']} gives a worker fewer than 2 samples, and "
                          "per-worker BatchNorm (sync_bn = false) needs 2")
    if opts["max_train"] == 1 or opts["max_test"] == 1:
        raise ConfigError("max_train and max_test must be 0 (all) or at least 2")
    if opts["zero_last_gamma"] and (config.get("model") not in ("resnet", "resmlp")
                                    or norm == "none"):
        raise ConfigError(f"options.zero_last_gamma needs residual blocks with BatchNorm "
                          f"(model 'resnet' or 'resmlp'), not model={config.get('model')!r}, "
                          f"norm={norm!r}")
