"""One study run on several MPI processes: ``python -m gammabeta.distributed.job IN OUT``.

A study job with the task option ``ranks`` > 1 is run by :func:`run_under_mpiexec`, which
starts ``mpiexec -n ranks`` on this module; every rank runs
:func:`gammabeta.study.tasks.run_job` with a :class:`DataParallel`, and rank 0 writes the
result row (JSON) to ``OUT``. The study runner then treats the row like any other.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ..errors import ConfigError

__all__ = ["run_under_mpiexec", "mpiexec_path", "main"]


def mpiexec_path() -> str:
    """The ``mpiexec`` beside this Python (the mpich wheel's), else the one on PATH."""
    here = Path(sys.executable).with_name("mpiexec")
    found = str(here) if here.exists() else shutil.which("mpiexec")
    if not found:
        raise ConfigError("a run with ranks > 1 needs mpiexec: pip install 'gammabeta[mpi]' "
                          "(mpi4py and mpich)")
    return found


def run_under_mpiexec(job: dict, timeout: float | None = None) -> dict:
    """Run ``job`` on ``job["options"]["ranks"]`` processes; return rank 0's row."""
    ranks = int(job["options"]["ranks"])
    with tempfile.TemporaryDirectory(prefix="gammabeta-job-") as tmp:
        src, dst = Path(tmp) / "job.json", Path(tmp) / "row.json"
        src.write_text(json.dumps(job), encoding="utf-8")
        cmd = [mpiexec_path(), "-n", str(ranks), sys.executable, "-m",
               "gammabeta.distributed.job", str(src), str(dst)]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
               "MKL_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        if proc.returncode != 0 or not dst.exists():
            tail = " ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
            raise ConfigError(f"the run {job.get('axes', {})} on {ranks} MPI processes failed "
                              f"(exit {proc.returncode}): {tail[-500:]}")
        return json.loads(dst.read_text(encoding="utf-8"))


def main(argv=None) -> int:
    """Every rank: run the job in ``argv[0]``; rank 0 writes the row to ``argv[1]``."""
    from ..io import atomic_write_text
    from ..study.tasks import _one_thread, run_job
    from .parallel import DataParallel

    src, dst = (sys.argv[1:] if argv is None else argv)[:2]
    job = json.loads(Path(src).read_text(encoding="utf-8"))
    parallel = DataParallel()
    try:
        with _one_thread():
            row = run_job(job, parallel=parallel)
    except BaseException as e:  # one failing rank must not leave the others waiting
        print(f"gammabeta: [rank {parallel.rank}] {type(e).__name__}: {e}", file=sys.stderr,
              flush=True)
        parallel.comm.Abort(1)
        raise
    if parallel.is_root:
        row["ranks"] = parallel.size
        atomic_write_text(dst, json.dumps(row, allow_nan=False))
    return 0


if __name__ == "__main__":  # pragma: no cover - run by mpiexec
    sys.exit(main())
