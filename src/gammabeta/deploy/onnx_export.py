"""ONNX export of a gammabeta model, built node by node with ``onnx.helper``.

Graph interface
---------------
* input ``"input"``: shape ``("N", *input_shape)``, the model's float dtype (float32 usually;
  float64 models export as double, which ONNX Runtime's CPU kernels only partly cover, e.g. no
  double ``Erf``); ``"N"`` is a dynamic batch dimension;
* output ``"logits"``: shape ``("N", *output_shape)``;
* default opset 17 (any opset from 13 to the installed ``onnx``'s newest); IR version the
  lowest that opset needs, so older runtimes load the file;
* initializers are named by the gammabeta state-dict keys (``"0.weight"``,
  ``"3.block.1.running_mean"``), nodes and intermediate tensors by layer path and operator
  (``"/3.block.0/Conv"``).

Operators, in inference mode
----------------------------
Linear → ``Gemm`` (``transB=1``) on 2-D inputs, ``MatMul`` + ``Add`` otherwise; Conv1d/2d →
``Conv``; BatchNorm1d/2d → ``BatchNormalization`` (running statistics; or folded into the layer
before it with ``fold_bn=True``, see :mod:`gammabeta.deploy.fold`); LayerNorm →
``LayerNormalization`` (opset 17 and up); GroupNorm → ``GroupNormalization`` from opset 21
(per-channel scale and bias), below that ``Reshape`` to ``(N, G, -1)`` → ``InstanceNormalization``
→ ``Reshape`` back → ``Mul`` γ → ``Add`` β (ONNX Runtime runs both); InstanceNorm1d/2d →
``InstanceNormalization`` (the instance's statistics), or ``BatchNormalization`` with the
running statistics when ``track_running_stats=True``; ReLU/LeakyReLU/Sigmoid/Tanh →
``Relu``/``LeakyRelu``/``Sigmoid``/``Tanh``; GELU → ``Gelu`` from opset 20, else its expansion
``0.5·x·(1 + erf(x/√2))`` (``Erf``) or the tanh form; MaxPool/AvgPool → ``MaxPool`` /
``AveragePool``; AdaptiveAvgPool to size 1 → ``GlobalAveragePool`` (other sizes dividing the
input → ``AveragePool``); Flatten → ``Flatten`` (``start_dim=1``) or ``Reshape``; Unflatten →
``Reshape``; Residual → its branches and ``Add``; Dropout and Identity emit nothing.

``onnx`` is imported inside :func:`export_onnx`, never when this module is imported.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .. import nn
from ..errors import ConfigError, GammabetaError, ShapeError
from ..nn.batchnorm import _BatchNorm
from ..nn.frozen_bn import _FrozenBatchNorm
from ..nn.groupnorm import GroupNorm
from ..nn.instancenorm import _InstanceNorm
from ..nn.layernorm import LayerNorm
from . import DEFAULT_OPSET

__all__ = ["export_onnx", "DEFAULT_OPSET", "MIN_OPSET"]

MIN_OPSET = 13


def _require_onnx():
    try:
        import onnx
        from onnx import helper, numpy_helper
    except ImportError:
        raise ConfigError("ONNX export needs the onnx package; install the onnx extra: "
                          "pip install gammabeta[onnx]") from None
    return onnx, helper, numpy_helper


class _Builder:
    """Collects nodes and initializers; each ``_emit`` returns ``(tensor_name, example)``."""

    def __init__(self, dtype, opset: int):
        self.dtype, self.opset = np.dtype(dtype), opset
        self.nodes: list[tuple[str, list[str], list[str], str, dict]] = []
        self.inits: dict[str, np.ndarray] = {}
        self.used: set[str] = {"input"}

    def _unique(self, base: str) -> str:
        name, i = base, 1
        while name in self.used:
            i += 1
            name = f"{base}_{i}"
        self.used.add(name)
        return name

    def init(self, name: str, value, dtype=None) -> str:
        name = self._unique(name)
        self.inits[name] = np.ascontiguousarray(np.asarray(value, dtype=dtype or self.dtype))
        return name

    def const(self, value: float) -> str:
        key = f"const.{value!r}"
        if key not in self.inits:
            self.used.add(key)
            self.inits[key] = np.asarray(value, dtype=self.dtype)
        return key

    def node(self, op: str, inputs: list[str], where: str, **attrs) -> str:
        out = self._unique(f"/{where or 'model'}/{op}")
        self.nodes.append((op, list(inputs), [out], out, attrs))
        return out

    # ----- layers ------------------------------------------------------------------------------
    def emit(self, m: nn.Module, x: str, xv, where: str):
        """Nodes computing ``m`` from tensor ``x`` (whose value on the example is ``xv``)."""
        sub = f"{where}." if where else ""
        if isinstance(m, nn.Sequential):
            for key, child in m._modules.items():
                x, xv = self.emit(child, x, xv, sub + key)
            return x, xv
        if isinstance(m, nn.Residual):
            f, fv = self.emit(m.block, x, xv, sub + "block")
            s, sv = (x, xv) if m.shortcut is None else \
                self.emit(m.shortcut, x, xv, sub + "shortcut")
            if fv.shape != sv.shape:
                m(xv)  # raises Residual's own ShapeError
            return self.node("Add", [f, s], where), fv + sv
        if isinstance(m, _BatchNorm) and not m.track_running_stats:
            raise ConfigError(f"export_onnx: {where} {m.describe()} has "
                              "track_running_stats=False; eval mode needs running statistics")
        yv = m(xv)
        return self._leaf(m, x, xv, where, sub), yv

    def _leaf(self, m: nn.Module, x: str, xv, where: str, sub: str) -> str:
        if isinstance(m, (nn.Dropout, nn.Identity)):
            return x
        if isinstance(m, nn.Linear):
            w = m.weight.data
            if xv.ndim == 2:
                ins = [x, self.init(sub + "weight", w)]
                if m.bias is not None:
                    ins.append(self.init(sub + "bias", m.bias.data))
                return self.node("Gemm", ins, where, transB=1)
            y = self.node("MatMul", [x, self.init(sub + "weight_t", w.T)], where)
            if m.bias is not None:
                y = self.node("Add", [y, self.init(sub + "bias", m.bias.data)], where)
            return y
        if isinstance(m, (nn.Conv1d, nn.Conv2d)):
            if xv.ndim != m._nd + 2:
                raise ShapeError(f"export_onnx: {where} {m.describe()} gets {xv.shape[1:]} "
                                 "per sample; ONNX Conv needs a channel axis")
            ins = [x, self.init(sub + "weight", m.weight.data)]
            if m.bias is not None:
                ins.append(self.init(sub + "bias", m.bias.data))
            pads = [lo for lo, _ in m._pads] + [hi for _, hi in m._pads]
            return self.node("Conv", ins, where, kernel_shape=list(m.kernel_size),
                             strides=list(m.stride), pads=pads, dilations=list(m.dilation),
                             group=m.groups)
        if isinstance(m, (_BatchNorm, _FrozenBatchNorm)):
            return self._batchnorm(m, x, where, sub)
        if isinstance(m, LayerNorm):
            return self._layernorm(m, x, xv, where, sub)
        if isinstance(m, GroupNorm):
            return self._groupnorm(m, x, xv, where, sub)
        if isinstance(m, _InstanceNorm):
            return self._instancenorm(m, x, xv, where, sub)
        if isinstance(m, nn.ReLU):
            return self.node("Relu", [x], where)
        if isinstance(m, nn.LeakyReLU):
            return self.node("LeakyRelu", [x], where, alpha=m.negative_slope)
        if isinstance(m, nn.Sigmoid):
            return self.node("Sigmoid", [x], where)
        if isinstance(m, nn.Tanh):
            return self.node("Tanh", [x], where)
        if isinstance(m, nn.GELU):
            return self._gelu(m, x, where)
        if isinstance(m, (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d)):
            attrs = dict(kernel_shape=list(m.kernel_size), strides=list(m.stride),
                         pads=list(m.padding) * 2)
            if isinstance(m, (nn.MaxPool1d, nn.MaxPool2d)):
                return self.node("MaxPool", [x], where, **attrs)
            return self.node("AveragePool", [x], where,
                             count_include_pad=int(m.count_include_pad), **attrs)
        if isinstance(m, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)):
            return self._adaptive(m, x, xv, where)
        if isinstance(m, nn.Flatten):
            nd = xv.ndim
            s, e = m.start_dim % nd, m.end_dim % nd
            if s == 1 and e == nd - 1:
                return self.node("Flatten", [x], where, axis=1)
            shape = ([0] * s if s else []) + [-1] + list(xv.shape[e + 1:])
            return self.node("Reshape", [x, self.init(sub + "shape", shape, np.int64)], where)
        if isinstance(m, nn.Unflatten):
            d = m.dim % xv.ndim
            if d == 0:
                raise ConfigError(f"export_onnx: {where} {m.describe()} splits the batch axis")
            shape = [0] * d + list(m.unflattened_size) + list(xv.shape[d + 1:])
            return self.node("Reshape", [x, self.init(sub + "shape", shape, np.int64)], where)
        raise ConfigError(f"export_onnx: layer {where or '(root)'} is a {type(m).__name__}, "
                          "which has no ONNX translation here")

    def _batchnorm(self, m, x: str, where: str, sub: str) -> str:
        """BatchNorm in eval mode (and its variants; FrozenBatchNorm's γ/β may be buffers)."""
        c = m.num_features
        scale = np.asarray(getattr(m.weight, "data", m.weight)) if m.affine else np.ones(c)
        bias = np.asarray(getattr(m.bias, "data", m.bias)) if m.affine else np.zeros(c)
        ins = [x, self.init(sub + ("weight" if m.affine else "scale"), scale),
               self.init(sub + ("bias" if m.affine else "shift"), bias),
               self.init(sub + "running_mean", m.running_mean),
               self.init(sub + "running_var", m.running_var)]
        return self.node("BatchNormalization", ins, where, epsilon=m.eps)

    def _scale_shift(self, m, c, sub: str):
        """γ and β initializers (ones/zeros, named ``scale``/``shift``, when absent)."""
        w, b = m._parameters["weight"], m._parameters["bias"]
        return (self.init(sub + ("weight" if w is not None else "scale"),
                          w.data if w is not None else np.ones(c)),
                self.init(sub + ("bias" if b is not None else "shift"),
                          b.data if b is not None else np.zeros(c)))

    def _layernorm(self, m: LayerNorm, x: str, xv, where: str, sub: str) -> str:
        dims = len(m.normalized_shape)
        if self.opset < 17:
            raise ConfigError(f"export_onnx: {where} {m.describe()} needs opset >= 17 (ONNX "
                              f"LayerNormalization); got opset={self.opset}")
        if xv.ndim <= dims:
            raise ConfigError(f"export_onnx: {where} {m.describe()} normalizes over the batch "
                              "axis, which is dynamic in the exported graph")
        w, b = m._parameters["weight"], m._parameters["bias"]
        ins = [x, self.init(sub + ("weight" if w is not None else "scale"),
                            w.data if w is not None else np.ones(m.normalized_shape))]
        if b is not None:
            ins.append(self.init(sub + "bias", b.data))
        return self.node("LayerNormalization", ins, where, axis=-dims, epsilon=m.eps)

    def _groupnorm(self, m: GroupNorm, x: str, xv, where: str, sub: str) -> str:
        g, c = m.num_groups, m.num_channels
        if self.opset >= 21 and xv.ndim >= 3:  # per-channel scale and bias from opset 21
            scale, shift = self._scale_shift(m, c, sub)
            return self.node("GroupNormalization", [x, scale, shift], where, num_groups=g,
                             epsilon=m.eps)
        shape = self.node("Shape", [x], where)
        rows = self.node("Reshape", [x, self.init(sub + "group_shape", [0, g, -1], np.int64)],
                         where)
        ones, zeros = self.init(sub + "group_scale", np.ones(g)), \
            self.init(sub + "group_shift", np.zeros(g))
        y = self.node("InstanceNormalization", [rows, ones, zeros], where, epsilon=m.eps)
        y = self.node("Reshape", [y, shape], where)
        per_channel = (c,) + (1,) * (xv.ndim - 2)
        w, b = m._parameters["weight"], m._parameters["bias"]
        if w is not None:
            y = self.node("Mul", [y, self.init(sub + "weight", w.data.reshape(per_channel))],
                          where)
        if b is not None:
            y = self.node("Add", [y, self.init(sub + "bias", b.data.reshape(per_channel))],
                          where)
        return y

    def _instancenorm(self, m: _InstanceNorm, x: str, xv, where: str, sub: str) -> str:
        if xv.ndim != m._batched_ndim:
            raise ConfigError(f"export_onnx: {where} {m.describe()} gets {xv.ndim}-D tensors, "
                              f"which it takes as one unbatched sample; export needs batched "
                              f"{m._batched_ndim}-D inputs")
        scale, shift = self._scale_shift(m, m.num_features, sub)
        if m.track_running_stats:  # evaluation with running statistics: a per-channel affine
            ins = [x, scale, shift, self.init(sub + "running_mean", m.running_mean),
                   self.init(sub + "running_var", m.running_var)]
            return self.node("BatchNormalization", ins, where, epsilon=m.eps)
        return self.node("InstanceNormalization", [x, scale, shift], where, epsilon=m.eps)

    def _gelu(self, m: nn.GELU, x: str, where: str) -> str:
        if self.opset >= 20:
            return self.node("Gelu", [x], where, approximate=m.approximate)
        n = self.node
        if m.approximate == "tanh":
            x3 = n("Mul", [n("Mul", [x, x], where), x], where)
            inner = n("Add", [x, n("Mul", [x3, self.const(0.044715)], where)], where)
            t = n("Tanh", [n("Mul", [inner, self.const(math.sqrt(2 / math.pi))], where)], where)
            one_plus = n("Add", [t, self.const(1.0)], where)
        else:
            e = n("Erf", [n("Div", [x, self.const(math.sqrt(2.0))], where)], where)
            one_plus = n("Add", [e, self.const(1.0)], where)
        return n("Mul", [n("Mul", [x, one_plus], where), self.const(0.5)], where)

    def _adaptive(self, m, x: str, xv, where: str) -> str:
        size_in = xv.shape[2:]
        size_out = [o or i for o, i in zip(m.output_size, size_in, strict=True)]
        if all(o == 1 for o in size_out):
            return self.node("GlobalAveragePool", [x], where)
        if any(i % o for i, o in zip(size_in, size_out, strict=True)):
            raise ConfigError(f"export_onnx: {where} {m.describe()} maps size {size_in} to "
                              f"{tuple(size_out)}; only sizes that divide evenly export")
        k = [i // o for i, o in zip(size_in, size_out, strict=True)]
        return self.node("AveragePool", [x], where, kernel_shape=k, strides=k)


def export_onnx(model: nn.Module, path, input_shape, opset: int = DEFAULT_OPSET,
                fold_bn: bool = False):
    """Write ``model`` (in inference mode) as an ONNX file; return the ``onnx.ModelProto``.

    Parameters
    ----------
    model : gammabeta.nn.Module
        A tree of supported layers (see the module docstring). Not modified: its
        train/eval modes are restored afterwards.
    path : str or os.PathLike
        Output file, written atomically (a temp file renamed into place).
    input_shape : sequence of int
        Shape of one sample (without the batch axis), e.g. ``(40,)`` or ``(1, 28, 28)``.
    opset : int, default 17
        ONNX opset (``Gelu`` is a native operator from 20; below that it is expanded).
    fold_bn : bool, default False
        First fold every foldable BatchNorm into the Linear/Conv before it
        (:func:`gammabeta.deploy.fold_batchnorm`: ``W' = W·γ/√(var+ε)``,
        ``b' = (b − mean)·γ/√(var+ε) + β``); the others export as ``BatchNormalization``.

    Raises
    ------
    ConfigError
        onnx is not installed, an unsupported layer or opset.
    ShapeError
        ``input_shape`` does not fit the model.
    """
    onnx, helper, numpy_helper = _require_onnx()
    from .. import __version__
    from ..io import atomic_write_bytes
    from .fold import fold_batchnorm

    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= int(opset) <= newest:
        raise ConfigError(f"export_onnx: opset={opset}; expected {MIN_OPSET} to {newest}")
    opset = int(opset)
    input_shape = tuple(int(s) for s in input_shape)
    notes: list[str] = []
    if fold_bn:
        model = fold_batchnorm(model)
        notes = list(model.fold_notes)
    params = [p.data.dtype for p in model.parameters()]
    dtype = np.dtype(params[0] if params else np.float32)
    b = _Builder(dtype, opset)
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with nn.no_grad():
            x0 = np.zeros((2, *input_shape), dtype=dtype)
            try:
                out, yv = b.emit(model, "input", x0, "")
            except ShapeError as e:
                raise ShapeError(f"export_onnx: input_shape {input_shape} does not fit the "
                                 f"model: {e}") from None
    finally:
        for m, mode in modes:
            object.__setattr__(m, "training", mode)
    nodes = b.nodes
    if out == "input":
        nodes.append(("Identity", ["input"], ["logits"], "/output/Identity", {}))
    nodes = [(op, ["logits" if i == out else i for i in ins],
              ["logits" if o == out else o for o in outs], name, attrs)
             for op, ins, outs, name, attrs in nodes]
    elem = helper.np_dtype_to_tensor_dtype(dtype)
    graph = helper.make_graph(
        [helper.make_node(op, ins, outs, name=name, **attrs)
         for op, ins, outs, name, attrs in nodes],
        "gammabeta",
        [helper.make_tensor_value_info("input", elem, ["N", *input_shape])],
        [helper.make_tensor_value_info("logits", elem, ["N", *yv.shape[1:]])],
        initializer=[numpy_helper.from_array(v, name=k) for k, v in b.inits.items()],
        doc_string="; ".join(notes))
    opsets = [helper.make_opsetid("", opset)]
    proto = helper.make_model(graph, opset_imports=opsets, producer_name="gammabeta",
                              producer_version=__version__,
                              ir_version=helper.find_min_ir_version_for(opsets))
    try:
        onnx.checker.check_model(proto, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise GammabetaError(f"export_onnx: the built graph fails onnx.checker ({e}); "
                             "this is a gammabeta bug") from e
    atomic_write_bytes(Path(path), proto.SerializeToString())
    return proto
