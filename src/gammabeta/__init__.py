"""gammabeta: a from-scratch NumPy neural-network library built around a correct BatchNorm."""

__version__ = "0.1.0"

__all__ = ["fold_batchnorm", "__version__"]


def __getattr__(name: str):
    """``gammabeta.fold_batchnorm`` on first use: ``import gammabeta`` (and so the command
    line's start, where an early Ctrl-C must end in one line) stays free of NumPy."""
    if name == "fold_batchnorm":
        from .deploy import fold_batchnorm

        return fold_batchnorm
    raise AttributeError(f"module 'gammabeta' has no attribute {name!r}")
