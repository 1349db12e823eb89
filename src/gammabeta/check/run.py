"""Run a battery in a sandbox and collect the report."""

from __future__ import annotations

from ..errors import ConfigError
from .context import Abort, Ctx
from .options import CheckOptions
from .report import Finding, Report
from .sandbox import Sandbox, UserFailure

__all__ = ["run_check"]


def run_check(load: dict, target: str, opts: CheckOptions) -> Report:
    """Start the child, run every check of ``opts.kind`` and return the report."""
    from .battery import BATCHNORM_CHECKS
    from .layer import LAYER_CHECKS

    report = Report(target=target, kind=opts.kind, strict_pytorch=bool(opts.strict_pytorch),
                    seed=int(opts.seed))
    checks = BATCHNORM_CHECKS if opts.kind == "batchnorm" else LAYER_CHECKS
    with Sandbox(load, timeout=float(opts.timeout)) as sb:
        try:
            info = sb.start()
        except UserFailure as e:
            if e.kind == "config":
                raise ConfigError(f"{target}: {e.message}") from None
            report.description = "the file could not be imported"
            report.add(Finding("import", "fail", "import", e.message, details=e.tail))
            return report
        report.description = info.get("describe", "")
        ctx = Ctx(sb, opts, report, info)
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
                    raise ConfigError(f"{target}: {e.message}") from None
                report.add(Finding(key, "fail", title, e.message, details=e.tail))
                if e.kind == "timeout" and (sb.successes == 0 or sb.timeouts >= 2):
                    aborted = "an earlier call timed out"
    return report
