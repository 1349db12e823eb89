"""Controlled experiments: grids of training runs defined in TOML, run in parallel, reported.

``gammabeta study list`` shows the built-in studies (``study/builtin/*.toml``);
``gammabeta study run NAME|FILE`` runs one (resumable) and writes ``results.csv``,
``results.json``, figures and ``report.md``. From Python::

    from gammabeta.study import load_spec, run_study
    run_study(load_spec("gamma-beta", scale="quick"), "studies/gamma-beta-quick", workers=2)
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # what static tools (the API docs, type checkers) read; loaded on first use
    from .runner import ResultStore, expand, run_study
    from .spec import StudySpec, builtin_names, load_spec, parse_spec

__all__ = ["StudySpec", "load_spec", "parse_spec", "builtin_names", "expand", "run_study",
           "ResultStore"]

_HOME = {"StudySpec": "spec", "load_spec": "spec", "parse_spec": "spec",
         "builtin_names": "spec", "expand": "runner", "run_study": "runner",
         "ResultStore": "runner"}


def __getattr__(name: str):
    """The public names on first use: ``gammabeta --help`` builds the ``study`` parser from
    :mod:`gammabeta.study.cli` without importing the runner (and NumPy with it)."""
    if name in _HOME:
        import importlib

        return getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
