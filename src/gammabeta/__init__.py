"""gammabeta: a from-scratch NumPy neural-network library built around a correct BatchNorm."""

__version__ = "0.1.0"

from .deploy import fold_batchnorm  # noqa: E402

__all__ = ["fold_batchnorm", "__version__"]
