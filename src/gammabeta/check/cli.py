"""The ``gammabeta check`` subcommand; :func:`add_parser` registers it on a subparsers object."""

from __future__ import annotations

import argparse
import sys

from .options import KINDS

__all__ = ["add_parser", "run", "main"]

USAGE_EXAMPLES = """\
examples:
  gammabeta check layers.py                            every normalization in the file
  gammabeta check layers.py:batchnorm_forward          one cs231n-style forward/backward pair
  gammabeta check my_bn.py:BatchNorm                   one class with forward()/backward()
  gammabeta check my_bn.py:BatchNorm --init-args '64, momentum=0.1'
                                                       built as BatchNorm(64, momentum=0.1),
                                                       fed inputs of 64 features
  gammabeta check my_layers.py:affine_forward --kind layer --shapes '4,5;5,3;3'
exit status: 0 when no check fails (notes and warnings allowed), 1 when one fails, 2 on bad
usage or when the layer could not be driven (the report says which flag to give).
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``check`` on an argparse subparsers object; ``func`` returns the exit code."""
    p = subparsers.add_parser(
        "check", help="check a hand-written BatchNorm (or any layer) against the reference",
        description="Check hand-written batch, layer or group normalization (cs231n-style "
                    "function pairs or classes) against a float64 reference with PyTorch's "
                    "semantics, on random inputs with random γ and β, under the code's own "
                    "conventions (its ε, momentum, start values: reported as notes), in a "
                    "separate time- and memory-limited process; name each failing property "
                    "and its likely cause. Everything is found without flags; the flags "
                    "below override what was found.",
        epilog=USAGE_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("target", metavar="FILE.py[:NAME]",
                   help="a file (every batch/layer/group norm in it is found) or one forward "
                        "function (cs231n style) or class in it")
    p.add_argument("--backward", metavar="NAME",
                   help="the backward function (default: NAME with 'forward' → 'backward')")
    p.add_argument("--kind", choices=list(KINDS), default="auto",
                   help="auto (default: from the name), batchnorm, spatial_batchnorm, "
                        "layernorm, groupnorm, or layer (any layer: forward/backward against "
                        "finite differences only)")
    p.add_argument("--groups", type=int, default=2, metavar="G",
                   help="groupnorm: the number of groups to test with (default 2, with 3 "
                        "channels a group; groups given in --init-args win)")
    p.add_argument("--init-args", metavar="ARGS",
                   help="constructor arguments as Python literals, e.g. '64, momentum=0.1' "
                        "for BatchNorm(num_features, momentum=...); the inputs then get as "
                        "many features (and groups) as the arguments say (default: inferred "
                        "from the constructor's parameter names)")
    p.add_argument("--shapes", metavar="S1;S2",
                   help="--kind layer: shapes of the forward's array arguments, e.g. '4,5;5,3;3'")
    g = p.add_argument_group("attribute names (class style; found by name or by probing "
                             "when not given)")
    for role, ex in (("gamma", "gamma/weight/scale"), ("beta", "beta/bias/shift"),
                     ("running-mean", "running_mean/moving_mean/mean"),
                     ("running-var", "running_var/moving_var/var"),
                     ("dgamma", "dgamma, weight.grad, ..."), ("dbeta", "dbeta, bias.grad, ..."),
                     ("momentum", "momentum"), ("eps", "eps/epsilon"),
                     ("mode", "train()/eval(), a forward keyword (training, train_flg, "
                              "inference, ...) or an attribute (training, mode, ...); an "
                              "attribute or forward keyword NAME")):
        g.add_argument(f"--{role}-attr", metavar="ATTR", help=f"default: {ex}")
    p.add_argument("--timeout", type=float, default=20.0,
                   help="seconds each call into your code may take (default 20)")
    p.add_argument("--memory", default="4G",
                   help="memory the checked code may use, e.g. 4G or 512M (default 4G)")
    p.add_argument("--strict-pytorch", action="store_true",
                   help="fail on defensible differences from PyTorch too (biased running_var)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    p.add_argument("--json", action="store_true", help="print a machine-readable report")
    p.add_argument("--output", "-o", metavar="FILE", help="also write the JSON report to FILE")
    p.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    """Run the check described by parsed ``args``; print the report; return the exit code."""
    from . import check

    opts = {k: getattr(args, k) for k in (
        "backward", "kind", "groups", "init_args", "shapes", "timeout", "memory",
        "strict_pytorch", "seed",
        "gamma_attr", "beta_attr", "running_mean_attr", "running_var_attr", "dgamma_attr",
        "dbeta_attr", "momentum_attr", "eps_attr", "mode_attr")}
    if args.output:  # a folder that is missing is an input error, found before the check
        from pathlib import Path

        from ..errors import OutputError

        out = Path(args.output)
        if out.is_symlink():
            raise OutputError(f"--output {out}: is a symbolic link; give the file's own path")
        if not out.parent.is_dir() or out.is_dir():
            raise OutputError(f"--output {out}: " + ("is a folder; expected a file name"
                              if out.is_dir() else f"folder {out.parent} does not exist"))
        if out.exists() and not args.overwrite:
            raise OutputError(f"--output {out} exists; pass --overwrite to replace it, or "
                              "choose another name")
        if out.exists() and out.resolve() == Path(args.target.rsplit(":", 1)[0]).resolve():
            raise OutputError(f"--output {out} is the file being checked; choose another name")
    report = check(args.target, **opts)
    print(report.to_json() if args.json else report.to_text())
    if args.output:
        report.save(args.output)
    return report.exit_code


def main(argv=None) -> int:
    """``python -m gammabeta.check.cli FILE.py:NAME ...``: the ``check`` subcommand alone."""
    from ..cli import main as gammabeta_main

    argv = list(sys.argv[1:] if argv is None else argv)
    return gammabeta_main(argv if argv[:1] == ["check"] else ["check", *argv])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
