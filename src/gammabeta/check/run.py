"""Run a battery in a sandbox for each target and collect the reports."""

from __future__ import annotations

from ..errors import ConfigError
from .context import Abort, Ctx
from .options import CheckOptions
from .report import Finding, Report
from .sandbox import Sandbox, UserFailure
from .width import width_mismatch

__all__ = ["run_check", "run_all"]


def run_all(targets, opts: CheckOptions) -> list[Report]:
    """One report per (load, target) pair, in order."""
    return [run_check(load, target, opts) for load, target in targets]


def _setup_error(report: Report, message: str, details=()) -> Report:
    """The checker could not drive the target (a constructor argument it cannot guess, ...)."""
    report.add(Finding("setup", "error", "driving the layer", message,
                       cause="give what is missing with --init-args, --kind, --shapes or the "
                             "attribute flags (see gammabeta check --help)",
                       details=list(details)))
    return report


def run_check(load: dict, target: str, opts: CheckOptions) -> Report:
    """Start the child, run every check of the target's kind and return the report."""
    from .battery import checks_for
    from .layer import LAYER_CHECKS
    from .reference import NORMS

    kind = load.get("kind", "batchnorm")
    report = Report(target=target, kind=kind, strict_pytorch=bool(opts.strict_pytorch),
                    seed=int(opts.seed))
    norm = NORMS.get(kind)
    checks = LAYER_CHECKS if norm is None else checks_for(norm)
    with Sandbox(load, timeout=float(opts.timeout), memory=opts.memory) as sb:
        try:
            info = sb.start()
        except UserFailure as e:
            if e.kind == "config":
                report.description = "the layer could not be driven"
                return _setup_error(report, e.message)
            report.description = "the file could not be imported"
            report.add(Finding("import", "fail", "import", e.message, details=e.tail))
            return report
        report.description = info.get("describe", "")
        try:
            ctx = Ctx(sb, opts, report, info, norm=norm, groups=opts.groups)
        except UserFailure as e:  # --init-args whose channels do not split into the groups
            return _setup_error(report, e.message)
        if ctx.width_note:
            report.description += f"; {ctx.width_note}"
        elif norm is not None and norm.name == "groupnorm":
            report.description += f"; C = {ctx.c} channels in G = {ctx.groups} groups"
        aborted = None
        for key, title, fn, needs_backward in checks:
            if aborted:
                report.add(Finding(key, "skip", title, f"not run: {aborted}"))
                continue
            if needs_backward and not ctx.backward_ok:
                report.add(Finding(key, "skip", title,
                                   "not run: the backward pass does not work (see backward_runs)"))
                continue
            try:
                fn(ctx)
            except Abort as e:
                aborted = str(e)
            except UserFailure as e:
                if e.kind == "config":
                    return _setup_error(report, e.message)
                mismatch = width_mismatch(ctx, e) if key == "forward_runs" else None
                if mismatch:  # fed a width the --init-args may not build: not a verdict
                    return _setup_error(report, *mismatch)
                report.add(Finding(key, "fail", title, e.message, details=e.tail))
                if key == "forward_runs":  # it does not even construct: nothing else can run
                    aborted = "the layer does not run (see forward_runs)"
                elif e.kind in ("timeout", "memory") and (sb.successes == 0 or sb.timeouts >= 2):
                    aborted = "an earlier call timed out" if e.kind == "timeout" else \
                        "an earlier call ran out of memory"
            except ConfigError:
                raise
            except Exception as e:  # noqa: BLE001 - a value the battery did not foresee
                report.add(Finding(key, "error", title, "the checker could not evaluate this "
                                   f"check ({type(e).__name__}: {e}); not a verdict on the "
                                   "layer"))
        report.discovered = list(ctx.info.get("discovered") or [])
    return report
