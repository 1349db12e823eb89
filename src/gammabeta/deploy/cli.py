"""``gammabeta export`` and ``gammabeta predict``: subcommands over a training run's folder.

``add_parser(subparsers)`` registers both on an ``argparse`` sub-parser set (each with
``func=`` returning an exit code); :func:`main` runs them standalone (used by the tests).

    gammabeta export --onnx OUT.onnx --model DIR [--fold-bn] [--opset 17]
    gammabeta predict --model DIR INPUT [--out FILE.csv] [--batch-size 1000]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..errors import ConfigError, OutputError

__all__ = ["add_parser", "add_export_parser", "add_predict_parser", "cmd_export",
           "cmd_predict", "main"]


def _output_file(path: str, flag: str, overwrite: bool, reads=()) -> Path:
    """Refuse an output file whose folder is missing, that exists (without --overwrite), or
    that is one of the files the command ``reads`` (even with --overwrite)."""
    p = Path(path)
    if p.is_symlink():  # replacing a link with a file, or writing through it: neither asked
        raise OutputError(f"{flag} {p}: is a symbolic link (to {os.readlink(p)}); give the "
                          "file's own path")
    for r in reads:
        if Path(r).exists() and p.exists() and p.resolve() == Path(r).resolve():
            raise OutputError(f"{flag} {p} is the file this command reads; choose another name")
    if not p.parent.is_dir():
        raise OutputError(f"{flag} {p}: folder {p.parent} does not exist (create it first)")
    if p.is_dir():
        raise OutputError(f"{flag} {p}: is a folder; expected a file name")
    if p.exists() and not p.is_file():
        raise OutputError(f"{flag} {p}: is not a regular file (a device, FIFO or socket); "
                          "expected a file name")
    if p.exists() and not overwrite:
        raise OutputError(f"{flag} {p} exists; pass --overwrite to replace it, or choose "
                          "another name")
    return p


def cmd_export(a) -> int:
    import numpy as np

    """Rebuild the model from ``--model`` and write the ONNX file."""
    from .fold import fold_batchnorm
    from .onnx_export import export_onnx
    from .predict import check_outputs, load_model, predict_proba

    if not a.onnx.strip():
        raise ConfigError("--onnx is empty; expected a file name such as model.onnx")
    lm = load_model(a.model)
    _output_file(a.onnx, "--onnx", a.overwrite, reads=[lm.path])
    model, notes = lm.model, []
    if a.fold_bn:
        model = fold_batchnorm(model)
        notes = model.fold_notes
    for key, value in model.state_dict().items():  # folding extreme values can overflow
        v = np.asarray(value)
        if v.dtype.kind == "f" and not np.isfinite(v).all():
            why = (" after folding BatchNorm (extreme γ or running_var); export without "
                   "--fold-bn" if a.fold_bn else "")
            raise ConfigError(f"--model {a.model}: tensor {key!r} is not finite{why}")
    lo, hi = lm.input_range or (-1.0, 1.0)  # inputs like the training data's: do the
    probe = np.random.default_rng(0).uniform(lo, hi, (8, *lm.input_shape))  # weights overflow?
    check_outputs(predict_proba(model, probe.astype(np.float32)), a.model)
    proto = export_onnx(model, a.onnx, lm.input_shape, opset=a.opset)
    shape = ", ".join(map(str, lm.input_shape))
    print(f"wrote {a.onnx}: opset {a.opset}, {len(proto.graph.node)} nodes, "
          f"input 'input' (N, {shape}) -> output 'logits' (N, {lm.num_classes})"
          + (f"; folded {len(model.folded)} BatchNorm layer(s)" if a.fold_bn else ""))
    for n in notes:
        print(f"  note: {n}")
    return 0


def cmd_predict(a) -> int:
    import numpy as np

    """Class probabilities and argmax for every sample of ``INPUT``."""
    from ..io import atomic_write_text
    from .predict import (
        check_outputs,
        check_range,
        format_predictions,
        load_inputs,
        load_model,
        predict_proba,
    )

    if a.out is not None and not a.out.strip():
        raise ConfigError("--out is empty; expected a file name such as probs.csv")
    if a.batch_size < 1:
        raise ConfigError(f"--batch-size={a.batch_size}; expected a whole number >= 1")
    lm = load_model(a.model)
    if a.out:
        _output_file(a.out, "--out", a.overwrite, reads=[a.input, lm.path])
    x, y = load_inputs(a.input, lm.input_shape, max_classes=lm.num_classes,
                       columns=lm.columns)
    check_range(x, lm, a.input)
    probs = predict_proba(lm.model, x, a.batch_size)
    check_outputs(probs, a.model)
    text = format_predictions(probs)
    info = sys.stderr
    if a.out:
        atomic_write_text(a.out, text, parents=False)
        info = sys.stdout
        print(f"wrote {len(x)} predictions ({lm.num_classes} classes) to {a.out}", file=info)
    else:
        sys.stdout.write(text)
    if y is not None:
        acc = float(np.mean(probs.argmax(axis=1) == y))
        print(f"accuracy against the labels in {a.input}: {100 * acc:.2f}% ({len(y)} samples)",
              file=info)
    return 0


def add_export_parser(subparsers) -> argparse.ArgumentParser:
    from . import DEFAULT_OPSET

    p = subparsers.add_parser("export", help="export a trained model (run folder) to ONNX")
    p.add_argument("--onnx", required=True, metavar="OUT.onnx", help="ONNX file to write")
    p.add_argument("--model", required=True, metavar="DIR",
                   help="run folder with model.safetensors (gammabeta train --out DIR)")
    p.add_argument("--fold-bn", action="store_true",
                   help="fold BatchNorm into the Linear/Conv before it: W' = W·γ/√(var+ε), "
                        "b' = (b − mean)·γ/√(var+ε) + β")
    p.add_argument("--overwrite", action="store_true", help="replace OUT.onnx if it exists")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                   help=f"ONNX opset (default {DEFAULT_OPSET}; Gelu is native from 20)")
    p.set_defaults(func=cmd_export)
    return p


def add_predict_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("predict", help="class probabilities and argmax for an input file")
    p.add_argument("--model", required=True, metavar="DIR",
                   help="run folder with model.safetensors (gammabeta train --out DIR)")
    p.add_argument("input", metavar="INPUT",
                   help=".npz (x), .csv (a 'label'/'y' column is used for accuracy) or IDX")
    p.add_argument("--out", default=None, metavar="FILE.csv",
                   help="write the CSV here instead of printing it")
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=cmd_predict)
    return p


def add_parser(subparsers) -> None:
    """Register ``export`` and ``predict`` on ``subparsers`` (from ``add_subparsers()``)."""
    add_export_parser(subparsers)
    add_predict_parser(subparsers)


def main(argv=None) -> int:
    """Run ``export``/``predict`` alone: ``main(["predict", "--model", DIR, "x.npz"])``."""
    from ..cli import main as gammabeta_main

    return gammabeta_main(argv)
