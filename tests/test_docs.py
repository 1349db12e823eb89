"""The documentation runs: every code block of the docs pages and the README's Python, the
site builds with ``mkdocs build --strict``, and every README command names real things."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import docblocks  # noqa: E402
import walk_readme  # noqa: E402

PAGES = sorted(p for p in (ROOT / "docs").rglob("*.md") if "studies" not in p.parts
               and docblocks.blocks(p.read_text(encoding="utf-8")))


def test_the_docs_have_runnable_pages():
    names = {p.relative_to(ROOT / "docs").as_posix() for p in PAGES}
    for page in ("index.md", "tutorials/python.md", "tutorials/backward.md",
                 "tutorials/init-gamma-beta.md", "tutorials/check.md",
                 "tutorials/deployment.md", "tutorials/normalization.md"):
        assert page in names, f"docs/{page} has no code block that runs"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_docs_page_code_runs(page):
    r = docblocks.run_page(page)
    assert r.returncode == 0, f"{page}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"


def test_readme_python_runs(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("\n".join(f"```python\n{code}\n```" for lang, code, _ in
                                docblocks.blocks((ROOT / "README.md").read_text("utf-8"))
                                if lang == "python"), encoding="utf-8")
    r = docblocks.run_page(readme)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "test accuracy" in r.stdout


def test_site_builds_strict(tmp_path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                        str(tmp_path / "site")], cwd=ROOT, capture_output=True, text=True,
                       timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-4000:]
    assert "WARNING" not in r.stderr, r.stderr[-4000:]
    assert (tmp_path / "site" / "tutorials" / "backward" / "index.html").exists()
    api = (tmp_path / "site" / "api" / "nn" / "index.html").read_text(encoding="utf-8")
    assert "BatchNorm1d" in api and "Examples" in api


def _readme_steps():
    return walk_readme.steps((ROOT / "README.md").read_text(encoding="utf-8"))


def test_readme_commands_name_real_options_and_files():
    """What the README walk (tools/walk_readme.py, run after make demo) will run: every
    gammabeta command parses, and every file it reads exists in the repository."""
    from gammabeta.cli import build_parser

    steps = [s for s in _readme_steps() if s[0] == "sh"]
    assert len(steps) >= 10
    parser = build_parser()
    for _, cmd, _ in steps:
        words = shlex.split(cmd)
        if words[0] == "mpiexec":
            words = words[words.index("gammabeta"):]
        if words[0] != "gammabeta":
            continue
        try:
            parser.parse_args(words[1:])
        except SystemExit as e:
            assert e.code == 0, f"README command does not parse: {cmd}"
        for w in words:
            if w.startswith("examples/"):
                assert (ROOT / w.split(":")[0]).exists(), f"{cmd}: {w} does not exist"
        assert "../" not in cmd, f"{cmd}: a path outside the repository"


def test_demo_suggestions_are_real_commands():
    from gammabeta.cli import _NEXT, build_parser

    parser = build_parser()
    for cmd, _ in _NEXT:
        args = parser.parse_args(shlex.split(cmd)[1:])
        assert args.command in ("train", "check", "study")
        for w in shlex.split(cmd):
            if w.startswith("examples/"):
                assert (ROOT / w).exists()
