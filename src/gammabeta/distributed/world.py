"""Rank and world size: read from the launcher's environment first, so a plain run never
imports mpi4py."""

from __future__ import annotations

import os

from ..errors import ConfigError

__all__ = ["launched_by_mpi", "world", "comm_world"]

# What MPICH (Hydra), Open MPI, Intel MPI and Slurm set in every process they start.
_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS")


def launched_by_mpi() -> bool:
    """True when this process was started by ``mpiexec`` with more than one process."""
    for var in _SIZE_VARS:
        try:
            if int(os.environ.get(var, "1")) > 1:
                return True
        except ValueError:
            continue
    return False


def comm_world():
    """``mpi4py.MPI.COMM_WORLD``, or a one-line ConfigError saying what to install."""
    try:
        from mpi4py import MPI
    except ImportError:
        raise ConfigError("distributed training needs mpi4py and an MPI: pip install "
                          "'gammabeta[mpi]' (mpi4py and mpich, which brings mpiexec)") from None
    return MPI.COMM_WORLD


def world() -> tuple[int, int]:
    """``(rank, size)``: ``(0, 1)`` without importing MPI unless launched by mpiexec."""
    if not launched_by_mpi():
        return 0, 1
    comm = comm_world()
    return comm.Get_rank(), comm.Get_size()
