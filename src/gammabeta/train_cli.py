"""``gammabeta train``: flags derived from :class:`~gammabeta.config.TrainConfig`, checked
before anything is read or written, into a folder that never replaces a run silently.

Where each option comes from, lowest priority first: TrainConfig's defaults, then
``--config FILE.toml`` (the keys of a study's ``[base]``), then the flags given. Flags that
were not typed are absent from the parsed namespace (``argparse.SUPPRESS``), so a value
equal to its default still counts as given, and ``--resume`` can refuse options that differ
from the run it continues.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from . import __version__
from .config import MODEL_FLAGS, Option, TrainConfig, parse_text, recipe
from .errors import ConfigError, GammabetaError
from .outputs import (
    RUN_FILES,
    check_run_folder,
    existing_run_files,
    locked,
    read_small_text,
    remove_stale_temporaries,
    run_folder_name,
)
from .progress import Progress, StopOnSignal

__all__ = ["add_train_arguments", "cmd_train", "train_and_save", "STATE_FILE", "flag"]

STATE_FILE = "train_state.safetensors"
_GROUPS = {"data": ("data", "data_dir", "download", "val_fraction"),
           "optimization": ("optimizer", "lr", "momentum", "weight_decay", "schedule",
                            "label_smoothing", "batch_size", "epochs", "seed"),
           "robustness": ("on_nonfinite", "clip_grad_norm"),
           "distributed (mpiexec -n N gammabeta train ...)": ("sync_bn",)}


def flag(name: str) -> str:
    """``batch_size`` -> ``--batch-size``."""
    return "--" + name.replace("_", "-")


def _add(group, name: str, o: Option, default) -> None:
    """One flag; its text is converted and checked by :func:`_given`, not by argparse, so
    every problem reads the same way (``--epochs=0; expected ...``) and all are listed."""
    mlp = recipe("mlp", 1)
    if default is None and name in mlp:
        shown = f"the model's recipe; {mlp[name]} for mlp on vectors"
    elif default is None or isinstance(default, bool):
        shown = o.unset if default is None else {False: "off", True: "on"}[default]
    else:
        shown = default
    help_text = f"{o.help} (default: {shown})"
    if o.kind == "bool":  # --x, or --x/--no-x when it is on by default
        action = argparse.BooleanOptionalAction if default is True else "store_true"
        group.add_argument(flag(name), dest=name, action=action,
                           default=argparse.SUPPRESS, help=help_text)
        return
    metavar = o.metavar or ("{" + ",".join(o.choices) + "}" if o.choices else name.upper())
    group.add_argument(flag(name), dest=name, metavar=metavar, default=argparse.SUPPRESS,
                       help=help_text)


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """Every TrainConfig option as a flag (grouped), the model flags and the run options;
    the epilog lists every model's recipe (the effective defaults of unset options)."""
    from .recipes import add_recipes_epilog

    p.formatter_class = argparse.RawDescriptionHelpFormatter
    add_recipes_epilog(p)
    groups = {g: p.add_argument_group(g) for g in ("data", "model", "optimization",
                                                      "robustness", *list(_GROUPS)[3:])}
    defaults = TrainConfig().to_dict()
    for name, o in TrainConfig.options().items():
        if not o.cli:
            continue
        group = next((g for g, names in _GROUPS.items() if name in names), "model")
        _add(groups[group], name, o, defaults[name])
    for name, o in MODEL_FLAGS.items():
        _add(groups["model"], name, o, "the model's own")
    r = p.add_argument_group("run")
    r.add_argument("--config", metavar="FILE.toml", default=None, action="append",
                   help="read options from a TOML file (the keys of a study's [base]); flags "
                        "given on the command line take precedence")
    r.add_argument("--out", default=None, metavar="DIR",
                   help="output folder (default: runs/DATA-MODEL[-option=value...]-seedN, "
                        "naming every option that differs from its default)")
    r.add_argument("--overwrite", action="store_true",
                   help="replace the run already in --out: its files are deleted when the "
                        "new run starts (otherwise refused)")
    r.add_argument("--resume", default=None, metavar="DIR",
                   help="continue the run in DIR with its own options (other training "
                        "options are refused when they differ)")
    r.add_argument("--checkpoint-every", default=None, metavar="N",
                   help="also save the training state every N steps (always: every epoch)")
    r.add_argument("--diagnostics", action="store_true",
                   help="record per-layer activation statistics and gradient norms into "
                        "DIR/diagnostics.json and DIR/diagnostics.png")
    r.add_argument("--diagnostics-every", default=None, metavar="N",
                   help="with --diagnostics: record every N steps (default 10)")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.add_argument("--distributed", action="store_true",
                   help="train data-parallel over MPI (automatic under mpiexec -n N, N > 1)")


_EVERY = Option("int", "", lo=1, hi=10**9)


def _read_toml(path: Path) -> dict:
    """The options of ``--config FILE``: TrainConfig keys (plus a model_options table)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        raw = tomllib.loads(read_small_text(path, "--config"))
    except OSError as e:
        raise ConfigError(f"--config {path}: cannot read it ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"--config {path}: not UTF-8 text; expected a TOML file") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"--config {path}: not valid TOML ({e})") from None
    if "base" in raw and isinstance(raw["base"], dict) and len(raw) == 1:
        raw = raw["base"]  # a study's [base] table pasted as is
    if not raw:
        raise ConfigError(f"--config {path}: holds no options; expected keys such as "
                          f"model = \"mlp\" (valid: {', '.join(TrainConfig.options())})")
    valid = TrainConfig.options()
    unknown = [k for k in raw if k not in valid]
    if unknown:
        raise ConfigError(f"--config {path}: unknown option(s) {unknown}; valid: "
                          f"{', '.join(valid)}")
    return {k: TrainConfig.check(k, v, f"{path}: {k}") for k, v in raw.items()}


def _given(a) -> dict:
    """The training options typed on the command line, converted and checked (model flags
    go into model_options); every problem is listed in one :class:`ConfigError`."""
    out, model_opts, problems = {}, {}, []
    options = {**TrainConfig.options(), **MODEL_FLAGS}
    for name, o in options.items():
        if not hasattr(a, name):
            continue
        value = getattr(a, name)
        try:
            value = value if o.kind == "bool" else parse_text(flag(name), value, o)
        except ConfigError as e:
            problems.append(str(e))
            continue
        (model_opts if name in MODEL_FLAGS else out)[name] = value
    if problems:
        raise ConfigError("; ".join(problems))
    if model_opts:
        out["model_options"] = model_opts
    return out


def _every(a, name: str) -> int | None:
    text = getattr(a, name)
    return None if text is None else parse_text(flag(name), text, _EVERY)


def config_from_args(a) -> TrainConfig:
    """The validated TrainConfig of ``gammabeta train``'s flags and ``--config`` file."""
    given = _given(a)
    from_file = _read_toml(Path(a.config)) if a.config else {}
    values = {**from_file, **given}
    if "model_options" in from_file and "model_options" in given:
        values["model_options"] = {**from_file["model_options"], **given["model_options"]}

    def label(name):
        if name.startswith("model_options."):  # --channels, or the file's model_options
            key = name.split(".", 1)[1]
            return (flag(key) if key in given.get("model_options", {})
                    else f"{a.config}: {name}" if a.config else name)
        return flag(name) if name in given else f"{a.config}: {name}" if name in from_file \
            else name

    cfg = TrainConfig(**values).validate(label)
    if cfg.data.lower().endswith((".npz", ".csv")):  # --resume from anywhere reads this file
        cfg = dataclasses.replace(cfg, data=str(Path(cfg.data).expanduser().resolve()))
    return cfg


def train_and_save(cfg, out: Path, quiet: bool = False, resume: bool = False,
                   checkpoint_every: int | None = None, initial_epoch: int = 0,
                   diagnostics_every: int | None = None, overwrite: bool = False,
                   parallel=None):
    """Run one training and write metrics.json, model.safetensors and curves.png into ``out``.

    ``out`` must not hold an earlier run unless ``overwrite`` (or ``resume``); it is locked
    for the run. With ``parallel`` every rank trains and only rank 0 checks, locks and
    writes. The full training state goes to ``out/train_state.safetensors`` after every
    epoch (and every ``checkpoint_every`` steps), so ``gammabeta train --resume out`` can
    continue. With ``diagnostics_every`` per-layer statistics go to ``out/diagnostics.json``
    (drawn in ``out/diagnostics.png``).
    """
    from .experiment import run
    from .io import atomic_write_text, save_checkpoint
    from .plots import plot_curves

    out = Path(out)
    cfg = cfg.validate()
    if parallel is not None and not parallel.is_root:  # rank 0 checks, locks and writes
        with StopOnSignal() as stop:
            return run(cfg, state_path=out / STATE_FILE, resume=resume,
                       checkpoint_every=checkpoint_every, should_stop=lambda: stop.requested,
                       parallel=parallel)
    check_run_folder(out, overwrite or resume)
    created = not out.exists()
    prog = Progress(f"{Path(str(cfg.data)).name}/{cfg.model} seed {cfg.seed}", not quiet,
                     initial_epoch)
    diag: list = []

    def on_model(model):
        if overwrite and not resume:  # the data and the model passed every check: the
            for name in RUN_FILES:    # earlier run goes now, so the two never mix
                (out / name).unlink(missing_ok=True)
        if diagnostics_every:
            from .diagnostics import attach

            diag.append(attach(model))

    def on_step(step, loss):
        if diag and step % diagnostics_every == 0:
            diag[0].record_step(step)

    try:
        with locked(out), StopOnSignal() as stop:
            check_run_folder(out, overwrite or resume)  # again, now that the folder is ours
            remove_stale_temporaries(out)
            from .backend import set_compile_notice

            previous_notice = set_compile_notice(prog.compiling)
            try:
                result = run(cfg, on_epoch=prog.on_epoch, on_start=prog.on_start,
                             on_step=on_step, state_path=out / STATE_FILE, resume=resume,
                             on_model=on_model, checkpoint_every=checkpoint_every,
                             should_stop=lambda: stop.requested, parallel=parallel)
            finally:
                set_compile_notice(previous_notice)
                prog.close()
                if diag:
                    diag[0].save(out / "diagnostics.json")
                    from .plots import draw_diagnostics

                    draw_diagnostics(diag[0], out / "diagnostics.png")
            metrics = result.metrics()
            meta = {"format": "gammabeta-checkpoint-1", "gammabeta_version": __version__,
                    "config": json.dumps(result.config.to_dict()),
                    "input_shape": json.dumps(list(result.input_shape)),
                    "num_classes": str(result.num_classes),
                    "input_range": json.dumps(list(result.input_range)),
                    "input_columns": json.dumps(list(result.columns))}
            save_checkpoint(out / "model.safetensors", result.model.state_dict(), meta)
            atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
            plot_curves(metrics["history"], out / "curves.png",
                        title=f"{cfg.data} / {cfg.model}: test accuracy "
                              f"{100 * result.test_accuracy:.2f}%")
    except BaseException:
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # nothing written: leave no empty folder behind
        raise
    return result


def _summary(result, out: Path, parallel=None) -> str:
    h = result.history
    rows = [("data", result.config.data), ("model", result.config.model),
            ("parameters", f"{result.model.num_parameters():,}"),
            ("samples", ", ".join(f"{v:,} {k}" for k, v in result.split.items() if v)),
            ("epochs", str(len(h))), ("final train loss", f"{h.records[-1]['train_loss']:.4f}"),
            *([("validation accuracy", f"{100 * result.val_accuracy:.2f}% (last epoch)")]
              if result.val_accuracy is not None else []),
            ("test loss", f"{result.test_loss:.4f}"),
            ("test accuracy", f"{100 * result.test_accuracy:.2f}% (measured once, at the end)"),
            ("time", f"{result.seconds:.1f} s"), ("outputs", str(out))]
    if parallel is not None:
        norm = result.config.norm  # only norm='batch' becomes SyncBatchNorm
        bn = f"norm {norm}" if norm != "batch" else "SyncBatchNorm" if result.config.sync_bn \
            else "per-worker BatchNorm"
        rows.insert(3, ("processes", f"{parallel.size} (MPI, {bn})"))
    if result.dataset_note:
        rows.insert(1, ("note", result.dataset_note))
    w = max(len(k) for k, _ in rows)
    v = max(len(val) for _, val in rows)
    line = "+" + "-" * (w + 2) + "+" + "-" * (v + 2) + "+"
    body = [f"| {k:<{w}} | {val:<{v}} |" for k, val in rows]
    return "\n".join([line, *body, line])


def _resume_config(folder: Path):
    """The config and finished-epoch count stored in ``folder``'s training state."""
    from .io import load_checkpoint

    path = folder / STATE_FILE
    if not path.is_file():
        done = existing_run_files(folder) if folder.is_dir() else []
        hint = (f" (the run there finished: {', '.join(done)})" if "model.safetensors" in done
                else "")
        raise ConfigError(f"--resume {folder}: no {STATE_FILE} there{hint}; expected the "
                          "output folder of an earlier gammabeta train run")
    _, meta = load_checkpoint(path)
    try:
        cfg = TrainConfig.from_dict(json.loads(meta["config"])).validate()
        done = int(json.loads(meta["loop"])["epoch"]) - 1
    except (KeyError, ValueError, TypeError, GammabetaError) as e:
        raise ConfigError(f"{path}: damaged training state ({e})") from None
    if done < 0:
        raise ConfigError(f"{path}: damaged training state (epoch {done + 1})")
    return cfg, done


def _refuse_conflicts(a, stored: TrainConfig) -> None:
    """``--resume`` keeps the run's options: refuse any given one that differs."""
    given = _given(a)
    if a.config:
        given = {**_read_toml(Path(a.config)), **given}
    if str(given.get("data", "")).lower().endswith((".npz", ".csv")):  # as the run stores it
        given["data"] = str(Path(given["data"]).expanduser().resolve())
    keep = stored.to_dict()
    differ = []
    for k, v in given.items():
        if k == "model_options":
            diff = {mk: mv for mk, mv in v.items() if keep[k].get(mk) != mv}
            differ += [f"{flag(mk)} {mv!r} (the run has {keep[k].get(mk)!r})"
                       for mk, mv in diff.items()]
        elif keep[k] != v:
            differ.append(f"{flag(k)} {v!r} (the run has {keep[k]!r})")
    if differ:
        raise ConfigError(f"--resume {a.resume} continues that run with its own options, but "
                          f"{'; '.join(differ)}; drop them, or start a new run with --out")
    if a.out and Path(a.out).resolve() != Path(a.resume).resolve():
        raise ConfigError(f"--resume {a.resume} writes into its own folder; --out {a.out} "
                          "cannot be combined with it")


def cmd_train(a) -> int:
    from .errors import TrainingInterrupted

    if a.config is not None:
        if len(a.config) > 1:
            raise ConfigError(f"--config given {len(a.config)} times ({', '.join(a.config)}); "
                              "expected one file (put every option in it)")
        a.config = a.config[0]
    for name in ("out", "resume", "config"):
        if getattr(a, name) is not None and not getattr(a, name).strip():
            raise ConfigError(f"{flag(name)} is empty; expected a path")
    initial = 0
    checkpoint_every = _every(a, "checkpoint_every")
    every = _every(a, "diagnostics_every") or 10
    if a.diagnostics_every is not None and not a.diagnostics:
        raise ConfigError("--diagnostics-every needs --diagnostics")
    if a.resume:
        if a.overwrite:
            raise ConfigError("--resume continues a run and --overwrite replaces one; "
                              "give one of them")
        out = Path(a.resume)
        cfg, initial = _resume_config(out)
        _refuse_conflicts(a, cfg)
    else:
        cfg = config_from_args(a)
        out = Path(a.out or Path("runs") / run_folder_name(cfg.to_dict()))
        check_run_folder(out, a.overwrite)
    parallel = _parallel(a, cfg)
    if parallel is not None:  # before any folder is made (the last batch is checked later)
        from .experiment import check_shares

        check_shares(cfg, parallel, cfg.batch_size)
    root = parallel is None or parallel.is_root
    try:
        result = train_and_save(cfg, out, a.quiet or not root, resume=bool(a.resume),
                                checkpoint_every=checkpoint_every, initial_epoch=initial,
                                diagnostics_every=every if a.diagnostics and root else None,
                                overwrite=a.overwrite, parallel=parallel)
    except TrainingInterrupted as e:
        if root:
            print(f"gammabeta: {e}; training state saved in {out / STATE_FILE}\n"
                  f"resume with: gammabeta train --resume {out}", file=sys.stderr)
        return 130
    if root:
        print(_summary(result, out, parallel))
    return 0


def _parallel(a, cfg):
    """A DataParallel under ``mpiexec -n N`` (N > 1) or with --distributed, else None."""
    from .distributed import launched_by_mpi

    if not (a.distributed or launched_by_mpi()):
        return None
    from .distributed import DataParallel

    return DataParallel()
