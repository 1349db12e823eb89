"""``gammabeta check``: is *your* BatchNorm right, and if not, why?

Run a hand-written layer against :class:`gammabeta.nn.BatchNorm1d`/``2d`` (float64) on fresh
random inputs with random γ and β, in a separate, time-limited process::

    gammabeta check my_bn.py:batchnorm_forward      # cs231n-style pair (backward found by name)
    gammabeta check my_bn.py:BatchNorm              # a class with forward/backward

or from Python::

    from gammabeta.check import check
    report = check("my_bn.py:batchnorm_forward")
    print(report)                # text; report.to_json(); report.exit_code

Each failing property is named with its largest error, where it is and the likely cause, found
by testing hypotheses numerically (e.g. "dx is off by a constant per channel: the mean path of
the backward pass is missing"). See ``examples/broken_batchnorm/`` for one file per classic
mistake.

This package's ``__init__`` stays light: the sandboxed child imports it too.
"""

from __future__ import annotations

import os

__all__ = ["check", "Report", "Reports", "Finding"]


def check(obj_or_path, **options):
    """Check a hand-written BatchNorm (or, with ``kind="layer"``, any layer).

    Parameters
    ----------
    obj_or_path : str, os.PathLike, function, class or (forward, backward) tuple
        ``"FILE.py:NAME"``; a forward function (its backward is found by replacing "forward"
        with "backward" in its name, or given as ``backward=``); or a class. Objects must be
        defined at the top level of a file or an importable module.
    **options
        ``backward``, ``kind`` ("batchnorm" or "layer"), ``timeout`` (seconds per call, default
        20), ``strict_pytorch``, ``seed``, ``init_args`` ("3, momentum=0.1" or a tuple),
        ``shapes`` (``--kind layer``: "4,5;5,3;3"), and attribute names ``gamma_attr``,
        ``beta_attr``, ``running_mean_attr``, ``running_var_attr``, ``dgamma_attr``,
        ``dbeta_attr``, ``momentum_attr``, ``eps_attr``, ``mode_attr``.

    Returns
    -------
    Report
        ``report.passed``, ``report.exit_code``, ``report["backward_dx"].cause``, ``str(report)``,
        ``report.to_json()``.

    Raises
    ------
    gammabeta.errors.ConfigError
        Bad options, a missing file, or a NAME the file does not define (the message lists
        what it defines).
    """
    from .options import CheckOptions, _split, resolve_targets
    from .report import Reports
    from .run import run_all

    opts = CheckOptions.from_kwargs(options)
    targets = resolve_targets(obj_or_path, opts)
    reports = run_all(targets, opts)
    if isinstance(obj_or_path, (str, os.PathLike)) and not _split(os.fspath(obj_or_path))[1]:
        return Reports(os.fspath(obj_or_path), reports)
    return reports[0]


def __getattr__(name):
    if name in ("Report", "Reports", "Finding"):
        from . import report

        return getattr(report, name)
    raise AttributeError(f"module 'gammabeta.check' has no attribute {name!r}")
