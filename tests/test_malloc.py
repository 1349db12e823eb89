"""gammabeta keeps freed array buffers in the heap (glibc's mallopt), unless told not to."""

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")

PROBE = "import gammabeta.backend, gammabeta._malloc as m; print(m._tuned)"


def _tuned(**env) -> str:
    base = {k: v for k, v in os.environ.items()
            if not k.startswith("MALLOC_") and k not in ("GLIBC_TUNABLES", "GAMMABETA_MALLOC")}
    out = subprocess.run([sys.executable, "-c", PROBE], env={**base, **env},
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_importing_the_core_tunes_malloc_once():
    import ctypes

    try:
        glibc = hasattr(ctypes.CDLL(None), "gnu_get_libc_version")
    except OSError:
        glibc = False
    assert _tuned() == str(glibc)


@pytest.mark.parametrize("env", [{"GAMMABETA_MALLOC": "off"},
                                 {"MALLOC_MMAP_THRESHOLD_": "65536"},
                                 {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=131072"}])
def test_an_opt_out_or_the_users_own_settings_are_left_alone(env):
    assert _tuned(**env) == "False"
