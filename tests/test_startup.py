"""What a command imports before it has work to do: ``gammabeta --help`` (and building every
subcommand's parser) imports neither NumPy nor Numba; the training flags' help still lists
every model's recipe. (Start-up *times* are measured in benchmarks/, never asserted here.)"""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import contextlib, io, sys
from gammabeta.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        main({argv!r})
    except SystemExit:
        pass
print(sorted(m.split('.')[0] for m in sys.modules if m.split('.')[0] in ('numpy', 'numba',
      'matplotlib', 'torch')))
print(len(out.getvalue()))
"""


def _imports(argv):
    r = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    heavy, size = r.stdout.strip().splitlines()[-2:]
    return set(eval(heavy)), int(size)  # noqa: S307 - our own probe's printed list


@pytest.mark.parametrize("argv", [["--help"], ["study", "--help"], ["check", "--help"],
                                  ["export", "--help"], ["predict", "--help"]])
def test_help_imports_no_numerics(argv):
    heavy, size = _imports(argv)
    assert heavy == set(), f"gammabeta {' '.join(argv)} imported {heavy}"
    assert size > 200  # the help was printed


def test_train_help_lists_the_recipes_without_numba():
    heavy, size = _imports(["train", "--help"])
    assert "numba" not in heavy and "torch" not in heavy and "matplotlib" not in heavy
    from gammabeta.cli import build_parser

    text = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    assert "recipes:" in text and "resnet" in text


def test_warm_kernels_leaves_every_kernel_in_the_cache():
    """What the Makefile's install step runs: afterwards the on-disk cache holds the
    BatchNorm and LayerNorm/GroupNorm kernels, so no training run compiles them."""
    from gammabeta import backend

    pytest.importorskip("numba")
    assert backend.warm_kernels() > 0
    assert backend.kernels_compiled() and backend._norm_kernels_compiled()
    import sys
    from pathlib import Path

    tag = f"py{sys.version_info[0]}{sys.version_info[1]}"
    optim_cache = Path(backend.__file__).parent / "optim" / "__pycache__"
    assert any(optim_cache.glob(f"_kernels.adam_update-*.{tag}.nbi"))  # the fused AdamW


def test_a_changed_kernel_source_empties_the_kernel_cache(tmp_path):
    """Numba checks a cached function against its own file only; gammabeta keeps a hash of
    every kernel source and drops the whole cache when it changes (a stale cross-file kernel
    crashed the process inside LLVM)."""
    from gammabeta import backend

    for name in backend._KERNEL_SOURCES:
        (tmp_path / name).write_text(f"# {name}\n")
    cache = tmp_path / "__pycache__"
    cache.mkdir()
    (cache / "_kernels._forward-1.py311.nbi").write_bytes(b"index")
    (cache / "_kernels._forward-1.py311.1.nbc").write_bytes(b"code")
    (cache / "other.pyc").write_bytes(b"kept")
    backend._check_kernel_cache(tmp_path)  # no stamp yet: the cache cannot be trusted
    assert sorted(p.name for p in cache.iterdir()) == ["gammabeta-kernels.sha256", "other.pyc"]
    (cache / "_kernels._forward-1.py311.nbi").write_bytes(b"index")
    backend._check_kernel_cache(tmp_path)  # same sources: kept
    assert (cache / "_kernels._forward-1.py311.nbi").exists()
    (tmp_path / "_threads.py").write_text("# edited\n")
    backend._check_kernel_cache(tmp_path)  # another file changed: dropped
    assert not (cache / "_kernels._forward-1.py311.nbi").exists()
