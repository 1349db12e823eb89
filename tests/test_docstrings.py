"""The API reference's docstrings (NumPy style, rendered by mkdocstrings/griffe).

Every object in ``gammabeta.nn.__all__`` has its own docstring with an ``Examples`` section
whose doctests run and pass, a ``Parameters`` section naming every constructor (or function)
argument, and, for the layers with a closed-form backward, a ``Shape`` section. The layers with
parameters or buffers list them under ``Attributes``.
"""

from __future__ import annotations

import ast
import doctest
import inspect
import io
import logging
import re

import numpy as np
import pytest

from gammabeta import nn

PUBLIC = sorted(nn.__all__)
FLAGS = doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS
# the numpy-style sections the docs use ("Shape" is rendered by griffe as an admonition)
_HEADING = re.compile(r"^([A-Z][A-Za-z ]*)\n-{3,}[ \t]*$", re.MULTILINE)


def _doc(name: str) -> str:
    """The object's *own* docstring (a class's ``__doc__`` is never inherited), dedented."""
    doc = getattr(nn, name).__doc__
    assert doc, f"gammabeta.nn.{name} has no docstring of its own"
    return inspect.cleandoc(doc)


def _sections(doc: str) -> dict[str, str]:
    """``{title: body}`` of the NumPy-style sections (a title underlined with dashes)."""
    heads = list(_HEADING.finditer(doc))
    return {h.group(1).strip(): doc[h.end():nxt.start() if nxt else len(doc)]
            for h, nxt in zip(heads, heads[1:] + [None], strict=True)}


def _documented_names(body: str) -> set[str]:
    """Names in a Parameters/Attributes section: the unindented ``a, b : type`` lines."""
    names = set()
    for line in body.splitlines():
        if line and not line[0].isspace() and not line.startswith("-"):
            names.update(n.strip().lstrip("*") for n in line.split(" : ")[0].split(","))
    return names


def _signature_names(obj) -> list[str]:
    """The arguments a user passes: a class's constructor, a function's parameters."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):  # pragma: no cover - every public object has one
        return []
    return [p for p in sig.parameters if p != "self"]


def _is_layer(obj) -> bool:
    return isinstance(obj, type) and issubclass(obj, nn.Module)


def _has_own_backward(obj) -> bool:
    return _is_layer(obj) and obj.backward is not nn.Module.backward


# ----- the examples run ------------------------------------------------------------------------
@pytest.mark.parametrize("name", PUBLIC)
def test_examples_run(name):
    obj = getattr(nn, name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    # globs={}: an example must import what it uses, as a reader copying it would
    tests = finder.find(obj, f"gammabeta.nn.{name}", globs={})
    assert tests, f"gammabeta.nn.{name}: no doctest found"
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    report = io.StringIO()
    state = (nn.is_grad_enabled(), nn.is_anomaly_enabled())
    for test in tests:
        runner.run(test, out=report.write, clear_globs=True)
    assert (nn.is_grad_enabled(), nn.is_anomaly_enabled()) == state, \
        f"gammabeta.nn.{name}: the example left a global mode changed"
    results = runner.summarize(verbose=False)
    if results.failed:
        pytest.fail(f"gammabeta.nn.{name}: {results.failed} of {results.attempted} doctest "
                    f"examples failed\n{report.getvalue()}", pytrace=False)
    assert results.attempted > 0


@pytest.mark.parametrize("name", PUBLIC)
def test_examples_seed_every_random_layer(name):
    """Examples are deterministic: every layer that draws random numbers gets ``rng=``."""
    code = [line for line in _doc(name).splitlines()
            if line.lstrip().startswith((">>> ", "... "))]
    for line in code:
        for m in re.finditer(r"\b(Linear|Conv1d|Conv2d|Dropout)\(", line):
            assert "rng=" in line[m.end():], f"{name}: unseeded {m.group(1)} in {line.strip()!r}"


# ----- the sections ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", PUBLIC)
def test_summary_line_and_examples_section(name):
    doc = _doc(name)
    summary = doc.splitlines()[0]
    assert summary.strip() and not _HEADING.match(doc), f"{name}: no one-line summary"
    sections = _sections(doc)
    assert "Examples" in sections, f"{name}: no Examples section (has {sorted(sections)})"
    assert re.search(r"^>>> ", sections["Examples"], re.MULTILINE), \
        f"{name}: the Examples section has no '>>> ' line"
    assert list(sections)[-1] == "Examples", f"{name}: Examples should be the last section"


@pytest.mark.parametrize("name", PUBLIC)
def test_parameters_section_names_every_argument(name):
    obj = getattr(nn, name)
    args = _signature_names(obj)
    sections = _sections(_doc(name))
    if not args:
        return
    assert "Parameters" in sections, f"{name}: takes {args} but has no Parameters section"
    missing = set(args) - _documented_names(sections["Parameters"])
    assert not missing, f"{name}: Parameters does not document {sorted(missing)}"
    extra = _documented_names(sections["Parameters"]) - set(args)
    assert not extra, f"{name}: Parameters documents {sorted(extra)}, not in the signature"


@pytest.mark.parametrize("name", [n for n in PUBLIC if _has_own_backward(getattr(nn, n))])
def test_layers_with_a_backward_document_their_shape(name):
    sections = _sections(_doc(name))
    assert "Shape" in sections, f"{name}: no Shape section"
    body = sections["Shape"]
    assert "Input" in body and "Output" in body, f"{name}: Shape should give Input and Output"


_EXAMPLE_ARGS = {"Linear": (3, 2), "Conv1d": (2, 4, 3), "Conv2d": (2, 4, 3),
                 "BatchNorm1d": (3,), "BatchNorm2d": (3,), "SyncBatchNorm": (3,)}


@pytest.mark.parametrize("name", sorted(_EXAMPLE_ARGS))
def test_attributes_list_parameters_and_buffers(name):
    layer = getattr(nn, name)(*_EXAMPLE_ARGS[name], rng=np.random.default_rng(0))
    state = set(layer._parameters) | set(layer._buffers)
    sections = _sections(_doc(name))
    assert "Attributes" in sections, f"{name}: no Attributes section"
    missing = state - _documented_names(sections["Attributes"])
    assert not missing, f"{name}: Attributes does not document {sorted(missing)}"


@pytest.mark.parametrize("name", ["BatchNorm1d", "BatchNorm2d", "SyncBatchNorm"])
def test_batchnorm_docstrings_carry_the_math(name):
    doc = _doc(name)
    compact = re.sub(r"\s+", " ", doc)
    for needle in ("√(σ² + ε)", "γ · x̂ + β", "running_mean ← (1 − momentum)",
                   "running_var ← (1 − momentum)", "unbiased", "momentum=None", "cumulative",
                   "dx = ", "eval", "eps=1e-5", "momentum=0.1", "Ioffe"):
        assert needle in compact, f"{name}: the docstring does not show {needle!r}"
    assert re.search(r"([mM])/\(\1 − 1\)", compact), f"{name}: no unbiased m/(m − 1) factor"
    assert "References" in _sections(doc)


def test_docstring_defaults_match_the_signatures():
    """``name : type, default X`` lines agree with the signature's default."""
    checked = 0
    for name in PUBLIC:
        obj = getattr(nn, name)
        body = _sections(_doc(name)).get("Parameters", "")
        try:
            params = inspect.signature(obj).parameters
        except (TypeError, ValueError):  # pragma: no cover
            continue
        for m in re.finditer(r"^(\w+) : [^\n]*?default (\S+)$", body, re.MULTILINE):
            arg, shown = m.group(1), m.group(2).rstrip(".")
            if arg not in params or params[arg].default is inspect.Parameter.empty:
                continue
            default = params[arg].default
            value = np.dtype(shown.removeprefix("numpy.")) if shown.startswith("numpy.") \
                else ast.literal_eval(shown)
            assert value == default and type(value) is type(default) or \
                isinstance(default, type) and np.dtype(default) == value, \
                f"{name}.{arg}: docstring default {shown}, signature {default!r}"
            checked += 1
    assert checked > 30


def test_griffe_parses_the_docstrings_without_warnings(caplog):
    """What mkdocstrings renders: griffe's numpy parser, unknown sections as admonitions."""
    griffe = pytest.importorskip("griffe")
    package = griffe.load("gammabeta.nn", docstring_parser="numpy", resolve_aliases=False)
    caplog.set_level(logging.WARNING, logger="griffe")
    kinds = {}
    for name in PUBLIC:
        obj = package[name]
        while obj.is_alias:
            obj = obj.final_target
        assert obj.docstring is not None, f"griffe sees no docstring for {obj.path}"
        if obj.is_attribute:  # convert_sync_batchnorm = SyncBatchNorm.convert_sync_batchnorm
            target = str(obj.value)
            assert target in obj.docstring.value, f"{name}: say where the docs are ({target})"
            obj = package[target]
        kinds[name] = [(s.kind.value, s.title) for s in obj.docstring.parse("numpy")]
        for member in obj.members.values() if obj.is_class else ():  # methods render too
            if not member.is_alias and member.docstring is not None:
                member.docstring.parse("numpy")
        assert ("examples", None) in kinds[name], f"{obj.path}: {kinds[name]}"
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert not warnings, "\n".join(warnings)
    shapes = [n for n, ks in kinds.items() if ("admonition", "Shape") in ks]
    assert "BatchNorm1d" in shapes and "Linear" in shapes
