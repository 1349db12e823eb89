"""Environment faults: unwritable outputs, a full disk (simulated), downloads that die."""

from __future__ import annotations

import errno
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from gammabeta.cli import main
from gammabeta.data.idx import load_mnist
from gammabeta.errors import DataError, OutputError
from gammabeta.io import atomic_write_bytes, save_checkpoint


def _full_disk(monkeypatch):
    """Make every fsync fail as a full disk would (the data never reaches the device)."""
    def fsync(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("gammabeta.io.os.fsync", fsync)


def test_full_disk_gives_clear_error_and_no_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "model.safetensors"
    atomic_write_bytes(path, b"previous good checkpoint")
    _full_disk(monkeypatch)
    with pytest.raises(OutputError, match=r"cannot write .*model.safetensors: No space left"):
        save_checkpoint(path, {"w": np.ones(3, np.float32)})
    assert path.read_bytes() == b"previous good checkpoint"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


def test_cli_train_on_full_disk_exits_2_and_leaves_no_partial_files(tmp_path, monkeypatch,
                                                                     capsys):
    rng = np.random.default_rng(0)
    data = tmp_path / "d.npz"
    np.savez(data, x=rng.standard_normal((60, 4)).astype(np.float32), y=np.arange(60) % 2)
    out = tmp_path / "run"
    _full_disk(monkeypatch)
    rc = main(["train", "--data", str(data), "--epochs", "1", "--hidden", "8", "--quiet",
               "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "No space left on device" in err and "train_state.safetensors" in err
    # no half-written file of any kind, and no empty folder left behind either
    assert not out.exists()


def test_output_folder_that_is_a_file_gives_clear_error(tmp_path, capsys):
    blocker = tmp_path / "taken"
    blocker.write_text("not a folder")
    rc = main(["train", "--data", "digits", "--epochs", "1", "--quiet", "--out", str(blocker)])
    err = capsys.readouterr().err
    assert rc == 2 and "taken" in err and "is a file, not a folder" in err


class _DiesMidway(BaseHTTPRequestHandler):
    """Announces a large body, sends a little, then drops the connection."""

    def do_GET(self):  # noqa: N802 - http.server's naming
        self.send_response(200)
        self.send_header("Content-Length", "100000")
        self.end_headers()
        self.wfile.write(b"\x1f\x8b" + b"\0" * 1000)
        self.wfile.flush()
        self.connection.close()

    def log_message(self, *args):
        pass


def test_download_that_dies_midway_is_reported_and_leaves_no_file(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _DiesMidway)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        cache = tmp_path / "cache"
        with pytest.raises(DataError, match=r"could not download .*from any mirror"):
            load_mnist(download=True, cache_dir=cache, mirrors=[url, url])
    finally:
        server.shutdown()
    leftovers = [p for p in cache.rglob("*") if p.is_file()]
    assert leftovers == []
