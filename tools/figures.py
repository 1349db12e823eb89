"""Regenerate every accuracy and timing figure of the README's results table on this machine.

``make figures`` (or ``python tools/figures.py [--seeds 5] [--mnist-dir DIR]``) trains each
row's command on seeds 0..S-1 (S >= 5), in this process, one run after another, and writes

- ``docs/results.md`` and ``docs/results.json``: per row the mean ± standard deviation (over
  seeds, ddof=1) of the test accuracy (measured once, after the last epoch; 10% of the
  training data held out for validation, as ``gammabeta train`` does by default), every seed's
  value, and the wall time per run (median and range), with the machine named;
- the table between ``<!-- figures:start -->`` and ``<!-- figures:end -->`` in README.md.

The MNIST row needs the IDX files (``--mnist-dir DIR`` holding ``t10k-images-idx3-ubyte.gz``
and ``t10k-labels-idx1-ubyte.gz``); without them it is left out and the table says so.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from gammabeta import __version__
from gammabeta.backend import kernel_info
from gammabeta.config import TrainConfig
from gammabeta.experiment import run
from gammabeta.io import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]

# (row name, the MNIST-1D paper's figure or "", the command a reader types, its options)
ROWS = [
    ("MNIST-1D, MLP", "68%", "gammabeta train", {}),
    ("MNIST-1D, CNN", "94%", "gammabeta train --model cnn", {"model": "cnn"}),
    ("MNIST-1D, paper's ConvBase + BN", "94%", "gammabeta train --model papercnn",
     {"model": "papercnn"}),
    ("MNIST-1D, paper's ConvBase, no BN", "94%", "gammabeta train --model papercnn --norm none",
     {"model": "papercnn", "norm": "none"}),
    ("scikit-learn digits, MLP", "", "gammabeta train --data digits", {"data": "digits"}),
]
MNIST_ROW = ("MNIST (the 10,000 test images split 8,333 / 1,667), CNN", "",
             "gammabeta train --data mnist --data-dir DIR --model cnn",
             {"data": "mnist", "model": "cnn"})


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import numpy

    return {"cpu": cpu, "cores": os.cpu_count(), "system": platform.platform(terse=True),
            "python": platform.python_version(), "numpy": numpy.__version__,
            "gammabeta": __version__, "kernels": kernel_info()}


def load() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def measure(rows, seeds: int, mnist_dir: str | None) -> list[dict]:
    out = []
    for name, paper, command, opts in rows:
        if opts.get("data") == "mnist":
            opts = {**opts, "data_dir": mnist_dir}
        accs, secs = [], []
        for seed in range(seeds):
            r = run(TrainConfig(**opts, seed=seed))
            accs.append(100 * r.test_accuracy)
            secs.append(r.seconds)
            print(f"  {name}, seed {seed}: {accs[-1]:.1f}%  {secs[-1]:.1f} s", flush=True)
        out.append({"row": name, "paper": paper, "command": command,
                    "mean": statistics.mean(accs), "std": statistics.stdev(accs),
                    "per_seed": [round(a, 4) for a in accs],
                    "seconds_median": statistics.median(secs),
                    "seconds_min": min(secs), "seconds_max": max(secs)})
    return out


def table(results: list[dict], seeds: int, have_mnist: bool) -> str:
    lines = ["| data, model | MNIST-1D paper (Greydanus 2020) | gammabeta test accuracy, "
             f"mean ± std over seeds 0–{seeds - 1} | per seed | time per run | command |",
             "|---|---|---|---|---|---|"]
    for r in results:
        per = ", ".join(f"{a:.1f}" for a in r["per_seed"])
        lines.append(f"| {r['row']} | {r['paper'] or '–'} | **{r['mean']:.1f} ± {r['std']:.1f}%**"
                     f" | {per} | {r['seconds_median']:.0f} s ({r['seconds_min']:.0f}–"
                     f"{r['seconds_max']:.0f}) | `{r['command']}` |")
    if not have_mnist:
        lines.append(f"| {MNIST_ROW[0]} | – | not measured in this run (no `--mnist-dir`) | | | "
                     f"`{MNIST_ROW[2]}` |")
    return "\n".join(lines)


def render(data: dict, readme: bool = True) -> str:
    """Write docs/results.md and the README's table from ``data`` (docs/results.json)."""
    info, seeds = data["machine"], data["seeds"]
    tab = table(data["rows"], seeds, any(r["row"] == MNIST_ROW[0] for r in data["rows"]))
    where = (f"Measured by `{data['command']}` on {info['date']}: {info['cpu']}, "
             f"{info['cores']} cores, Python {info['python']}, NumPy {info['numpy']}, "
             f"{info['kernels']}; load average {info['load_before']} before, "
             f"{info['load_after']} after; {info['minutes']} min in all. Time per run is the "
             "whole run (data, training, evaluation) in one process: median (range).")
    atomic_write_text(ROOT / "docs" / "results.md",
                      "# Accuracy and time\n\nTest accuracy is measured once, after the last "
                      "epoch, on the test split; 10% of each class of the training data is "
                      "held out for validation (`--val-fraction`, the per-epoch curves), as "
                      "`gammabeta train` does by default.\n\n" + tab + "\n\n" + where + "\n")
    if readme:
        text = (ROOT / "README.md").read_text(encoding="utf-8")
        start, end = "<!-- figures:start -->", "<!-- figures:end -->"
        if start in text and end in text:
            head, rest = text.split(start, 1)
            tail = rest.split(end, 1)[1]
            atomic_write_text(ROOT / "README.md", f"{head}{start}\n{tab}\n\n{where}\n{end}{tail}")
        else:
            print("README.md has no figures markers; left as it is", file=sys.stderr)
    return tab + "\n\n" + where


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=5, help="seeds 0..S-1 per row (at least 5)")
    p.add_argument("--mnist-dir", default=None, metavar="DIR",
                   help="folder with the MNIST IDX files, for the MNIST row")
    p.add_argument("--no-readme", action="store_true", help="leave README.md as it is")
    p.add_argument("--render", action="store_true",
                   help="only rewrite docs/results.md and the README from docs/results.json")
    a = p.parse_args(argv)
    if a.render:
        data = json.loads((ROOT / "docs" / "results.json").read_text(encoding="utf-8"))
        print(render(data, not a.no_readme))
        return 0
    if a.seeds < 5:
        p.error(f"--seeds={a.seeds}; expected at least 5 (the figures give a spread)")
    rows = ROWS + ([MNIST_ROW] if a.mnist_dir else [])
    info, t0, load0 = machine(), time.time(), load()
    print(f"figures on {info['cpu']} ({info['cores']} cores), {info['kernels']}", flush=True)
    results = measure(rows, a.seeds, a.mnist_dir)
    info.update(load_before=load0, load_after=load(), minutes=round((time.time() - t0) / 60, 1),
                date=time.strftime("%Y-%m-%d"))
    command = f"python tools/figures.py --seeds {a.seeds}" + (
        " --mnist-dir DIR" if a.mnist_dir else "")
    data = {"machine": info, "seeds": a.seeds, "command": command, "rows": results}
    atomic_write_text(ROOT / "docs" / "results.json", json.dumps(data, indent=2) + "\n")
    print("\n" + render(data, not a.no_readme))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
