"""The ``gammabeta`` command line: a thin layer over :mod:`gammabeta.experiment` and friends."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import __version__
from .errors import ConfigError, GammabetaError, OutputError

# The MNIST-1D paper's table (Greydanus 2020, arXiv:2011.14439, Table 1: test accuracy).
PAPER_TABLE = {"logistic regression": 32.0, "MLP": 68.0, "CNN": 94.0, "GRU": 91.0}


def _add_train_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--data", default="mnist1d",
                   help="mnist1d, digits, mnist, fashion, or a .npz/.csv file (default mnist1d)")
    g.add_argument("--data-dir", default=None, help="folder with MNIST/Fashion IDX files")
    g.add_argument("--download", action="store_true",
                   help="download MNIST/Fashion into the cache (MD5-checked)")
    g = p.add_argument_group("model")
    g.add_argument("--model", default="mlp",
                   help="mlp, resmlp, cnn, papercnn or resnet (default mlp)")
    g.add_argument("--channels", type=int, default=None, help="conv channels (cnn, resnet)")
    g.add_argument("--layers", type=int, default=None, help="conv layers (cnn)")
    g.add_argument("--zero-init-residual", action="store_true",
                   help="resnet: γ = 0 in the last BN of every residual block")
    g.add_argument("--hidden", default=None, help="hidden widths, e.g. 256,256 (recipe default)")
    g.add_argument("--norm", default="batch", choices=["batch", "none"])
    g.add_argument("--act", default="relu", help="relu, leaky_relu, tanh, sigmoid, gelu")
    g.add_argument("--dropout", type=float, default=None)
    g.add_argument("--weight-init", default="torch_default",
                   help="any gammabeta.init name, e.g. kaiming_normal, xavier_uniform")
    g.add_argument("--bias-init", default="torch_default")
    g.add_argument("--gamma-init", default="ones",
                   help="γ init: ones, zeros, uniform, slimming (0.5), dcgan, a number, "
                        "or 'normal(mean=1, std=0.1)'")
    g.add_argument("--beta-init", default="zeros", help="β init, as --gamma-init")
    g = p.add_argument_group("optimization")
    g.add_argument("--optimizer", default="adamw", choices=["adamw", "adam", "sgd"])
    g.add_argument("--lr", type=float, default=None, help="(peak) learning rate")
    g.add_argument("--weight-decay", type=float, default=0.05,
                   help="on weights only: biases, γ and β are never decayed")
    g.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    g.add_argument("--schedule", default="onecycle",
                   choices=["onecycle", "cosine", "step", "constant"])
    g.add_argument("--label-smoothing", type=float, default=0.0)
    g.add_argument("--batch-size", type=int, default=100)
    g.add_argument("--epochs", type=int, default=None)
    g.add_argument("--seed", type=int, default=0)
    g = p.add_argument_group("robustness")
    g.add_argument("--on-nonfinite", default="raise", choices=["raise", "skip-step"],
                   help="at a NaN/inf loss, activation or gradient: stop (naming the step and "
                        "layer) or skip that step")
    g.add_argument("--clip-grad-norm", type=float, default=None, help="clip the global "
                   "gradient norm to this value")
    g.add_argument("--checkpoint-every", type=int, default=None,
                   help="also save the training state every N steps (always: every epoch)")
    g.add_argument("--resume", default=None, metavar="DIR",
                   help="continue the run whose output folder is DIR (other options ignored)")
    p.add_argument("--diagnostics", action="store_true",
                   help="record per-layer activation statistics and gradient norms into "
                        "DIR/diagnostics.json")
    p.add_argument("--diagnostics-every", type=int, default=10, metavar="N",
                   help="with --diagnostics: record every N steps (default 10)")
    p.add_argument("--out", default=None, help="output folder (default runs/DATA-MODEL-seedN)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _config_from_args(a):
    from .experiment import TrainConfig

    return TrainConfig(data=a.data, data_dir=a.data_dir, download=a.download, model=a.model,
                       hidden=a.hidden, norm=a.norm, act=a.act, dropout=a.dropout,
                       weight_init=a.weight_init, bias_init=a.bias_init,
                       gamma_init=a.gamma_init, beta_init=a.beta_init, optimizer=a.optimizer,
                       lr=a.lr, momentum=a.momentum, weight_decay=a.weight_decay,
                       schedule=a.schedule, label_smoothing=a.label_smoothing,
                       batch_size=a.batch_size, epochs=a.epochs, seed=a.seed,
                       on_nonfinite=a.on_nonfinite, clip_grad_norm=a.clip_grad_norm,
                       model_options=_model_options(a))


def _model_options(a) -> dict:
    opts = {}
    if a.channels is not None:
        opts["channels"] = a.channels
    if a.layers is not None:
        opts["layers"] = a.layers
    if a.zero_init_residual:
        if a.model != "resnet":
            raise ConfigError(f"--zero-init-residual applies to --model resnet, not {a.model}")
        opts["zero_init_residual"] = True
    return opts


class _Progress:
    """A tqdm bar over the epochs of a run, with the last epoch's loss and accuracy."""

    def __init__(self, desc: str, enabled: bool, initial: int = 0):
        self.desc, self.enabled, self.bar, self.initial = desc, enabled, None, initial

    def on_start(self, cfg, dataset):
        if dataset.note:
            print(f"note: {dataset.note}", file=sys.stderr)
        if self.enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=cfg.epochs, desc=self.desc, unit="epoch", file=sys.stderr,
                            dynamic_ncols=True, initial=self.initial)

    def on_epoch(self, rec):
        if self.bar is None:
            return
        self.bar.update(1)
        post = {"loss": f"{rec['train_loss']:.3f}"}
        if "val_accuracy" in rec:
            post["test_acc"] = f"{100 * rec['val_accuracy']:.1f}%"
        self.bar.set_postfix(post)

    def close(self):
        if self.bar is not None:
            self.bar.close()


STATE_FILE = "train_state.safetensors"


class _StopOnSigint:
    """First Ctrl-C asks the loop to stop after the current step (and checkpoint); a second
    one interrupts at once (atomic writes keep every file whole either way)."""

    def __init__(self):
        self.requested = False
        self.previous = None

    def __enter__(self):
        import signal

        def handler(signum, frame):
            if self.requested:
                raise KeyboardInterrupt
            self.requested = True
            print("\ngammabeta: stopping after this step (Ctrl-C again to abort)",
                  file=sys.stderr)

        try:
            self.previous = signal.signal(signal.SIGINT, handler)
        except ValueError:  # not the main thread: leave SIGINT alone
            self.previous = None
        return self

    def __exit__(self, *exc):
        import signal

        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        return False


def train_and_save(cfg, out: Path, quiet: bool = False, resume: bool = False,
                   checkpoint_every: int | None = None, initial_epoch: int = 0,
                   diagnostics_every: int | None = None):
    """Run one training and write metrics.json, model.safetensors and curves.png into ``out``.

    The full training state goes to ``out/train_state.safetensors`` after every epoch (and
    every ``checkpoint_every`` steps), so ``gammabeta train --resume out`` can continue. With
    ``diagnostics_every`` per-layer statistics go to ``out/diagnostics.json``.
    """
    from .experiment import run
    from .io import atomic_write_text, save_checkpoint
    from .plots import plot_curves

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot use {out} as the output folder: {e.strerror or e}") from e
    prog = _Progress(f"{Path(str(cfg.data)).name}/{cfg.model} seed {cfg.seed}", not quiet,
                     initial_epoch)
    diag: list = []

    def on_model(model):
        if diagnostics_every:
            from .diagnostics import attach

            diag.append(attach(model))

    def on_step(step, loss):
        if diag and step % diagnostics_every == 0:
            diag[0].record_step(step)

    try:
        with _StopOnSigint() as stop:
            result = run(cfg, on_epoch=prog.on_epoch, on_start=prog.on_start, on_step=on_step,
                         state_path=out / STATE_FILE, resume=resume, on_model=on_model,
                         checkpoint_every=checkpoint_every, should_stop=lambda: stop.requested)
    finally:
        prog.close()
        if diag:
            diag[0].save(out / "diagnostics.json")
    metrics = result.metrics()
    meta = {"format": "gammabeta-checkpoint-1", "gammabeta_version": __version__,
            "config": json.dumps(result.config.to_dict()),
            "input_shape": json.dumps(list(result.input_shape)),
            "num_classes": str(result.num_classes)}
    save_checkpoint(out / "model.safetensors", result.model.state_dict(), meta)
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    plot_curves(metrics["history"], out / "curves.png",
                title=f"{cfg.data} / {cfg.model}: test accuracy {100 * result.test_accuracy:.2f}%")
    return result


def _summary(result, out: Path) -> str:
    h = result.history
    rows = [("data", result.config.data), ("model", result.config.model),
            ("parameters", f"{result.model.num_parameters():,}"),
            ("epochs", str(len(h))), ("final train loss", f"{h.records[-1]['train_loss']:.4f}"),
            ("test loss", f"{result.test_loss:.4f}"),
            ("test accuracy", f"{100 * result.test_accuracy:.2f}%"),
            ("time", f"{result.seconds:.1f} s"), ("outputs", str(out))]
    if result.dataset_note:
        rows.insert(1, ("note", result.dataset_note))
    w = max(len(k) for k, _ in rows)
    v = max(len(val) for _, val in rows)
    line = "+" + "-" * (w + 2) + "+" + "-" * (v + 2) + "+"
    body = [f"| {k:<{w}} | {val:<{v}} |" for k, val in rows]
    return "\n".join([line, *body, line])


def cmd_train(a) -> int:
    from .errors import TrainingInterrupted

    initial = 0
    if a.resume:
        cfg, initial = _resume_config(Path(a.resume))
        out = Path(a.resume)
    else:
        cfg = _config_from_args(a)
        out = Path(a.out or f"runs/{Path(str(cfg.data)).stem}-{cfg.model}-seed{cfg.seed}")
    try:
        result = train_and_save(cfg, out, a.quiet, resume=bool(a.resume),
                                checkpoint_every=a.checkpoint_every, initial_epoch=initial,
                                diagnostics_every=a.diagnostics_every if a.diagnostics else None)
    except TrainingInterrupted as e:
        print(f"gammabeta: {e}; training state saved in {out / STATE_FILE}\n"
              f"resume with: gammabeta train --resume {out}", file=sys.stderr)
        return 130
    print(_summary(result, out))
    return 0


def _resume_config(folder: Path):
    """The config and finished-epoch count stored in ``folder``'s training state."""
    from .experiment import TrainConfig
    from .io import load_checkpoint

    path = folder / STATE_FILE
    if not path.exists():
        raise ConfigError(f"--resume {folder}: no {STATE_FILE} there; expected the output "
                          "folder of an earlier gammabeta train run")
    _, meta = load_checkpoint(path)
    try:
        cfg = TrainConfig.from_dict(json.loads(meta["config"]))
        done = int(json.loads(meta["loop"])["epoch"]) - 1
    except (KeyError, ValueError, TypeError) as e:
        raise ConfigError(f"{path}: damaged training state ({e})") from None
    return cfg, done


def cmd_demo(a) -> int:
    from .experiment import TrainConfig

    seeds = [0, 1, 2]
    print("gammabeta demo: BatchNorm networks on MNIST-1D (4,000 train / 1,000 test)\n")
    mlp = []
    for s in seeds:
        r = train_and_save(TrainConfig(seed=s), Path(a.out) / f"mlp-seed{s}", a.quiet)
        mlp.append(100 * r.test_accuracy)
        print(f"  MLP seed {s}: test accuracy {mlp[-1]:.1f}%  ({r.seconds:.1f} s)")
    r = train_and_save(TrainConfig(model="cnn", seed=0), Path(a.out) / "cnn-seed0", a.quiet)
    cnn = 100 * r.test_accuracy
    print(f"  CNN seed 0: test accuracy {cnn:.1f}%  ({r.seconds:.1f} s)")
    print("\nMNIST-1D test accuracy   paper (Greydanus 2020)   gammabeta")
    print(f"  MLP                        {PAPER_TABLE['MLP']:5.1f}%           {sum(mlp) / 3:5.1f}%"
          "  BN MLP 256-256, mean of seeds 0-2")
    print(f"  CNN                        {PAPER_TABLE['CNN']:5.1f}%           {cnn:5.1f}%"
          "  8 x conv-BN-ReLU, 32 channels, seed 0")
    print(f"\nruns written to {a.out}/ (metrics.json, model.safetensors, curves.png)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gammabeta", description="From-scratch NumPy networks with a correct BatchNorm: "
        "train, demo, study, check your own BatchNorm, export to ONNX, predict.")
    p.add_argument("--version", action="version", version=f"gammabeta {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a network and write metrics, checkpoint, curves")
    _add_train_options(t)
    t.set_defaults(func=cmd_train)
    d = sub.add_parser("demo", help="train the default BN MLP (3 seeds) and CNN on MNIST-1D, "
                                    "compare with the paper")
    d.add_argument("--out", default="runs/demo")
    d.add_argument("--quiet", action="store_true")
    d.set_defaults(func=cmd_demo)
    from .check.cli import add_parser as add_check_parser
    from .deploy.cli import add_parser as add_deploy_parsers
    from .study.cli import add_parser as add_study_parser

    add_study_parser(sub)
    add_check_parser(sub)
    add_deploy_parsers(sub)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except GammabetaError as e:
        print(f"gammabeta: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the environment, not the code: say what and where, no traceback
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        print(f"gammabeta: error: {e.strerror or e}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gammabeta: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
