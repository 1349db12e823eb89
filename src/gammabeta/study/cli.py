"""``gammabeta study list|show|run``: the command line of the study runner.

:func:`add_parser` registers ``study`` on the main CLI's subparsers; :func:`main` runs it on
its own (``python -m gammabeta.study.cli run gamma-beta --quick``).
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
from pathlib import Path

from ..errors import ConfigError, GammabetaError

__all__ = ["add_parser", "main", "cmd_list", "cmd_show", "cmd_run"]


def cmd_list(a) -> int:
    """Print the built-in studies with their titles and grid sizes."""
    from .runner import expand
    from .spec import builtin_names, load_spec

    print("Built-in studies (gammabeta study run NAME [--quick]):")
    for name in builtin_names():
        full, quick = load_spec(name), load_spec(name, "quick")
        print(f"  {name:<13} {full.title}\n  {'':<13} {len(expand(full))} runs "
              f"({len(expand(quick))} with --quick)")
    return 0


def cmd_show(a) -> int:
    """Print a built-in study's TOML (a starting point for a study file of your own)."""
    from pathlib import Path

    from ..outputs import read_small_text
    from .spec import builtin_path

    if Path(a.study).is_file():  # a study file of one's own: shown as it is
        print(read_small_text(Path(a.study), "study file"), end="")
        return 0
    print(builtin_path(a.study).read_text(encoding="utf-8"), end="")
    return 0


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def cmd_run(a) -> int:
    """Run (or resume) a study and print where its report is."""
    from .runner import run_study
    from .spec import load_spec

    scale = "tiny" if a.tiny else "quick" if a.quick else "full"
    if a.out is not None and not a.out.strip():
        raise ConfigError("--out is empty; expected a folder such as studies/mine")
    if a.workers is not None and a.workers < 1:
        raise ConfigError(f"--workers={a.workers}; expected a whole number >= 1")
    spec = load_spec(a.study, scale=scale, data_dir=a.data_dir)
    out = Path(a.out or f"studies/{spec.name}{'' if scale == 'full' else '-' + scale}")
    argv = getattr(a, "argv", None)
    command = "gammabeta " + shlex.join(argv if argv is not None else sys.argv[1:])
    try:  # SIGTERM stops like Ctrl-C: finished runs are saved, workers are stopped
        previous = signal.signal(signal.SIGTERM, _interrupt)
    except ValueError:  # not the main thread
        previous = None
    try:
        res = run_study(spec, out, workers=a.workers, dask_scheduler=a.dask_scheduler,
                        progress=not a.quiet, command=command)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    print(f"{spec.name}: {res['ran']} run(s) executed, {res['skipped']} already done, "
          f"{res['seconds']:.1f} s; report: {out / 'report.md'}")
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``study`` (with ``list``, ``show`` and ``run``) on ``subparsers``."""
    p = subparsers.add_parser("study", help="controlled experiments: grids of runs, reports",
                              description="Run the built-in studies or a TOML study file.")
    sub = p.add_subparsers(dest="study_command", required=True)
    ls = sub.add_parser("list", help="list the built-in studies")
    ls.set_defaults(func=cmd_list)
    sh = sub.add_parser("show", help="print a built-in study's TOML file")
    sh.add_argument("study", help="built-in study name")
    sh.set_defaults(func=cmd_show)
    r = sub.add_parser("run", help="run or resume a study; write results, figures, report.md")
    r.add_argument("study", help="a built-in study name (see `study list`) or a .toml file")
    size = r.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true",
                      help="fewer seeds and epochs (each built-in: minutes on 2 cores)")
    size.add_argument("--tiny", action="store_true",
                      help="a few seconds: tiny data and models (for tests, not conclusions)")
    r.add_argument("--out", default=None,
                   help="output folder (default studies/NAME, studies/NAME-quick, ...); "
                        "running again into it resumes")
    r.add_argument("--workers", type=int, default=None,
                   help="local worker processes (default: all cores; 1 runs in-process)")
    r.add_argument("--dask-scheduler", default=None, metavar="ADDRESS",
                   help="run on an existing Dask cluster, e.g. tcp://host:8786")
    r.add_argument("--data-dir", default=None,
                   help="folder with the MNIST IDX files (studies that can use MNIST switch "
                        "to it, e.g. bn-paper)")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=cmd_run)
    return p


def main(argv=None) -> int:
    """``gammabeta study ...`` on its own; ``argv`` excludes the program name."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="gammabeta")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv if argv[:1] == ["study"] else ["study", *argv])
    args.argv = argv if argv[:1] == ["study"] else ["study", *argv]
    try:
        return args.func(args)
    except GammabetaError as e:
        print(f"gammabeta: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gammabeta: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
