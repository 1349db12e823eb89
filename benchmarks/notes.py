"""Renders docs/benchmarks.md from a run's results (the prose, method and what was tried, is in
``notes_text.py``)."""

from __future__ import annotations

from notes_text import METHOD, TRIED


def _ratio(r: dict) -> float:
    return r["gb"]["median_s"] / r["torch"]["median_s"]


def acceptance(res: dict) -> list[str]:
    """The issue's targets, checked against this run (✔ met, ✘ missed, with the figure)."""
    cases = {r["name"]: r for r in res["cases"]}
    out = []

    def check(ok: bool, text: str) -> None:
        out.append(f"- {'✔' if ok else '✘'} {text}")

    main = cases.get("BatchNorm2d (64, 64, 32, 32) forward+backward")
    if main:
        floor = main["gb"]["median_s"] / main["floor_s"]
        check(_ratio(main) <= 0.5 and floor <= 2.5,
              f"BatchNorm2d (64, 64, 32, 32) forward+backward ≤ 0.5× PyTorch and ≤ 2.5× the "
              f"memory floor: {_ratio(main):.2f}× PyTorch, {floor:.2f}× the floor")
    bn = [r for r in res["cases"] if r["group"] == "BatchNorm"]
    worst = max(bn, key=_ratio, default=None)
    if worst:
        over = [f"{r['name']} {_ratio(r):.2f}×" for r in bn if _ratio(r) > 1.0]
        check(not over, "every BatchNorm case ≤ 1.0× PyTorch: "
              + ("all are" if not over else "over: " + "; ".join(over)))
    fb = [r for r in res["cases"] if r["group"] == "LayerNorm/GroupNorm"
          and "forward+backward" in r["name"]]
    if fb:
        over = [f"{r['name']} {_ratio(r):.2f}×" for r in fb if _ratio(r) > 1.0]
        check(not over, "every LayerNorm/GroupNorm/InstanceNorm forward+backward ≤ 1.0× PyTorch "
              "(issue #15): " + ("all are (" + "; ".join(f"{_ratio(r):.2f}×" for r in fb) + ")"
                                 if not over else "over: " + "; ".join(over)))
    for r in res["cases"]:
        if r["group"] == "Training step":
            limit = 1.5 if "CNN" in r["name"] else 1.0
            check(_ratio(r) <= limit, f"{r['name']} ≤ {limit}× PyTorch: {_ratio(r):.2f}×")
    for m in res["memory"]:
        ratio = m["gb_mb"] / max(m["torch_mb"], 1e-9)
        check(ratio <= 1.2, f"peak memory of {m['case']} ≤ 1.2× PyTorch: {ratio:.2f}×")
    commands_acceptance(res, check)
    for r in res["cases"]:
        if "flops" in r and "MLP" in r["name"]:
            g = r["gb"]["median_s"]
            best = (f"{g / r['gemm_best_s']:.2f}× each product's best time alone, "
                    if "gemm_best_s" in r else "")
            check(g <= 1.5 * r["gemm_floor_s"],
                  f"{r['name']} ≤ 1.5× its compute floor (issue #17): "
                  f"{g / r['gemm_floor_s']:.2f}× its GEMMs alone (same rounds), {best}"
                  f"{g / r['peak_floor_s']:.2f}× its FLOPs at the peak GEMM rate")
    return out


def floor_section(res: dict) -> list[str]:
    """Each training step against its compute floor (benchmarks/flops.py)."""
    steps = [r for r in res["cases"] if "flops" in r]
    rates = res.get("gemm_rates")
    if not steps or not rates:
        return []
    lines = ["", "## Training steps against their compute floor", "",
             f"Single-precision GEMM rate of this machine (a 2048³ product, best of 7): NumPy's "
             f"BLAS {rates['numpy_gflops']:.0f} GFLOP/s, PyTorch {rates['torch_gflops']:.0f} "
             "GFLOP/s. A step's FLOPs are those of its matrix products (forward, dW, and dx "
             "except the first layer's; convolutions as im2col GEMMs). *GEMMs alone*: NumPy's "
             "time for the step's own products run back to back — small products run below "
             "the peak rate, so this is the floor a NumPy step can reach — timed in the same "
             "alternating rounds as the steps (median), so the machine's minute-to-minute "
             "speed changes the floor and the step alike; *best alone*: each product timed "
             "on its own, best of 5, summed (the floor of earlier reports); *at peak*: the "
             "FLOPs at the better of the two rates above.", "",
             "| step | MFLOP | GEMMs alone ms | best alone ms | at peak ms | gammabeta ms | "
             "gammabeta / GEMMs alone | gammabeta / best alone | gammabeta / at peak | "
             "PyTorch / GEMMs alone |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in steps:
        g, t, f = r["gb"]["median_s"], r["torch"]["median_s"], r["gemm_floor_s"]
        best = r.get("gemm_best_s")
        lines.append(f"| {r['name'].removeprefix('train step: ')} | {r['flops'] / 1e6:.0f} | "
                     f"{_ms(f)} | {_ms(best) if best else '–'} | {_ms(r['peak_floor_s'])} | "
                     f"{_ms(g)} | {g / f:.2f} | {f'{g / best:.2f}' if best else '–'} | "
                     f"{g / r['peak_floor_s']:.2f} | {t / f:.2f} |")
    return lines


def commands_section(res: dict) -> list[str]:
    """Whole commands, quiet and under load (benchmarks/commands.py)."""
    c = res.get("commands")
    if not c:
        return []
    lines = ["", "## Whole commands: gammabeta vs a PyTorch script of the same recipe", "",
             "Each command is its own process (`benchmarks/commands.py`): wall time and the CPU "
             "time `wait4` reports for it (its children included), median [min–max] of "
             f"{c['repeats']} alternating rounds. *PyTorch*: `benchmarks/torch_train.py`, the "
             "same recipe written in `torch.nn` (same data and validation split, model, AdamW "
             "groups, one-cycle schedule, batches, a checkpoint every epoch, metrics and "
             "weights at the end; PyTorch's default threads); it draws no `curves.png`, "
             "which gammabeta's time includes. *Under load*: two `while True: pass` processes "
             f"on the {c['machine']['cores']} cores throughout, and the training commands run "
             f"{c['load_epochs']['mlp']} (MLP) and {c['load_epochs']['cnn']} (CNN) epochs "
             "instead of 100 and 40 (PyTorch's two threads take ~10 s an epoch there); "
             "*JIT off*: `GAMMABETA_JIT=off`.", ""]
    for cond, title in (("quiet", "Quiet machine"), ("load", "Two busy processes")):
        r = c["conditions"].get(cond)
        if not r:
            continue
        lines += [f"**{title}** (1-minute load average {r['loadavg_before'][0]:.2f} before, "
                  f"{r['loadavg_after'][0]:.2f} after)", "",
                  "| command | wall s | CPU s |", "| --- | --- | --- |"]
        for name, sm in r["summary"].items():
            w, u = sm["wall"], sm["cpu"]
            argv = " ".join(c["commands"][cond][name]["argv"][1:]).replace(" --out TMP", "")
            lines.append(f"| {name} (`{argv}`) | {w['median']:.2f} [{w['min']:.2f}–"
                         f"{w['max']:.2f}] | {u['median']:.2f} [{u['min']:.2f}–"
                         f"{u['max']:.2f}] |")
        lines += [""] + [f"- {m}: " + ", ".join(f"{k} **{v:.2f}**" for k, v in q.items())
                         for m, q in r["ratios"].items()] + [""]
    first = c.get("first_run")
    if first:
        lines += ["**First run of a fresh clone** (`git clone`, `make install` in "
                  f"{first['install_s']:.0f} s: it compiles the kernels and generates "
                  "MNIST-1D, then each command twice):", ""]
        lines += [f"- `{x['command']}`: first {x['first']['wall']:.1f} s, second "
                  f"{x['second']['wall']:.1f} s: **{x['extra_s']:+.1f} s**"
                  for x in first["commands"]]
    return lines


def commands_acceptance(res: dict, check) -> None:
    """Issue #17's targets on whole commands."""
    c = res.get("commands")
    if not c:
        return
    q, ld = c["conditions"]["quiet"], c["conditions"]["load"]
    for m in ("mlp", "cnn"):
        r = q["ratios"][m]["wall gb/torch"]
        check(r <= 0.8, f"quiet: default {m.upper()} `gammabeta train` ≤ 0.8× PyTorch's wall "
              f"time: {r:.2f}×")
        lr = ld["ratios"][m]
        check(lr["wall gb/torch"] <= 1.0 and lr["cpu gb/torch"] <= 1.0,
              f"two busy processes: {m.upper()} ≤ 1.0× PyTorch's wall and CPU time: "
              f"{lr['wall gb/torch']:.2f}× and {lr['cpu gb/torch']:.2f}×")
        modes = {s.get("jit") for s in ld["runs"].get(f"gb {m}", [])}
        if modes == {"off"}:  # jit_plan kept the run on NumPy: the same code as JIT off
            check(True, f"two busy processes: {m.upper()} with the kernels no slower than "
                  f"without: the run was too short for the kernels to pay, so it ran the NumPy "
                  f"path in both (`\"jit\": \"off\"` in its metrics.json); measured "
                  f"{lr['wall gb/gb JIT off']:.2f}× (noise between identical runs)")
        else:
            check(lr["wall gb/gb JIT off"] <= 1.0, f"two busy processes: {m.upper()} with the "
                  f"kernels no slower than without: {lr['wall gb/gb JIT off']:.2f}×")
    for x in c.get("first_run", {}).get("commands", []):
        check(x["extra_s"] <= 5.0, f"fresh clone: the first `{x['command']}` ≤ 5 s slower "
              f"than the second: {x['extra_s']:+.1f} s")
    h = q["summary"].get("gb --help")
    if h:
        check(h["wall"]["median"] < 0.5, f"`gammabeta --help` under 0.5 s: "
              f"{h['wall']['median']:.2f} s")


def _ms(s: float) -> str:
    return f"{s * 1e3:.3f}" if s < 0.1 else f"{s * 1e3:.1f}"


def _load(res: dict, when: str) -> str:
    vals = res.get("load_average", {}).get(when)
    return ", ".join(f"{v:.2f}" for v in vals) if vals else "n/a"


def render(res: dict) -> str:
    env = res["environment"]
    bw = res["copy_bandwidth_gbs"]
    lines = [
        "# Benchmarks: gammabeta vs PyTorch on the CPU",
        "",
        "Generated by `make bench` (`benchmarks/run.py`); raw numbers in `benchmarks.json`. "
        "Do not edit by hand.",
        "",
        f"* Date: {res['date']}",
        f"* Machine: {env['machine']}; CPU: {env['cpu']}; {env['cores']} cores; "
        f"{env['threads']} threads for both frameworks",
        f"* Python {env['python']}; NumPy {env['numpy']} with {env['numpy_blas']}; "
        f"PyTorch {env['torch']} ({env['torch_blas']})",
        f"* gammabeta kernels: {env['gammabeta_kernels']}",
        f"* OpenBLAS environment: {env['openblas_env']}",
        f"* Copy bandwidth (np.copyto 256 MiB, read + write): {bw['before'][0]:.1f} GB/s before,"
        f" {bw['after'][0]:.1f} GB/s after the cases; the floor uses {bw['used']:.1f} GB/s",
        f"* Load average (1, 5, 15 min) before: {_load(res, 'before')}, after: "
        f"{_load(res, 'after')} (other processes share the cores: every figure is noisier "
        "the higher this is)",
        "",
        "## Results",
        "",
        "Times per call: median [IQR]. Ratio = gammabeta / PyTorch (< 1: gammabeta faster).",
        "",
    ]
    np_col = res.get("kernels", False)
    if np_col:
        lines += ["The last column times gammabeta with its Numba kernels switched off "
                  "(`GAMMABETA_JIT=off`: the pure-NumPy path), in the same rounds.", ""]
    head = "| case | gammabeta ms | PyTorch ms | ratio | floor ms | gammabeta / floor |"
    rule = "| --- | --- | --- | --- | --- | --- |"
    if np_col:
        head += " gammabeta NumPy-only ms (ratio to PyTorch) |"
        rule += " --- |"
    lines += [head, rule]
    for r in res["cases"]:
        g, t = r["gb"], r["torch"]
        row = (f"| {r['name']} | {_ms(g['median_s'])} [{_ms(g['iqr_s'])}] | "
               f"{_ms(t['median_s'])} [{_ms(t['iqr_s'])}] | "
               f"{g['median_s'] / t['median_s']:.2f} | {_ms(r['floor_s'])} | "
               f"{g['median_s'] / r['floor_s']:.1f} |")
        if np_col:
            n = r["gb_numpy"]
            row += f" {_ms(n['median_s'])} ({n['median_s'] / t['median_s']:.2f}) |"
        lines.append(row)
    if res["memory"]:
        lines += ["", "## Peak memory of a training step", "",
                  "| case | gammabeta MB | PyTorch MB | ratio |", "| --- | --- | --- | --- |"]
        for m in res["memory"]:
            lines.append(f"| {m['case']} | {m['gb_mb']:.1f} | {m['torch_mb']:.1f} | "
                         f"{m['gb_mb'] / max(m['torch_mb'], 1e-9):.2f} |")
        lines += ["", f"Method: {res['memory'][0]['method']} (see Method)."]
    lines += floor_section(res)
    lines += commands_section(res)
    lines += ["", "## Targets of issues #6, #15 and #17, checked on this run", ""] + acceptance(res)
    lines += ["", "## Bytes counted for the floor", "", "| case | bytes | count |",
              "| --- | --- | --- |"]
    for r in res["cases"]:
        lines.append(f"| {r['name']} | {r['bytes'] / 1e6:.1f} MB | {r['bytes_note']} |")
    lines += ["", METHOD, TRIED]
    return "\n".join(lines) + "\n"
