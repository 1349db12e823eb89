"""Test-session settings.

``GAMMABETA_THREADS=off``: the training loop's thread tuner (gammabeta.autothreads) picks a
thread count from the steps' timings, and a thread count can change a matrix product's
rounding; tests that compare two runs bit for bit need the libraries' fixed counts. The
tuner has its own tests (tests/test_autothreads.py), with a fake clock.
"""

import os

os.environ.setdefault("GAMMABETA_THREADS", "off")
