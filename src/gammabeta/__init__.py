"""gammabeta: a from-scratch NumPy neural-network library built around a correct BatchNorm."""

__version__ = "0.1.0"
