"""``gammabeta predict``: a 1-epoch run on a tiny npz, then .npz/.csv/IDX inputs and bad ones."""

from __future__ import annotations

import csv
import io
import json
import os
import pickle

import numpy as np
import pytest

import gammabeta.nn as nn
from gammabeta.cli import train_and_save
from gammabeta.data import write_idx
from gammabeta.deploy import load_inputs, load_model, predict_proba
from gammabeta.deploy.cli import main
from gammabeta.errors import CheckpointError, ShapeError
from gammabeta.experiment import TrainConfig
from gammabeta.io import load_checkpoint
from gammabeta.models import build_model


def _blobs(n, shape, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.standard_normal((n, *shape)) + y.reshape((n,) + (1,) * len(shape))
    return x.astype(np.float32), y


def _train(tmp, name, shape, model="mlp"):
    x, y = _blobs(60, shape, 0)
    data = tmp / f"{name}.npz"
    np.savez(data, x=x, y=y)
    cfg = TrainConfig(data=str(data), model=model, hidden="16", epochs=1, batch_size=16,
                      seed=0)
    train_and_save(cfg, tmp / name, quiet=True)
    return tmp / name


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("runs")
    return {"vec": _train(tmp, "vec", (40,)), "img": _train(tmp, "img", (1, 8, 8))}


def _reference(run, x):
    """Eval-mode probabilities, rebuilding the model independently of deploy.predict."""
    state, meta = load_checkpoint(run / "model.safetensors")
    cfg = TrainConfig.from_dict(json.loads(meta["config"]))
    m = build_model(cfg.model, json.loads(meta["input_shape"]), int(meta["num_classes"]),
                    **cfg.model_kwargs())
    m.load_state_dict(state)
    m.eval()
    with nn.no_grad():
        return nn.softmax(m(x).astype(np.float64), axis=1)


def _parse(text):
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["index", "prediction", "p0", "p1", "p2"]
    table = np.array(rows[1:], dtype=np.float64)
    return table[:, 1].astype(int), table[:, 2:]


def test_predict_npz_prints_probabilities_and_argmax(runs, tmp_path, capsys):
    x, y = _blobs(9, (40,), 5)
    np.savez(tmp_path / "in.npz", x=x, y=y)
    assert main(["predict", "--model", str(runs["vec"]), str(tmp_path / "in.npz")]) == 0
    got = capsys.readouterr()
    pred, probs = _parse(got.out)
    ref = _reference(runs["vec"], x)
    assert len(pred) == 9 and np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    assert np.allclose(probs, ref, atol=1e-6) and np.array_equal(pred, ref.argmax(axis=1))
    assert "accuracy against the labels" in got.err
    # --out writes the same CSV; --batch-size does not change anything (eval mode)
    out = tmp_path / "p.csv"
    assert main(["predict", "--model", str(runs["vec"]), str(tmp_path / "in.npz"),
                 "--out", str(out), "--batch-size", "2"]) == 0
    pred2, probs2 = _parse(out.read_text())
    assert np.array_equal(pred2, pred) and np.allclose(probs2, probs, atol=1e-6)
    assert "wrote 9 predictions" in capsys.readouterr().out


def test_predict_csv_with_and_without_header(runs, tmp_path, capsys):
    x, y = _blobs(5, (40,), 6)
    ref = _reference(runs["vec"], x)
    with open(tmp_path / "h.csv", "w") as f:
        f.write(",".join([f"f{i}" for i in range(40)] + ["label"]) + "\n")
        for row, lab in zip(x, y, strict=True):
            f.write(",".join(map(repr, row.tolist())) + f",{lab}\n")
    np.savetxt(tmp_path / "n.csv", x, delimiter=",")
    for name in ("h.csv", "n.csv"):
        assert main(["predict", "--model", str(runs["vec"]), str(tmp_path / name)]) == 0
        pred, probs = _parse(capsys.readouterr().out)
        assert np.allclose(probs, ref, atol=1e-6)


def test_idx_images_are_scaled_and_flat_rows_reshaped(runs, tmp_path):
    img = np.random.default_rng(7).integers(0, 256, (4, 8, 8)).astype(np.uint8)
    write_idx(tmp_path / "img-idx3-ubyte", img)
    lm = load_model(runs["img"])
    assert lm.input_shape == (1, 8, 8) and lm.num_classes == 3 and not lm.model.training
    x, y = load_inputs(tmp_path / "img-idx3-ubyte", lm.input_shape)
    assert x.shape == (4, 1, 8, 8) and y is None and x.max() <= 1.0
    ref = _reference(runs["img"], img[:, None].astype(np.float32) / 255)
    assert np.allclose(predict_proba(lm.model, x), ref, atol=1e-6)
    np.savez(tmp_path / "flat.npz", x=img.reshape(4, 64) / np.float32(255))
    x2, _ = load_inputs(tmp_path / "flat.npz", lm.input_shape)
    assert np.allclose(predict_proba(lm.model, x2), ref, atol=1e-6)


def test_wrong_shape_names_file_and_both_shapes(runs, tmp_path, capsys):
    np.savez(tmp_path / "bad.npz", x=np.zeros((5, 7), np.float32))
    with pytest.raises(ShapeError) as e:
        load_inputs(tmp_path / "bad.npz", (40,))
    msg = str(e.value)
    assert "bad.npz" in msg and "(5, 7)" in msg and "(N, 40)" in msg
    assert main(["predict", "--model", str(runs["img"]), str(tmp_path / "bad.npz")]) == 2
    err = capsys.readouterr().err
    assert "bad.npz" in err and "(N, 1, 8, 8) or (N, 64)" in err
    np.savetxt(tmp_path / "bad.csv", np.zeros((3, 39)), delimiter=",")
    assert main(["predict", "--model", str(runs["vec"]), str(tmp_path / "bad.csv")]) == 2
    assert "(3, 39)" in capsys.readouterr().err
    (tmp_path / "text.csv").write_text("a,b\n1,x\n")
    assert main(["predict", "--model", str(runs["vec"]), str(tmp_path / "text.csv")]) == 2
    assert "line 2, column 'b': 'x' is not a number" in capsys.readouterr().err


def test_bad_checkpoints_are_refused_without_running_code(runs, tmp_path, capsys):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    run = tmp_path / "evil"
    run.mkdir()
    (run / "model.safetensors").write_bytes(pickle.dumps(Evil()))
    np.savez(tmp_path / "in.npz", x=np.zeros((2, 40), np.float32))
    assert main(["predict", "--model", str(run), str(tmp_path / "in.npz")]) == 2
    assert "pickle" in capsys.readouterr().err and not marker.exists()
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_model(tmp_path / "missing")
