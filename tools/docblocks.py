"""Run the code blocks of a Markdown page, as a reader would, in order.

Rules (docs/ pages and the README):

- every fenced ``python`` block runs; the blocks of one page run in order in one fresh Python
  process (one namespace), so a later block may use what an earlier one defined;
- in fenced ``sh`` / ``console`` blocks every command line starting with ``gammabeta `` or
  ``python `` (after an optional ``$ ``) runs in a shell, in page order with the Python blocks;
  it must exit 0, or the code its comment states as ``exits N`` (``# ...; exits 1``: e.g. a
  checker run that finds a bug); a line ending in ``\\`` continues on the next;
- a block right after ``<!-- skip-test: why -->`` does not run (say why); ``text`` blocks are
  output and never run;
- the working folder is a fresh temporary folder holding a copy of the repository's
  ``examples/`` (so pages can use ``examples/broken_batchnorm/...``), and the ``gammabeta``
  command is the one installed next to the Python running this.

``python tools/docblocks.py PAGE.md ...`` runs pages and prints what failed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>```+|~~~+)\s*(?P<info>[^\n`]*)$")
_EXIT = re.compile(r"\bexits?\s+(\d+)")


def blocks(text: str) -> list[tuple[str, str, int]]:
    """``(language, code, line)`` of every fenced block that runs, in page order."""
    out, lines, i, skip = [], text.splitlines(), 0, False
    while i < len(lines):
        line = lines[i]
        if line.strip().startswith("<!-- skip-test"):
            skip = True
        m = _FENCE.match(line)
        if not m:
            if line.strip() and not line.strip().startswith("<!--"):
                skip = False
            i += 1
            continue
        fence, lang = m["fence"], (m["info"].split() or [""])[0].lower()
        body, j = [], i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            body.append(lines[j][len(m["indent"]):])
            j += 1
        if not skip and lang in ("python", "py", "sh", "bash", "console", "shell"):
            out.append(("python" if lang in ("python", "py") else "sh", "\n".join(body), i + 1))
        skip = False
        i = j + 1
    return out


def commands(code: str, runs=("gammabeta ", "python ")) -> list[tuple[str, int]]:
    """``(command, expected exit code)`` for each line of a shell block that starts with one
    of ``runs``."""
    out, pending = [], ""
    for raw in code.splitlines():
        line = raw.strip()
        if line.startswith("$ "):
            line = line[2:]
        if pending:
            line, pending = pending + " " + line, ""
        if line.endswith("\\"):
            pending = line[:-1].strip()
            continue
        if line.startswith(tuple(runs)):
            cmd, _, comment = line.partition(" #")
            m = _EXIT.search(comment)
            cmd = cmd.strip()
            out.append((cmd, int(m[1]) if m else 0))
    return out


def script(path: Path) -> str:
    """One Python program running the page's blocks in order."""
    parts = ["import subprocess as _sp, sys as _sys",
             "def _shell(cmd, want, line):",
             "    r = _sp.run(cmd, shell=True, capture_output=True, text=True)",
             "    print(f'$ {cmd}  -> exit {r.returncode}'); print(r.stdout[-3000:]);"
             " print(r.stderr[-3000:], file=_sys.stderr)",
             "    if r.returncode != want:",
             "        raise SystemExit(f'line {line}: {cmd!r} exited {r.returncode}, expected "
             "{want}')"]
    for lang, code, line in blocks(path.read_text(encoding="utf-8")):
        if lang == "python":
            parts.append(f"# --- {path.name}, line {line}")
            parts.append(f"exec(compile({code!r}, {f'{path.name}:{line}'!r}, 'exec'))")
        else:
            for cmd, want in commands(code):
                parts.append(f"_shell({cmd!r}, {want}, {line})")
    return "\n".join(parts) + "\n"


def run_page(path: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``path``'s blocks in a fresh folder; the completed process (check returncode)."""
    with tempfile.TemporaryDirectory(prefix="docblocks-") as tmp:
        shutil.copytree(ROOT / "examples", Path(tmp) / "examples")
        (Path(tmp) / "page_script.py").write_text(script(path), encoding="utf-8")
        env = {**os.environ, "MPLBACKEND": "Agg",
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        return subprocess.run([sys.executable, "page_script.py"], cwd=tmp, env=env,
                              capture_output=True, text=True, timeout=timeout)


def main(argv: list[str]) -> int:
    failed = 0
    for name in argv:
        r = run_page(Path(name))
        status = "ok" if r.returncode == 0 else f"FAILED (exit {r.returncode})"
        print(f"{name}: {status}")
        if r.returncode:
            failed += 1
            print(r.stdout[-4000:], r.stderr[-4000:], sep="\n")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
