"""Measure ``gammabeta check`` on a corpus of real hand-written normalization layers.

The corpus is others' code, so it is never committed: build one (or use the maintainers')
outside the repository and point this script at it::

    python benchmarks/check_corpus.py --corpus ../corpus --out docs/checker-corpus.md

A corpus is a folder with ``manifest_*.jsonl`` files, one JSON object per target::

    {"path": "funcs/012_x/cs231n/layers.py",   # relative to the corpus folder
     "target": "batchnorm_forward",             # function or class name
     "backward": "batchnorm_backward_alt",      # optional, for a second backward
     "kind": "batchnorm",                       # batchnorm | batchnorm_alt | spatial_batchnorm
                                                #   | layernorm | groupnorm
     "truth": "correct" | "buggy" | "unimplemented" | "unimportable",
     "bugs": ["eval_eps_outside_sqrt", ...],    # tags below, from an independent float64
     "conventions": [...]}                      #   harness and reading the code

Every file is checked once **with no flags** (``gammabeta check FILE.py --json``); a target the
zero-flag run does not report is checked again as ``FILE.py:NAME``. Each correct or buggy
target then gets one outcome:

* ``true_pass``: correct, no FAIL;  ``false_alarm``: correct, some FAIL;
* ``right_diagnosis``: buggy, FAILs, and a failing finding names one of its bugs (the rules in
  ``RULES``: which check fails and what its cause says);  ``vague_or_wrong``: buggy, FAILs,
  but no failing finding names its bug;  ``missed``: buggy, no FAIL;
* ``not_checked``: the checker could not drive it (exit 2, a report line says why);
  ``crash``: a traceback, an unexpected exit code or a hang (120 s).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

from gammabeta.io import atomic_write_text

# bug tag -> the failing (or, for robustness tags, warning) finding that names it
RULES = {
    "forward_wrong": dict(keys={"forward_train", "forward_runs", "large_offset",
                                "tiny_variance"}),
    "no_eps": dict(keys={"tiny_variance", "forward_train"}, pat="ε|eps|constant"),
    "eps_outside_sqrt_train": dict(keys={"forward_train", "tiny_variance"},
                                   pat="standard deviation"),
    "naive_variance": dict(keys={"large_offset", "float32"}, pat=r"E\[x²\]"),
    "unbiased_var_in_forward": dict(keys={"forward_train"}, pat="unbiased"),
    "gamma_beta_missing": dict(keys={"forward_train"}, pat="γ|β"),
    "wrong_axis": dict(pat="wrong axis|per position|per sample|layer norm|batch norm|"
                           "instance norm|statistics over|statistics per"),
    "channels_scrambled": dict(pat="scrambled"),
    "wrong_grouping": dict(pat="grouping"),
    "dx_mean_path": dict(keys={"backward_dx", "gradcheck"}, pat="mean path"),
    "dx_var_path": dict(keys={"backward_dx", "gradcheck"}, pat="variance path"),
    "dx_gamma_ignored": dict(keys={"backward_dx", "gradcheck"}, pat="ignores γ"),
    "dx_wrong_other": dict(keys={"backward_dx", "gradcheck", "backward_runs"}),
    "dx_wrong_shape": dict(keys={"backward_runs"}, pat="shape"),
    "dx_none": dict(keys={"backward_runs"}, pat="None"),
    "dgamma_wrong": dict(keys={"backward_dgamma", "gradcheck", "backward_runs"}),
    "dbeta_wrong": dict(keys={"backward_dbeta", "gradcheck", "backward_runs"}),
    "dgamma_dbeta_averaged": dict(pat="averaged"),
    "eval_batch_stats": dict(keys={"eval_mode", "eval_after_training", "train_eq_eval"},
                             pat="batch statistics|batch-statistics"),
    "eval_eps_outside_sqrt": dict(keys={"eval_mode", "eval_after_training"},
                                  pat="outside the square root"),
    "eval_no_eps": dict(keys={"eval_mode", "eval_after_training", "tiny_variance"},
                        pat="ε is missing"),
    "eval_no_gamma_beta": dict(keys={"eval_mode", "eval_after_training"}, pat="drops"),
    "eval_wrong_other": dict(keys={"eval_mode", "eval_after_training", "train_eq_eval"}),
    "eval_eps_mismatch": dict(keys={"eval_mode", "eval_after_training"}),
    "running_not_stored": dict(keys={"running_stats"}),
    "running_last_batch": dict(keys={"running_stats"}, pat="last batch|current batch"),
    "running_wrong_update": dict(keys={"running_stats", "momentum_convention", "running_init",
                                       "eval_after_training"}),
    "momentum_ignored": dict(keys={"momentum_convention"}, pat="ignored|no effect"),
    "raises": dict(keys={"forward_runs", "backward_runs", "import"}),
    "nan_batch_of_one": dict(keys={"batch_of_one"}, statuses=("fail", "warn")),
    "input_mutated": dict(keys={"inputs_unchanged"}, statuses=("fail", "warn")),
    "param_grads_missing": dict(keys={"backward_runs"}, pat="dgamma|dbeta|dγ|dβ"),
}
ROBUSTNESS = {"nan_batch_of_one", "input_mutated"}
OUTCOMES = ("true_pass", "false_alarm", "right_diagnosis", "vague_or_wrong", "missed",
            "not_checked", "crash")


def names_bug(findings, keys=None, pat=None, statuses=("fail",)) -> bool:
    """Does a finding with one of ``statuses`` (and ``keys``) say ``pat``?"""
    for f in findings:
        if f["status"] not in statuses or (keys and f["key"] not in keys):
            continue
        text = " ".join([f.get("message") or "", f.get("cause") or ""] + f.get("details", []))
        if pat is None or re.search(pat, text, re.IGNORECASE):
            return True
    return False


def run_check(gammabeta: str, args: list, cwd: Path, timeout: float = 120.0):
    """(JSON or None, what went wrong, seconds) for one ``gammabeta check`` invocation."""
    t0 = time.perf_counter()
    try:
        p = subprocess.run([gammabeta, "check", *args, "--json"], capture_output=True,
                           text=True, timeout=timeout, cwd=cwd)
    except subprocess.TimeoutExpired:
        return None, "crash: hang", time.perf_counter() - t0
    dt = time.perf_counter() - t0
    if p.returncode not in (0, 1, 2) or "Traceback" in p.stderr:
        return None, f"crash: exit {p.returncode}: {p.stderr.strip()[-300:]}", dt
    try:
        return json.loads(p.stdout), "", dt
    except json.JSONDecodeError:
        return None, f"usage: {p.stderr.strip()[-300:]}", dt


def classify(entry: dict, report: dict) -> str:
    """The outcome of one correct or buggy target, from its report."""
    checks = report["checks"]
    failed = any(f["status"] == "fail" for f in checks)
    errored = any(f["status"] == "error" for f in checks)
    if entry["truth"] == "correct":
        return "false_alarm" if failed else ("not_checked" if errored else "true_pass")
    hit = any(names_bug(checks, **RULES[t]) for t in entry.get("bugs", []) if t in RULES)
    if not failed:
        if hit and ROBUSTNESS & set(entry.get("bugs", [])):
            return "right_diagnosis"  # a robustness gap reported as WARN
        return "not_checked" if errored else "missed"
    return "right_diagnosis" if hit else "vague_or_wrong"


def measure(corpus: Path, gammabeta: str) -> list[dict]:
    """One result per correct or buggy manifest entry."""
    entries = [json.loads(line) for m in sorted(corpus.glob("manifest_*.jsonl"))
               for line in m.read_text().splitlines() if line.strip()]
    by_file = defaultdict(list)
    for e in entries:
        if e["truth"] in ("correct", "buggy"):
            by_file[e["path"]].append(e)
    results = []
    for path, es in sorted(by_file.items()):
        data, err, dt = run_check(gammabeta, [path], corpus)
        reports = {r["target"].rsplit(":", 1)[1]: r for r in (data or {}).get("reports", [])}
        per_target = dt / max(1, len(reports))
        for e in es:
            alt = e.get("backward") or ""
            key = e["target"] + (f" + {alt}" if alt.endswith("_alt") else "")
            report, zero, secs, why = reports.get(key), True, per_target, err
            if report is None:
                zero = False
                args = [f"{path}:{e['target']}"] + (["--backward", alt] if alt else [])
                report, why, secs = run_check(gammabeta, args, corpus)
            if report is None:
                outcome = "crash" if why.startswith("crash") else "not_checked"
                results.append(dict(e, outcome=outcome, zero_flag=False, secs=secs, detail=why))
                continue
            bad = [f for f in report["checks"] if f["status"] in ("fail", "error")]
            detail = "; ".join(
                f"{f['key']}: {(f['message'] if f['status'] == 'error' else f.get('cause') or f['message'])[:160]}"  # noqa: E501
                for f in bad)
            results.append(dict(e, outcome=classify(e, report), zero_flag=zero, secs=secs,
                                detail=detail))
    return results


def render(results: list[dict], corpus: Path) -> str:
    """A Markdown report: counts by outcome and kind, zero-flag share, time, every miss."""
    c = Counter(r["outcome"] for r in results)
    n_correct = sum(r["truth"] == "correct" for r in results)
    n_buggy = len(results) - n_correct
    secs = [r["secs"] for r in results]
    lines = [
        "# `gammabeta check` on real code",
        "",
        f"Generated by `python benchmarks/check_corpus.py --corpus {corpus.name}` on "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, Python "
        f"{platform.python_version()}, {platform.machine()}, {os.cpu_count()} cores.",
        "",
        f"{len(results)} targets ({n_correct} correct, {n_buggy} buggy) in "
        f"{len({r['path'] for r in results})} files.",
        "",
        "| outcome | targets |",
        "|---|---|",
    ]
    lines += [f"| {o} | {c.get(o, 0)} |" for o in OUTCOMES]
    zero = sum(r["zero_flag"] for r in results)
    lines += ["", f"Checked with no flag at all: {zero} of {len(results)} "
                  f"({100 * zero / max(1, len(results)):.1f}%).",
              f"Seconds per target (file wall time / targets): median "
              f"{statistics.median(secs):.2f}, max {max(secs):.2f}.", "",
              "| kind | correct: pass / false alarm | buggy: right / vague / missed |",
              "|---|---|---|"]
    for kind in sorted({r["kind"] for r in results}):
        k = Counter(r["outcome"] for r in results if r["kind"] == kind)
        lines.append(f"| {kind} | {k['true_pass']} / {k['false_alarm']} | "
                     f"{k['right_diagnosis']} / {k['vague_or_wrong']} / {k['missed']} |")
    lines += ["", "## Every target not counted as a true pass or a right diagnosis", ""]
    for r in results:
        if r["outcome"] not in ("true_pass", "right_diagnosis"):
            lines.append(f"- **{r['outcome']}** `{r['path']}:{r['target']}` ({r['truth']}"
                         f"{', bugs: ' + ', '.join(r['bugs']) if r.get('bugs') else ''}): "
                         f"{r['detail'][:300] or 'no failing check'}")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", type=Path, required=True, help="folder with manifest_*.jsonl")
    p.add_argument("--out", type=Path, help="write the Markdown report here")
    p.add_argument("--json", type=Path, help="write every result here")
    p.add_argument("--gammabeta", default=str(Path(sys.executable).with_name("gammabeta")))
    a = p.parse_args(argv)
    if not any(a.corpus.glob("manifest_*.jsonl")):
        p.error(f"--corpus {a.corpus}: no manifest_*.jsonl there")
    results = measure(a.corpus.resolve(), a.gammabeta)
    text = render(results, a.corpus)
    print(text)
    if a.out:
        atomic_write_text(a.out, text)
    if a.json:
        atomic_write_text(a.json, json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
