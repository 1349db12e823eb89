"""The ``gammabeta`` command line: a thin layer over :mod:`gammabeta.experiment` and friends."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__
from .errors import GammabetaError, NonFiniteError
from .train_cli import STATE_FILE, add_train_arguments, cmd_train, train_and_save

__all__ = ["main", "build_parser", "train_and_save", "STATE_FILE", "EXIT_CODES"]

EXIT_CODES = {0: "success", 1: "a check failed or a run failed (e.g. training diverged)",
              2: "a usage or input error: an option, a file or data that cannot be used",
              130: "interrupted (Ctrl-C or SIGTERM); finished work is saved"}

# The MNIST-1D paper's table (Greydanus 2020, arXiv:2011.14439, Table 1: test accuracy).
PAPER_TABLE = {"logistic regression": 32.0, "MLP": 68.0, "CNN": 94.0, "GRU": 91.0}


def cmd_demo(a) -> int:
    from .errors import ConfigError, TrainingInterrupted
    from .experiment import TrainConfig

    if not a.out.strip():
        raise ConfigError("--out is empty; expected a folder such as runs/demo")
    try:
        return _demo(a, TrainConfig)
    except TrainingInterrupted as e:
        print(f"gammabeta: demo {e}; run it again to start over", file=sys.stderr)
        return 130


def _demo(a, TrainConfig) -> int:  # noqa: N803 - the class, passed in
    import time

    t0 = time.perf_counter()
    cfg = TrainConfig()  # exactly what a bare `gammabeta train` runs
    print("gammabeta demo: the default BatchNorm MLP on MNIST-1D, as `gammabeta train` runs it\n"
          f"  (4,000 training samples, {cfg.val_fraction:.0%} of them held out for validation; "
          "1,000 test samples)\n")
    r = train_and_save(cfg, Path(a.out), a.quiet, overwrite=True)
    acc = 100 * r.test_accuracy
    print(f"\nMNIST-1D test accuracy: {acc:.1f}% (the MNIST-1D paper's MLP: "
          f"{PAPER_TABLE['MLP']:.0f}%, its CNN: {PAPER_TABLE['CNN']:.0f}%)")
    print(f"training took {r.seconds:.1f} s; the whole demo {time.perf_counter() - t0:.1f} s")
    print(f"written to {a.out}/: metrics.json, model.safetensors, curves.png\n")
    print("Next, in a shell where the environment is active (source .venv/bin/activate):")
    for cmd, why in _NEXT:
        print(f"  {cmd}\n      {why}")
    return 0


# The demo's three suggestions; tests/test_docs.py checks that each parses and names real files.
_NEXT = [("gammabeta train --model cnn",
          "the BN CNN (8 conv layers): about 99% on the same data"),
         ("gammabeta check examples/broken_batchnorm/eval_eps_outside_sqrt.py",
          "the checker on a classic hand-written BatchNorm mistake; point it at your own file"),
         ("gammabeta study run gamma-beta --quick",
          "does γ = 1, β = 0 matter? the experiment, rerun on this machine (a few minutes)")]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gammabeta", description="From-scratch NumPy networks with a correct BatchNorm: "
        "train, demo, study, check your own BatchNorm, export to ONNX, predict.",
        epilog="exit codes: " + "; ".join(f"{k} {v}" for k, v in EXIT_CODES.items()))
    p.add_argument("--version", action="version", version=f"gammabeta {__version__}")
    p.add_argument("--debug", action="store_true",
                   help="show the traceback of an error (anywhere on the command line)")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a network and write metrics, checkpoint, curves")
    add_train_arguments(t)
    t.set_defaults(func=cmd_train)
    d = sub.add_parser("demo", help="train the default BN MLP on MNIST-1D once, compare with "
                                    "the paper, and say what to try next")
    d.add_argument("--out", default="runs/demo")
    d.add_argument("--quiet", action="store_true")
    d.set_defaults(func=cmd_demo)
    from .check.cli import add_parser as add_check_parser
    from .deploy.cli import add_parser as add_deploy_parsers
    from .study.cli import add_parser as add_study_parser

    add_study_parser(sub)
    add_check_parser(sub)
    add_deploy_parsers(sub)
    return p


def _fail(message: str, code: int, debug: bool) -> int:
    if debug:
        import traceback

        traceback.print_exc()
    message = " ".join(message.split())  # one line, whatever the parts held
    if len(message) > 600:  # e.g. a hostile file's header echoed back: keep both ends
        message = f"{message[:400]} [... {len(message) - 550} characters ...] {message[-150:]}"
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is not None and mpi.COMM_WORLD.Get_size() > 1:  # one failing rank ends the job
        print(f"gammabeta: error: [rank {mpi.COMM_WORLD.Get_rank()}] {message}; stopping "
              "every rank (the last complete checkpoint is kept)", file=sys.stderr, flush=True)
        import time

        time.sleep(0.5)  # mpiexec forwards each rank's stderr: let the line out before Abort
        mpi.COMM_WORLD.Abort(code)
    print(f"gammabeta: error: {message}", file=sys.stderr)
    return code


def main(argv=None) -> int:
    """Run the command line; returns the exit code (see :data:`EXIT_CODES`).

    Anything a user can cause ends in one line on stderr; ``--debug`` (anywhere on the
    command line, or ``GAMMABETA_DEBUG=1``) adds the traceback.
    """
    import os

    argv = list(sys.argv[1:] if argv is None else argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    debug = "--debug" in argv[:cut] or os.environ.get("GAMMABETA_DEBUG", "") not in ("", "0")
    argv = [x for i, x in enumerate(argv) if not (x == "--debug" and i < cut)]
    import warnings

    if not debug:  # overflow in a diverging run is reported once, by the non-finite guard
        warnings.filterwarnings("ignore", category=RuntimeWarning)
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except NonFiniteError as e:  # the run itself failed: 1, not a usage error
        return _fail(str(e), 1, debug)
    except GammabetaError as e:
        return _fail(str(e), 2, debug)
    except MemoryError:
        return _fail("out of memory; use smaller sizes (--hidden, --channels, --batch-size) "
                     "or smaller data", 2, debug)
    except OSError as e:  # the environment, not the code: say what and where, no traceback
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        return _fail(f"{e.strerror or e}{where}", 2, debug)
    except KeyboardInterrupt:
        print("gammabeta: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
