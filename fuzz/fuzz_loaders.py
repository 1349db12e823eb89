"""Coverage-guided fuzzing (atheris) of every loader that reads untrusted files.

The first byte of an input picks the loader (see ``targets.NAMES``), the rest is the file.
Run for a bounded time, e.g. ``python fuzz/fuzz_loaders.py -max_total_time=60 CORPUS_DIR``
(``make fuzz`` runs longer); the seed corpus is ``fuzz/corpus/`` (``fuzz/make_corpus.py``).
"""

from __future__ import annotations

import os
import sys

import atheris

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

with atheris.instrument_imports(include=["gammabeta"]):
    from targets import NAMES, run_target


def test_one_input(data: bytes) -> None:
    if not data:
        return
    run_target(NAMES[data[0] % len(NAMES)], data[1:])


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
