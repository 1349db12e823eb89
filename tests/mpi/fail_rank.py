"""Run ``gammabeta train`` under mpiexec with rank 1 failing at its STEP-th step (an OSError,
as a full disk on that node would give): ``fail_rank.py STEP train ARGS...``."""

import sys

from mpi4py import MPI

from gammabeta import train
from gammabeta.cli import main

_real = train._forward_backward
_calls = [0]


def _failing(*args, **kwargs):
    _calls[0] += 1
    if MPI.COMM_WORLD.Get_rank() == 1 and _calls[0] == int(sys.argv[1]):
        raise OSError(28, "No space left on device (simulated on rank 1)")
    return _real(*args, **kwargs)


train._forward_backward = _failing
sys.exit(main(sys.argv[2:]))
