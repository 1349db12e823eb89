"""Controlled experiments: grids of training runs defined in TOML, run in parallel, reported.

``gammabeta study list`` shows the built-in studies (``study/builtin/*.toml``);
``gammabeta study run NAME|FILE`` runs one (resumable) and writes ``results.csv``,
``results.json``, figures and ``report.md``. From Python::

    from gammabeta.study import load_spec, run_study
    run_study(load_spec("gamma-beta", scale="quick"), "studies/gamma-beta-quick", workers=2)
"""

from .runner import ResultStore, expand, run_study
from .spec import StudySpec, builtin_names, load_spec, parse_spec

__all__ = ["StudySpec", "load_spec", "parse_spec", "builtin_names", "expand", "run_study",
           "ResultStore"]
