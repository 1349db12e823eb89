"""``gammabeta check``: is *your* batch, layer or group norm right, and if not, why?

Point it at a file; it finds every normalization in it (cs231n-style ``X_forward``/``X_backward``
pairs, classes with forward/backward), works out how to drive each one, and runs it against a
float64 reference (:mod:`gammabeta.check.reference`) with random γ and β, in a separate, time-
and memory-limited process::

    gammabeta check layers.py                        # every target in the file
    gammabeta check my_bn.py:BatchNorm               # one of them

or from Python::

    from gammabeta.check import check
    reports = check("layers.py")            # Reports: one Report per target
    report = check("layers.py:batchnorm_forward")
    print(report)                # text; report.to_json(); report.exit_code

Verdicts follow the code's *own* conventions: the ε it uses (read off its output), the
momentum convention, the start values and whether the running variance is biased are NOTEs;
FAIL is kept for wrong math and for numerics that break on realistic inputs, each with the
likely cause found by testing which classic mistake the numbers match. See
``examples/broken_batchnorm/`` for one file per classic mistake.

This package's ``__init__`` stays light: the sandboxed child imports it too.
"""

from __future__ import annotations

import os

__all__ = ["check", "Report", "Reports", "Finding"]


def check(obj_or_path, **options):
    """Check hand-written normalization layers (or, with ``kind="layer"``, any layer).

    Parameters
    ----------
    obj_or_path : str, os.PathLike, function, class or (forward, backward) tuple
        ``"FILE.py"`` (every target in it); ``"FILE.py:NAME"``; a forward function (its
        backward is found by replacing "forward" with "backward" in its name, or given as
        ``backward=``); or a class. Objects must be defined at the top level of a file or an
        importable module.
    **options
        ``backward``, ``kind`` ("auto", "batchnorm", "spatial_batchnorm", "layernorm",
        "groupnorm" or "layer"), ``groups`` (group norm, default 2), ``timeout`` (seconds per
        call, default 20), ``memory`` ("4G"), ``strict_pytorch``, ``seed``, ``init_args``
        ("64, momentum=0.1" or a tuple; the inputs get the width they give), ``shapes``
        (``--kind layer``: "4,5;5,3;3"), and attribute names ``gamma_attr``, ``beta_attr``,
        ``running_mean_attr``, ``running_var_attr``, ``dgamma_attr``, ``dbeta_attr``,
        ``momentum_attr``, ``eps_attr``, ``mode_attr``.

    Returns
    -------
    Report or Reports
        For one target a Report (``report.passed``, ``report.exit_code``,
        ``report["backward_dx"].cause``, ``str(report)``, ``report.to_json()``); for a whole
        file a Reports (iterate over its Report objects; ``exit_code``, ``to_json()``).

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
