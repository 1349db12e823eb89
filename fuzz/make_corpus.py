"""Write the seed corpus: one small valid file per loader, prefixed with its selector byte."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from targets import NAMES  # noqa: E402

from gammabeta.data.idx import write_idx  # noqa: E402
from gammabeta.io import save_checkpoint  # noqa: E402


def seeds(tmp: Path) -> dict[str, bytes]:
    """Valid example bytes per target name."""
    rng = np.random.default_rng(0)
    out = {}
    write_idx(tmp / "a.idx", rng.integers(0, 255, (3, 4, 4), dtype=np.uint8))
    out["idx"] = (tmp / "a.idx").read_bytes()
    write_idx(tmp / "b-idx1-ubyte.gz", rng.integers(0, 10, 6, dtype=np.uint8))
    out["idx.gz"] = (tmp / "b-idx1-ubyte.gz").read_bytes()
    buf = io.BytesIO()
    np.savez(buf, x=rng.standard_normal((6, 3)).astype(np.float32), y=np.arange(6) % 2)
    out["npz"] = buf.getvalue()
    out["csv"] = b"a,b,label\n0.5,1.0,0\n1.5,-2.0,1\n3.0,0.25,1\n"
    save_checkpoint(tmp / "c.safetensors", {"0.weight": np.ones((2, 3), np.float32),
                                            "1.num_batches_tracked": np.array(3)},
                    {"config": {"a": 1}})
    out["safetensors"] = (tmp / "c.safetensors").read_bytes()
    out["toml"] = (b'name = "seed"\n[base]\nmodel = "mlp"\nepochs = 1\n'
                   b'[axes]\ngamma_init = ["ones", "zeros"]\nseeds = [0]\n')
    return out


def main(folder: str = "fuzz/corpus") -> None:
    import tempfile

    dest = Path(folder)
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in seeds(Path(tmp)).items():
            if name in NAMES:
                (dest / f"seed-{name}").write_bytes(bytes([NAMES.index(name)]) + data)


if __name__ == "__main__":
    main(*sys.argv[1:])
