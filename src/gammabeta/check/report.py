"""The report: one finding per property, printed as text or JSON, with an exit code.

Statuses: ``pass``; ``fail`` (wrong math under the layer's own conventions, numerics that break
on realistic inputs, an exception, a timeout: exit code 1); ``warn`` (a robustness gap such as
NaN on a batch of one or an input changed in place: does not fail); ``note`` (a convention that
differs from PyTorch, e.g. the Keras momentum or a biased running variance, with when it
matters; ``--strict-pytorch`` makes the biased variance a failure); ``skip`` (not applicable or
not run, with the reason); ``error`` (the checker could not drive the layer or evaluate a check:
exit code 2 unless something failed).
"""

from __future__ import annotations

import json
import math
import textwrap
from dataclasses import asdict, dataclass, field

from ..io import atomic_write_text

__all__ = ["Finding", "Report", "Reports"]

_LABEL = {"pass": "PASS", "fail": "FAIL", "warn": "WARN", "note": "NOTE", "skip": "SKIP",
          "error": "ERROR"}


def _wrap(text: str, first: str, rest: str, width: int = 100) -> list[str]:
    """Wrap ``text`` to ``width`` columns after the prefixes ``first`` and ``rest``."""
    return textwrap.wrap(text, width=max(width, len(first) + 40), initial_indent=first,
                         subsequent_indent=rest, break_long_words=False,
                         break_on_hyphens=False) or [first.rstrip()]


@dataclass
class Finding:
    """One property of the layer and what the checker found.

    Attributes
    ----------
    key : str
        Stable identifier, e.g. ``"backward_dx"`` or ``"running_init"``.
    status : str
        ``pass``, ``fail``, ``warn``, ``note`` or ``skip``.
    title : str
        The property in a few words.
    message : str
        What was found, with numbers.
    cause : str, optional
        The likely cause in one sentence (for failures and warnings).
    max_error, index, got, expected : optional
        The largest error, where it is (array index) and the two values there.
    details : list of str
        Extra lines: traceback tail, NumPy warnings, hints.
    """

    key: str
    status: str
    title: str
    message: str
    cause: str | None = None
    max_error: float | None = None
    index: list | None = None
    got: float | None = None
    expected: float | None = None
    tolerance: float | None = None
    details: list = field(default_factory=list)

    def to_dict(self) -> dict:
        """A JSON-able dict (non-finite numbers as strings)."""
        d = asdict(self)
        for k in ("max_error", "got", "expected"):  # strict JSON: no NaN/Infinity literals
            if isinstance(d[k], float) and not math.isfinite(d[k]):
                d[k] = str(d[k])
        return d


@dataclass
class Report:
    """Everything one ``gammabeta check`` run found."""

    target: str
    description: str = ""
    kind: str = "batchnorm"
    strict_pytorch: bool = False
    seed: int = 0
    findings: list = field(default_factory=list)
    discovered: list = field(default_factory=list)

    def add(self, finding: Finding) -> Finding:
        """Append a finding."""
        self.findings.append(finding)
        return finding

    @property
    def failures(self) -> list:
        """The failed findings."""
        return [f for f in self.findings if f.status == "fail"]

    @property
    def warnings(self) -> list:
        """The warnings (differences from PyTorch that do not fail)."""
        return [f for f in self.findings if f.status == "warn"]

    @property
    def passed(self) -> bool:
        """True when no check failed (warnings and notes allowed)."""
        return not self.failures

    @property
    def errors(self) -> list:
        """Findings the checker could not evaluate (not verdicts on the layer)."""
        return [f for f in self.findings if f.status == "error"]

    @property
    def exit_code(self) -> int:
        """1 when a check failed, else 2 when the checker could not drive the layer, else 0."""
        return 1 if self.failures else (2 if self.errors else 0)

    def __getitem__(self, key: str) -> Finding:
        for f in self.findings:
            if f.key == key:
                return f
        raise KeyError(key)

    def __contains__(self, key: str) -> bool:
        return any(f.key == key for f in self.findings)

    # ----- output -----------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """A JSON-able dict of the whole report."""
        return {"target": self.target, "description": self.description, "kind": self.kind,
                "strict_pytorch": self.strict_pytorch, "seed": self.seed,
                "passed": self.passed, "exit_code": self.exit_code,
                "summary": self.summary(),
                "failed": [f.key for f in self.failures],
                "warned": [f.key for f in self.warnings],
                "noted": [f.key for f in self.findings if f.status == "note"],
                "errors": [f.key for f in self.errors],
                "discovered": list(self.discovered),
                "checks": [f.to_dict() for f in self.findings]}

    def to_json(self) -> str:
        """The report as JSON text."""
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)

    def summary(self) -> str:
        """One line: PASSED or FAILED with the failing keys."""
        n = sum(f.status in ("pass", "fail", "warn") for f in self.findings)
        fails, warns = self.failures, self.warnings
        w = f"; {len(warns)} warning{'s' * (len(warns) != 1)}" if warns else ""
        skipped = sum(f.status == "skip" for f in self.findings)
        w += f"; {skipped} skipped" if skipped else ""
        notes = sum(f.status == "note" for f in self.findings)
        w += f"; {notes} note{'s' * (notes != 1)}" if notes else ""
        if fails:
            keys = ", ".join(f.key for f in fails)
            return f"FAILED: {len(fails)} of {n} checks ({keys}){w}"
        if self.errors:
            return f"NOT CHECKED: {self.errors[0].message}"
        return f"PASSED: all {n} checks{w}"

    def to_text(self) -> str:
        """The report as aligned, wrapped text."""
        ref = ("reference: central finite differences" if self.kind == "layer" else
               f"reference: {self.kind.replace('_', ' ')} in float64 (PyTorch's semantics)")
        lines = [f"gammabeta check {self.target}"]
        lines += _wrap(f"{self.description}; {ref}; seed {self.seed}"
                       + ("; --strict-pytorch" if self.strict_pytorch else ""), "  ", "  ")
        for d in self.discovered:
            lines += _wrap(f"discovered: {d}", "  ", "    ")
        lines.append("")
        width = max([len(f.key) for f in self.findings] + [8])
        pad = " " * (width + 10)
        for f in self.findings:
            head = f"  {_LABEL.get(f.status, f.status.upper())}  {f.key:<{width}}  "
            lines += _wrap(f.message, head, pad)
            if f.status in ("fail", "warn") and f.max_error is not None and f.index is not None:
                text = f"largest error at index {tuple(f.index)}"
                if f.got is not None and f.expected is not None:
                    text += (f": got {f.got:.6g}, expected {f.expected:.6g} (error "
                             f"{abs(f.got - f.expected):.3g}")
                    if f.max_error != float("inf"):
                        text += f"; {f.max_error:.3g} relative to the scale"
                    text += ")"
                elif f.got is not None:
                    text += f": got {f.got:.6g}"
                lines += _wrap(text, pad, pad)
            if f.cause and f.status in ("fail", "warn", "note", "error"):
                label = "likely cause" if f.status in ("fail", "warn") else "why"
                lines += _wrap(f"{label}: {f.cause}", pad, pad + "  ")
            for d in f.details:
                lines += _wrap(d, pad, pad + "  ")
        lines += ["", self.summary()]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()

    def save(self, path) -> None:
        """Write the JSON report atomically."""
        atomic_write_text(path, self.to_json() + "\n", parents=False)


@dataclass
class Reports:
    """The reports of every target one ``gammabeta check FILE.py`` found."""

    source: str
    reports: list = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when no target failed a check."""
        return all(r.passed for r in self.reports)

    @property
    def exit_code(self) -> int:
        """The worst exit code of the reports (1 beats 2 beats 0)."""
        codes = {r.exit_code for r in self.reports}
        return 1 if 1 in codes else (2 if 2 in codes else 0)

    def __iter__(self):
        return iter(self.reports)

    def __len__(self) -> int:
        return len(self.reports)

    def __getitem__(self, i):
        return self.reports[i]

    def summary(self) -> str:
        """One line per target."""
        return "\n".join(f"{r.target}: {r.summary()}" for r in self.reports)

    def to_dict(self) -> dict:
        """A JSON-able dict: every report and the overall verdict."""
        return {"source": self.source, "passed": self.passed, "exit_code": self.exit_code,
                "reports": [r.to_dict() for r in self.reports]}

    def to_json(self) -> str:
        """The reports as JSON text."""
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)

    def to_text(self) -> str:
        """Every report, then a summary line per target."""
        parts = [r.to_text() for r in self.reports]
        if len(self.reports) > 1:
            parts.append(f"{len(self.reports)} targets in {self.source}:\n" + self.summary())
        return "\n\n".join(parts)

    def __str__(self) -> str:
        return self.to_text()

    def save(self, path) -> None:
        """Write the JSON reports atomically."""
        atomic_write_text(path, self.to_json() + "\n", parents=False)
