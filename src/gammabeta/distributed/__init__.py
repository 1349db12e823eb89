"""Data-parallel training over MPI (``mpiexec -n N gammabeta train ...``).

- :class:`DataParallel` (:mod:`.parallel`): the communicator, each rank's share of every
  global batch, bucketed gradient all-reduce, broadcasts from rank 0, and the small
  reductions that keep every rank's control flow identical.
- :class:`gammabeta.nn.SyncBatchNorm` and :func:`gammabeta.nn.convert_sync_batchnorm`:
  BatchNorm whose statistics are exact over all ranks.
- :func:`world` (:mod:`.world`): rank and size without importing MPI when not launched by
  ``mpiexec``.

Needs the ``mpi`` extra: ``pip install 'gammabeta[mpi]'`` (mpi4py and the mpich wheel, which
brings its own ``mpiexec``).
"""

from .parallel import DataParallel
from .world import launched_by_mpi, world

__all__ = ["DataParallel", "launched_by_mpi", "world"]
