"""The vocabulary of real normalization classes: constructor argument names, attribute names
for γ, β and the running statistics, mode switches, method names; and the helpers that walk an
instance's arrays. Collected from the corpus of real implementations the checker was measured
on (CMU mytorch, cs231n, Deep Learning from Scratch, ML-From-Scratch, numpy-ml, small
libraries); extend it here, in one place.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

NUM_ARGS = {"num_features", "num_feature", "n_features", "nfeatures", "features", "feature_size",
            "feature_dim", "num_channels", "channels", "n_channels", "nchannels", "in_channels",
            "channel", "dim", "dims", "d", "D", "size", "C", "c", "n", "N", "num_units", "units",
            "n_units", "in_features", "input_dim", "in_dim", "n_in", "out_features",
            "hidden_size", "hidden_dim", "width", "neurons", "num_neurons", "normalized_shape",
            "num_dims", "input_size", "nb_features", "n_feature", "n_neurons", "num_inputs",
            "out_channels", "n_dim", "ndim", "feat_dim", "d_model", "embed_dim", "num_feat",
            "shape", "input_shape", "in_size", "layer_size", "depth"}
GAMMA_ARGS = {"gamma", "weight", "scale", "g", "gamma_init", "init_gamma"}
BETA_ARGS = {"beta", "bias", "shift", "b", "beta_init", "init_beta"}
MOMENTUM_ARGS = ("momentum", "decay", "rho", "moving_average_fraction", "bn_momentum",
                 "running_momentum", "average_decay", "mom", "moment", "alpha")
GROUP_ARGS = {"G", "g_num", "groups", "num_groups", "group", "n_groups", "group_num", "ngroups"}
GAMMA = ("gamma", "weight", "scale", "g", "W", "BW", "gammas", "_gamma", "gamma_", "bn_weight",
         "params.gamma", "params.weight", "params.scale", "params.W", "param.gamma",
         "parameters.gamma", "weights.gamma", "parameters.scaler", "params.scaler", "scaler")
BETA = ("beta", "bias", "shift", "b", "Bb", "betas", "_beta", "beta_", "bn_bias", "params.beta",
        "params.bias", "params.shift", "params.b", "param.beta", "parameters.beta", "weights.beta",
        "parameters.intercept", "params.intercept", "intercept")
RUNNING_MEAN = ("running_mean", "moving_mean", "run_mean", "running_M", "running_mu",
                "mean_running", "rolling_mean", "avg_mean", "pop_mean", "population_mean",
                "global_mean", "mov_mean", "_mean", "mean", "mu", "bn_param.running_mean",
                "params.running_mean", "buffers.running_mean", "_running_mean",
                "running_avg_mean", "avg_mean")
RUNNING_VAR = ("running_var", "moving_var", "run_var", "running_V", "running_variance",
               "moving_variance", "var_running", "rolling_var", "avg_var", "pop_var",
               "population_var", "global_var", "mov_var", "_variance", "_var", "variance",
               "var", "sigma2", "bn_param.running_var", "params.running_var",
               "buffers.running_var", "_running_var", "running_avg_var")
EPS = ("eps", "epsilon", "eps_", "_eps", "bn_param.eps")
MOMENTUM = ("momentum", "decay", "rho", "bn_param.momentum", "_momentum", "alpha")
TRAIN_KW = ("training", "train", "is_training", "train_flg", "train_mode", "is_train", "istrain",
            "trainable", "train_flag", "isTrain", "is_train_mode", "training_mode", "learn")
EVAL_KW = ("eval", "evaluation", "inference", "test", "is_test", "testing", "test_mode",
           "deterministic", "predict", "is_inference", "eval_mode")
STR_KW = ("mode", "phase", "state", "stage")
MODE_ATTRS = ("training", "is_training", "train_mode", "mode", "phase", "is_train", "istrain",
              "train_flg", "bn_param.mode", "eval_mode", "inference", "is_test", "test_mode")
FORWARD = ("forward", "forward_pass", "forward_propagation", "fprop", "forward_prop", "__call__",
           "call")
BACKWARD = ("backward", "backward_pass", "backward_propagation", "bprop", "backward_prop",
            "backprop")
INIT_METHODS = ("initialize", "init", "build", "init_params", "initialize_parameters",
                "init_parameters", "setup")
LR_ARGS = {"lr", "learning_rate", "eta", "alpha", "step_size", "rate"}
SIZE_LIKE = re.compile(r"feat|dim|chan|size|unit|neuron|^n_?in|^in_|^num|width|^n$|^c$|^d$",
                        re.IGNORECASE)


class RecordingOptimizer:
    """Passed to ``initialize(optimizer)``: records each update's gradient, changes nothing."""

    def __init__(self):
        self.seen: dict = {}

    def __copy__(self):
        twin = RecordingOptimizer()
        twin.seen = self.seen  # copies made by the layer report to the same log
        return twin

    def __deepcopy__(self, memo):
        return self.__copy__()

    def update(self, w, grad, *args, **kwargs):
        import numpy as np  # (imported here: names is read by the command line's parser)

        self.seen[id(w)] = np.array(grad, dtype=np.float64, copy=True)
        return w

    step = __call__ = update


def arrays_of(obj, depth: int = 1, prefix: str = ""):
    """(path, array) for every float array attribute (and dict entry, one level down)."""
    import numpy as np

    from .access import param_array

    try:
        items = list(vars(obj).items())
    except TypeError:
        return
    for k, v in items:
        a = param_array(v)
        if a is not None and a.dtype.kind == "f":
            yield prefix + k, a
        elif isinstance(v, Mapping):
            for kk, vv in v.items():
                aa = param_array(vv)
                if isinstance(kk, str) and aa is not None and aa.dtype.kind == "f":
                    yield f"{prefix}{k}.{kk}", aa
        elif depth > 0 and hasattr(v, "__dict__") and not callable(v) \
                and not isinstance(v, (np.ndarray, RecordingOptimizer)):
            yield from arrays_of(v, depth - 1, f"{prefix}{k}.")


def is_stat_or_grad(path: str) -> bool:
    """Names that hold running statistics, caches or gradients, never γ/β."""
    last = path.rpartition(".")[2].lower()
    return any(t in last for t in ("running", "moving", "mean", "var", "grad", "cache", "std",
                                   "mu", "sigma", "xhat", "x_hat", "norm", "input", "out")) \
        or (last.startswith("d") and len(last) > 1 and last not in ("d",))


