"""Whole-command benchmark: wall and CPU time of gammabeta's commands and their PyTorch twins.

Every command runs as its own process from the repository root (the venv's executables, beside
``sys.executable``) into a fresh output folder in a temporary directory; stdout is discarded,
stderr shown if it fails. Wall time: ``time.perf_counter()`` around ``Popen`` + ``os.wait4``;
CPU time: the user + system time ``wait4`` reports for that child, which includes the
descendants it waited for (a study's workers, the checker's sandbox), never the harness's
own or the busy processes'.

Rounds alternate: each of ``--repeats`` rounds runs every selected command once, starting
with the next command in turn and walking the list forwards (even rounds) or backwards (odd).
Conditions: ``quiet`` (nothing else started; the 1-minute load average is printed, with a
warning above 0.5) and ``load`` (two ``while True: pass`` processes throughout, killed and
reaped after). Reported: median and min-max of wall and CPU per command; for mlp and cnn the
gammabeta/PyTorch ratios (wall, CPU) and gammabeta with/without its JIT kernels (wall).
``gammabeta train`` also draws ``curves.png`` (``torch_train.py`` draws nothing): that cost is
charged to gammabeta. :func:`standard` (what ``make bench`` runs) adds :func:`fresh_clone`:
the first runs after ``make install`` in a new clone.

Usage: ``python benchmarks/commands.py [--repeats R] [--only NAME,...] [--conditions
quiet,load] [--epochs N] [--json OUT.json]``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

from gammabeta.io import atomic_write_text

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CHECK_FILE = "examples/broken_batchnorm/eval_eps_outside_sqrt.py"
NAMES = ("gb mlp", "gb mlp, JIT off", "torch mlp", "gb cnn", "gb cnn, JIT off", "torch cnn",
         "gb study", "gb check", "gb --help")
CONDITIONS = ("quiet", "load")
BUSY = 2  # busy processes of the "load" condition


class CommandFailed(RuntimeError):
    """A benchmarked command exited with a status it should not have."""


def command(name: str, out: Path, epochs=None) -> tuple[list[str], dict, tuple]:
    """``(argv, extra environment, accepted exit codes)`` of the command called ``name``;
    ``epochs``: an override for every training command, or one per model (a dict)."""
    gb, py = str(BIN / "gammabeta"), sys.executable
    model = "cnn" if "cnn" in name else "mlp"
    if isinstance(epochs, dict):
        epochs = epochs.get(model)
    ep = [] if epochs is None else ["--epochs", str(epochs)]
    if name in ("gb mlp", "gb cnn", "gb mlp, JIT off", "gb cnn, JIT off"):
        env = {"GAMMABETA_JIT": "off"} if "JIT off" in name else {}
        flags = ["--model", "cnn"] if model == "cnn" else []  # mlp: the default model
        return [gb, "train", *flags, *ep, "--out", str(out), "--quiet"], env, (0,)
    if name in ("torch mlp", "torch cnn"):
        return [py, "benchmarks/torch_train.py", "--model", model, *ep, "--out", str(out)], {}, (0,)
    if name == "gb study":
        return [gb, "study", "run", "gamma-beta", "--quick", "--out", str(out), "--quiet"], {}, (0,)
    if name == "gb check":  # exit code 1: the checker found the bug planted in the file
        return [gb, "check", CHECK_FILE], {}, (0, 1)
    if name == "gb --help":
        return [gb, "--help"], {}, (0,)
    raise ValueError(f"unknown command {name!r}; expected one of: {'; '.join(NAMES)}")


def parse_names(text: str) -> list[str]:
    """``"gb mlp, JIT off,torch mlp"`` -> the names (some names contain a comma)."""
    names: list[str] = []
    for piece in (p.strip() for p in text.split(",")):
        if names and f"{names[-1]}, {piece}" in NAMES:
            names[-1] = f"{names[-1]}, {piece}"
        elif piece:
            names.append(piece)
    bad = [n for n in names if n not in NAMES]
    if bad:
        raise ValueError(f"unknown command(s) {bad}; expected: {'; '.join(NAMES)}")
    return names


def time_run(argv: list[str], extra_env: dict, ok: tuple = (0,), label: str = "") -> dict:
    """Run ``argv`` from the repository root; its wall and CPU seconds, peak RSS, exit code."""
    env = {k: v for k, v in os.environ.items() if k != "GAMMABETA_JIT"}
    env.update(extra_env)
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err)
        try:
            _, status, ru = os.wait4(proc.pid, 0)
        except BaseException:  # interrupted: leave no command running behind
            proc.kill()
            proc.wait()
            raise
        wall = time.perf_counter() - t0
        proc.returncode = rc = os.waitstatus_to_exitcode(status)  # reaped: Popen must not wait
        if rc not in ok:
            err.seek(0)
            tail = err.read().decode(errors="replace")[-4000:]
            raise CommandFailed(f"{label or argv[0]} failed (exit code {rc}; expected "
                                f"{' or '.join(map(str, ok))})\n  command: "
                                f"{' '.join(argv)}\n  stderr:\n{tail}")
    return {"wall": wall, "cpu": ru.ru_utime + ru.ru_stime, "user": ru.ru_utime,
            "system": ru.ru_stime, "maxrss_mib": ru.ru_maxrss / 1024, "rc": rc}


def round_order(names: list[str], r: int) -> list[str]:
    """Round ``r``: starts at command ``r mod n``, then forwards (even r) or backwards."""
    k = r % len(names)
    rest = names[k + 1:] + names[:k]
    return [names[k], *(rest if r % 2 == 0 else rest[::-1])]


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def _spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def ratios(summary: dict) -> dict:
    """gammabeta/PyTorch (wall, CPU) and gammabeta/gammabeta-without-JIT (wall), by medians."""
    out = {}
    for m in ("mlp", "cnn"):
        gb, off, pt = (summary.get(k) for k in (f"gb {m}", f"gb {m}, JIT off", f"torch {m}"))
        r = {}
        if gb and pt:
            r["wall gb/torch"] = gb["wall"]["median"] / pt["wall"]["median"]
            r["cpu gb/torch"] = gb["cpu"]["median"] / pt["cpu"]["median"]
        if gb and off:
            r["wall gb/gb JIT off"] = gb["wall"]["median"] / off["wall"]["median"]
        if r:
            out[m] = r
    return out


def run_condition(names: list[str], condition: str, repeats: int, tmp: Path,
                  epochs=None) -> dict:
    """``repeats`` alternating rounds of ``names`` under ``condition``: samples and summary."""
    busy: list[subprocess.Popen] = []
    load = os.getloadavg()
    print(f"== {condition}: 1-minute load average {load[0]:.2f}", flush=True)
    if condition == "quiet" and load[0] > 0.5:
        print(f"   warning: load average {load[0]:.2f} > 0.5: not a quiet machine", flush=True)
    runs: dict[str, list[dict]] = {n: [] for n in names}
    orders = []
    try:
        if condition == "load":
            busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"],
                                     stdin=subprocess.DEVNULL) for _ in range(BUSY)]
            time.sleep(1.0)  # both are spinning before the first timed command starts
        for r in range(repeats):
            orders.append(round_order(names, r))
            for name in orders[-1]:
                out = tmp / f"{condition}-{r}-{name.replace(' ', '_').replace(',', '')}"
                argv, env, ok = command(name, out, epochs)
                res = time_run(argv, env, ok, f"{name!r} ({condition}, round {r + 1})")
                if (out / "metrics.json").is_file():  # a training run: accuracy, kernel mode
                    metrics = json.loads((out / "metrics.json").read_text())
                    res["test_accuracy"] = metrics.get("test_accuracy")
                    res["jit"] = metrics.get("jit")
                runs[name].append({"round": r + 1, **res})
                shutil.rmtree(out, ignore_errors=True)
                acc = res.get("test_accuracy")
                print(f"   round {r + 1}/{repeats}  {name:<16} wall {res['wall']:7.2f} s  "
                      f"CPU {res['cpu']:7.2f} s" + (f"  test accuracy {acc:.2%}" if acc else ""),
                      flush=True)
    finally:
        for p in busy:  # killed and reaped; wait4 on the commands' pids never counted them
            p.kill()
            p.wait()
    summary = {n: {"wall": _spread([s["wall"] for s in v]), "cpu": _spread([s["cpu"] for s in v]),
                   "maxrss_mib": max(s["maxrss_mib"] for s in v)} for n, v in runs.items()}
    return {"busy_processes": BUSY if condition == "load" else 0, "loadavg_before": list(load),
            "loadavg_after": list(os.getloadavg()), "orders": orders, "runs": runs,
            "summary": summary, "ratios": ratios(summary)}


def _version(pkg: str) -> str | None:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def machine() -> dict:
    """CPU model, cores and the versions that matter."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    model = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "")
    return {"cpu": model or platform.processor() or "unknown", "processor": platform.processor(),
            "cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)),
            "platform": platform.platform(), "python": platform.python_version(),
            **{pkg: _version(pkg) for pkg in ("numpy", "torch", "numba", "gammabeta")}}


def run_commands(names=NAMES, conditions=CONDITIONS, repeats: int = 3, epochs=None) -> dict:
    """Time ``names`` under each of ``conditions``; everything as one JSON-able dict."""
    names, conditions = list(dict.fromkeys(names)), list(dict.fromkeys(conditions))
    if any(c not in CONDITIONS for c in conditions):
        raise ValueError(f"unknown condition in {conditions}; expected quiet and/or load")
    if repeats < 1 or not names:
        raise ValueError("need at least one command and one repeat")
    if not (BIN / "gammabeta").exists():
        raise FileNotFoundError(f"{BIN / 'gammabeta'} not found; run with the venv's python")
    result = {"date": _now(), "machine": machine(), "repeats": repeats, "epochs": epochs,
              "cwd": str(ROOT),
              "commands": {n: dict(zip(("argv", "env", "ok_exit_codes"),
                                       command(n, Path("TMP"), epochs), strict=True))
                           for n in names},
              "conditions": {}}
    with tempfile.TemporaryDirectory(prefix="gb-commands-") as tmp:
        for c in conditions:
            result["conditions"][c] = run_condition(names, c, repeats, Path(tmp), epochs)
    return result


# What `make bench` runs (benchmarks/run.py): every command on a quiet machine, the default
# recipes, 3 rounds (the study once: 1.5 minutes); under load the training commands also with
# their kernels off, for a tenth of the epochs (PyTorch's default 2 threads on 2 busy cores
# take ~10 s an epoch); then the first runs of a fresh clone.
QUIET = ["gb mlp", "torch mlp", "gb cnn", "torch cnn", "gb check", "gb --help"]
LOAD = ["gb mlp", "gb mlp, JIT off", "torch mlp", "gb cnn", "gb cnn, JIT off", "torch cnn",
        "gb check", "gb --help"]
LOAD_EPOCHS = {"mlp": 10, "cnn": 4}


def standard(repeats: int = 3) -> dict:
    """The whole-command part of ``make bench``: quiet, under load, and a fresh clone."""
    result = {"date": _now(), "machine": machine(), "repeats": repeats,
              "load_epochs": LOAD_EPOCHS, "commands": command_lines(), "conditions": {}}
    with tempfile.TemporaryDirectory(prefix="gb-commands-") as tmp:
        quiet = run_condition(QUIET, "quiet", repeats, Path(tmp))
        study = run_condition(["gb study"], "quiet", 1, Path(tmp))
        for key in ("runs", "summary"):
            quiet[key].update(study[key])
        result["conditions"]["quiet"] = quiet
        result["conditions"]["load"] = run_condition(LOAD, "load", repeats, Path(tmp),
                                                     LOAD_EPOCHS)
    result["first_run"] = fresh_clone()
    return result


def command_lines() -> dict:
    """Per condition of :func:`standard`, each command's argv, environment and exit codes."""
    return {cond: {n: dict(zip(("argv", "env", "ok_exit_codes"),
                               command(n, Path("TMP"), epochs), strict=True)) for n in names}
            for cond, names, epochs in (("quiet", QUIET + ["gb study"], None),
                                        ("load", LOAD, LOAD_EPOCHS))}


def fresh_clone() -> dict:
    """A fresh clone of this repository's HEAD: ``make install`` (which compiles the kernels
    and caches MNIST-1D), then ``gammabeta train`` (the default MLP) and ``gammabeta train
    --model cnn`` (the kernels' model), each run twice: the first run's extra cost."""
    out = {"commands": [], "note": "clone of HEAD; PYTHON = this interpreter; "
           "GAMMABETA_CACHE = a new empty folder"}
    with tempfile.TemporaryDirectory(prefix="gb-clone-") as tmp:
        repo, cache = Path(tmp) / "gammabeta", Path(tmp) / "cache"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(repo)], check=True)
        env = {**os.environ, "GAMMABETA_CACHE": str(cache)}
        env.pop("GAMMABETA_JIT", None)
        t0 = time.perf_counter()
        subprocess.run(["make", "install", f"PYTHON={sys.executable}"], cwd=repo, env=env,
                       check=True, stdout=subprocess.DEVNULL)
        out["install_s"] = time.perf_counter() - t0
        gb = str(repo / ".venv" / "bin" / "gammabeta")
        for flags in ([], ["--model", "cnn"]):
            runs = [time_run([gb, "train", *flags, "--out", str(Path(tmp) / f"{len(flags)}-{i}"),
                              "--quiet"], {"GAMMABETA_CACHE": str(cache)}, (0,),
                             f"fresh clone, run {i}") for i in (1, 2)]
            out["commands"].append({"command": " ".join(["gammabeta train", *flags]),
                                    "first": runs[0], "second": runs[1],
                                    "extra_s": runs[0]["wall"] - runs[1]["wall"]})
            print(f"fresh clone: gammabeta train {' '.join(flags)}: first {runs[0]['wall']:.1f} s,"
                  f" second {runs[1]['wall']:.1f} s", flush=True)
    return out


def table(result: dict) -> str:
    """The readable report of :func:`run_commands`' result."""
    lines = []
    for c, res in result["conditions"].items():
        lines += ["", f"{c} (load average before {res['loadavg_before'][0]:.2f}, after "
                      f"{res['loadavg_after'][0]:.2f}; {result['repeats']} rounds)",
                  f"  {'command':<16} {'wall median [min-max] s':>26} "
                  f"{'CPU median [min-max] s':>26} {'CPU/wall':>8}"]
        for name, s in res["summary"].items():
            w, u = s["wall"], s["cpu"]
            lines.append(f"  {name:<16} {w['median']:8.2f} [{w['min']:6.2f}-{w['max']:6.2f}]"
                         f"     {u['median']:8.2f} [{u['min']:6.2f}-{u['max']:6.2f}]"
                         f"     {u['median'] / w['median']:8.2f}")
        for m, r in res["ratios"].items():
            lines.append(f"  {m}: " + ", ".join(f"{k} {v:.2f}" for k, v in r.items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line: see the module docstring."""
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--repeats", type=int, default=3, help="rounds (default 3)")
    p.add_argument("--only", default=None, help="commands, comma-separated; one of: "
                   + "; ".join(NAMES))
    p.add_argument("--conditions", default="quiet,load", help="quiet, load or both")
    p.add_argument("--epochs", type=int,
                   help="pass --epochs N to the gb and torch training commands (smoke runs)")
    p.add_argument("--json", type=Path, help="write every figure here")
    a = p.parse_args(argv)
    if a.repeats < 1 or (a.epochs is not None and a.epochs < 1):
        p.error("--repeats and --epochs must be >= 1")
    try:
        names = parse_names(a.only) if a.only is not None else list(NAMES)
        conds = [c.strip() for c in a.conditions.split(",") if c.strip()]
        result = run_commands(names, conds, a.repeats, a.epochs)
        print(table(result))
    except (CommandFailed, ValueError, FileNotFoundError) as e:
        print(f"commands.py: {e}", file=sys.stderr)
        return 1
    if a.json is not None:
        atomic_write_text(a.json, json.dumps(result, indent=2) + "\n")
        print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
