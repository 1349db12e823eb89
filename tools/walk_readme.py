"""Walk the README as a new user does, right after ``make demo``: run every command it shows.

In the repository root (a fresh clone, after ``make demo``), ``python3 tools/walk_readme.py``
runs, in one bash session and in the README's order:

- each line of its ``sh`` blocks that is a command (``gammabeta``, ``python``, ``source``,
  ``pip``, ``mpiexec``); ``make ...`` lines are the set-up this walk follows, not rerun;
- each command of the results table (the ``gammabeta ...`` code spans between the figures
  markers) whose arguments are all real (a placeholder such as ``DIR`` is listed as skipped);
- each ``python`` block, as a script.

A command must exit 0, or the code its comment states (``# ...; exits 1``). Prints every
command with its exit code and time; exit status 1 if any failed. It writes what the
commands write (``runs/``, ``mlp.onnx``, ...), as a reader would.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from docblocks import blocks, commands  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RUNS = ("gammabeta ", "python ", "python3 ", "source ", "pip ", "mpiexec ")
PLACEHOLDERS = {"DIR", "FILE", "NAME", "N"}


def steps(readme: str) -> list[tuple[str, str, int]]:
    """``(kind, text, expected exit)`` in README order: kind "sh" (a command), "python"
    (a block's code) or "skip" (a command with a placeholder, not run)."""
    out = []
    lines = readme.splitlines()
    table = ""
    if "<!-- figures:start -->" in readme:
        table = readme.split("<!-- figures:start -->", 1)[1].split("<!-- figures:end -->", 1)[0]
    table_at = next((i for i, x in enumerate(lines) if "<!-- figures:start -->" in x), -1)
    items = [(line, lang, code) for lang, code, line in blocks(readme)]
    if table_at >= 0:
        items.append((table_at + 1, "table", table))
    for _, lang, code in sorted(items, key=lambda t: t[0]):
        if lang == "python":
            out.append(("python", code, 0))
        elif lang == "table":
            for cmd in re.findall(r"`(gammabeta [^`]+)`", code):
                words = set(shlex.split(cmd))
                out.append(("skip" if words & PLACEHOLDERS else "sh", cmd, 0))
        else:
            for cmd, want in commands(code, RUNS):
                out.append(("sh", cmd, want))
    return out


def script(todo) -> str:
    parts = ["set -u", "failed=0",
             "_run() { local want=$1 cmd=$2 t0=$SECONDS; echo \"\\$ $cmd\"; eval \"$cmd\";"
             " local rc=$?; echo \"   -> exit $rc ($((SECONDS - t0)) s)\";"
             " if [ $rc -ne $want ]; then echo \"   FAILED: expected exit $want\"; failed=1; fi; }"]
    for i, (kind, text, want) in enumerate(todo):
        if kind == "skip":
            parts.append(f"echo {shlex.quote('skipped (needs your own files): ' + text)}")
        elif kind == "python":
            name = f".walk_readme_block{i}.py"
            (ROOT / name).write_text(text + "\n", encoding="utf-8")
            parts.append(f"_run 0 {shlex.quote('python ' + name)}; rm -f {name}")
        else:
            parts.append(f"_run {want} {shlex.quote(text)}")
    parts.append("exit $failed")
    return "\n".join(parts) + "\n"


def main() -> int:
    todo = steps((ROOT / "README.md").read_text(encoding="utf-8"))
    t0 = time.time()
    r = subprocess.run(["bash", "-c", script(todo)], cwd=ROOT)
    n = sum(k != "skip" for k, _, _ in todo)
    print(f"\nwalked {n} README commands and blocks in {time.time() - t0:.0f} s: "
          f"{'all as expected' if r.returncode == 0 else 'SOME FAILED'}")
    return r.returncode


if __name__ == "__main__":
    raise SystemExit(main())
