"""Run a study's grid in parallel, saving every finished run at once so a study can resume.

The grid is every combination of the axes' values × the seeds (seeds outermost, so a study
stopped early has every setting for the first seeds). Each run has a key: a hash of its
complete config and task options, so the same run always has the same key and a changed setting
is a new run. Finished runs are appended to ``results.jsonl`` by this (parent) process only:
one complete line per run, written with a single ``write`` on an ``O_APPEND`` descriptor and
then fsync'ed. On start, rows already there are loaded (a torn last line, from a crash in the
middle of a write, is dropped and the file is rewritten atomically without it) and their keys
are skipped, so a resumed study neither loses nor repeats a finished run.

Executors: ``workers=1`` runs in this process; ``workers=N`` uses a ``spawn``
ProcessPoolExecutor; ``dask_scheduler=ADDRESS`` submits the runs to an existing Dask cluster
through ``dask.distributed.Client(ADDRESS)``. Runs are deterministic per seed and use one BLAS
thread, so all three give the same numbers.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterable
from itertools import product
from pathlib import Path

from ..errors import ConfigError, GammabetaError, OutputError
from ..experiment import TrainConfig
from ..io import atomic_write_text
from ..outputs import locked
from .options import OPTIONS, check_combination
from .spec import StudySpec, canonical
from .tasks import execute

__all__ = ["expand", "run_key", "ResultStore", "run_study", "execute_jobs"]

RESULTS = "results.jsonl"


# Where a study's runs differ from `gammabeta train`'s defaults: nothing is chosen during a
# study's runs (each reports its test accuracy after the last epoch), so they hold out no
# validation data unless the study's [base] or an axis sets val_fraction.
STUDY_DEFAULTS = {"val_fraction": 0.0}


def run_key(config: dict, options: dict) -> str:
    """16 hex digits identifying a run by its full config and task options.

    Values equal to their defaults are left out of the hash, so a new option added to
    :class:`TrainConfig` or :data:`options.OPTIONS` (with a default) keeps old keys valid.
    """
    defaults = {**TrainConfig().to_dict(), **STUDY_DEFAULTS}
    cfg = {k: v for k, v in config.items() if k not in defaults or v != defaults[k]}
    opts = {k: v for k, v in options.items() if k not in OPTIONS or v != OPTIONS[k][0]}
    return hashlib.sha256(canonical({"config": cfg, "options": opts}).encode()).hexdigest()[:16]


def _whole_numbers(values: dict, options: dict) -> dict:
    """Whole-number options given as 2.0 become 2, so equal runs get equal keys."""
    out = dict(values)
    for k, v in values.items():
        o = options.get(k)
        if (o is not None and o.kind == "int" and isinstance(v, float) and v.is_integer()):
            out[k] = int(v)
    return out


def expand(spec: StudySpec) -> list[dict]:
    """Every run of ``spec`` as a job dict: key, study, seed, axes (labels), config, options."""
    names = list(spec.axes)
    jobs, keys = [], set()
    for seed in spec.seeds:
        for combo in product(*(spec.axes[n] for n in names)):
            cfg, opts = {**STUDY_DEFAULTS, **spec.base}, dict(spec.options)
            for value in combo:
                for k, v in value["set"].items():
                    if k in OPTIONS:
                        opts[k] = v
                    elif k == "model_options":
                        cfg[k] = {**cfg.get(k, {}), **v}
                    else:
                        cfg[k] = v
            cfg["seed"] = seed
            labels = {n: v["label"] for n, v in zip(names, combo, strict=True)}
            cfg, opts = _whole_numbers(cfg, TrainConfig.options()), _whole_numbers(
                opts, {k: v[1] for k, v in OPTIONS.items()})
            tc = TrainConfig.from_dict(cfg)
            if seed == spec.seeds[0]:  # the combination as a whole (e.g. model_options)
                where = f"the run {labels}" if labels else "every run"
                tc.validate(lambda k, w=where: f"{spec.source}: {k} (in {w})")
                try:
                    check_combination(cfg, opts)
                except ConfigError as e:
                    raise ConfigError(f"{spec.source}: {e} (in {where})") from None
            config = tc.to_dict()
            key = run_key(config, opts)
            if key in keys:
                raise ConfigError(f"{spec.source}: two grid points give the same run "
                                  f"({labels}, seed {seed}); make the axes differ")
            keys.add(key)
            jobs.append({"key": key, "study": spec.name, "seed": seed, "config": config,
                         "options": opts,
                         "axes": {n: v["label"] for n, v in zip(names, combo, strict=True)}})
    return jobs


_METRICS = ("test_accuracy", "test_loss", "seconds", "steps")


def _number_or_none(v) -> bool:
    return v is None or (isinstance(v, int | float) and not isinstance(v, bool))


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON")  # NaN/Infinity: a damaged line, dropped


class ResultStore:
    """The append-only ``results.jsonl`` of a study folder (see the module docstring)."""

    def __init__(self, folder):
        self.path = Path(folder) / RESULTS
        self.rows: dict[str, dict] = {}
        self.dropped = 0
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        try:
            data = self.path.read_bytes()
        except OSError as e:
            raise OutputError(f"cannot read {self.path}: {e.strerror or e}") from e
        lines = data.split(b"\n")
        complete, tail = lines[:-1], lines[-1]  # tail: b"" unless the last line is torn
        good: list[bytes] = []
        for line in complete:
            try:
                row = json.loads(line, parse_constant=_refuse_constant)
                key = row["key"]
                if not (isinstance(key, str) and isinstance(row.get("config"), dict)
                        and isinstance(row.get("options"), dict)
                        and all(_number_or_none(row.get(k)) for k in _METRICS)):
                    raise TypeError("not a run row")
            except (ValueError, KeyError, TypeError, AttributeError):
                self.dropped += 1
                continue
            if key not in self.rows:
                self.rows[key] = row
                good.append(line)
            else:
                self.dropped += 1
        if tail.strip():
            self.dropped += 1
        if self.dropped:  # rewrite without torn or repeated lines before appending again
            atomic_write_text(self.path, b"".join(g + b"\n" for g in good).decode())

    def __contains__(self, key: str) -> bool:
        return key in self.rows

    def append(self, row: dict) -> None:
        """Save one finished run durably (one line, flushed and fsync'ed); ignore repeats."""
        if row["key"] in self.rows:
            return
        line = (json.dumps(row, allow_nan=False, separators=(",", ":")) + "\n").encode()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                view = memoryview(line)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as e:
            raise OutputError(f"cannot append to {self.path}: {e.strerror or e}") from e
        self.rows[row["key"]] = row


def _local(jobs: list[dict], workers: int) -> Iterable[dict]:
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            yield execute(job)
        return
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    pool = ProcessPoolExecutor(max_workers=min(workers, len(jobs)),
                               mp_context=mp.get_context("spawn"),
                               initializer=_watch_parent, initargs=(os.getpid(),))
    finished = False
    try:
        pending = {pool.submit(execute, job) for job in jobs}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                yield fut.result()
        finished = True
    finally:
        if not finished:  # error or interrupt: stop the runs in flight too
            for proc in list((getattr(pool, "_processes", None) or {}).values()):
                proc.terminate()
        pool.shutdown(wait=finished, cancel_futures=True)


def _watch_parent(parent: int) -> None:
    """In a worker: exit as soon as the study process is gone (e.g. killed with SIGKILL)."""
    import threading

    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _dask(jobs: list[dict], address: str) -> Iterable[dict]:
    try:
        from dask.distributed import Client, as_completed
    except ImportError:
        raise ConfigError("--dask-scheduler needs dask and distributed: "
                          "pip install 'gammabeta[dask]'") from None
    with Client(address, set_as_default=False) as client:
        futures = [client.submit(execute, job, pure=False) for job in jobs]
        try:
            for fut in as_completed(futures, loop=client.loop):
                yield fut.result()
        finally:
            client.cancel(futures)


def execute_jobs(jobs: list[dict], workers: int = 1,
                 dask_scheduler: str | None = None) -> Iterable[dict]:
    """Yield the rows of ``jobs`` as they finish, on the chosen executor."""
    if dask_scheduler:
        return _dask(jobs, dask_scheduler)
    return _local(jobs, workers)


def _named(rows: Iterable[dict], spec: StudySpec) -> Iterable[dict]:
    """The rows, with a run's error prefixed by the study file that asked for it."""
    try:
        yield from rows
    except GammabetaError as e:
        raise type(e)(f"{spec.source}: a run failed: {e}") from None


def run_study(spec: StudySpec, out, workers: int | None = None,
              dask_scheduler: str | None = None, progress: bool = True, command: str = "",
              on_result: Callable[[dict], None] | None = None, report: bool = True) -> dict:
    """Run (or resume) ``spec`` into folder ``out``; write results and the report.

    Returns ``{"rows": rows in grid order, "ran": runs executed now, "skipped": runs found
    already finished, "seconds": wall time, "outputs": files written}``.
    """
    out = Path(out)
    jobs = expand(spec)
    check_study_folder(out, spec)
    created = not out.exists()
    try:
        with locked(out):
            check_study_folder(out, spec)
            return _run_locked(spec, jobs, out, workers, dask_scheduler, progress, command,
                               on_result, report)
    except BaseException:
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # a start that failed leaves no empty folder
        raise


def check_study_folder(out: Path, spec: StudySpec) -> None:
    """Refuse a folder that holds something other than this study's earlier results: files
    a study writes but no ``study.json`` (someone's own report.md), or another study."""
    if out.exists() and not out.is_dir():
        raise OutputError(f"study output {out}: is a file, not a folder")
    marker = out / "study.json"
    if not marker.exists():
        found = sorted(p.name for p in out.iterdir())[:3] if out.is_dir() else []
        if found:
            raise OutputError(f"study output {out} is not empty ({', '.join(found)}, ...) and "
                              "holds no study.json, so it is not a study folder; choose "
                              "another --out")
        return
    try:
        held = json.loads(marker.read_text(encoding="utf-8"))
        name, source, scale = held.get("name"), held.get("source"), held.get("scale", "full")
    except (OSError, ValueError, AttributeError, UnicodeDecodeError) as e:
        raise OutputError(f"{marker}: unreadable ({e}); choose another --out") from None
    if name != spec.name or _where(source) != _where(spec.source) or scale != spec.scale:
        raise OutputError(f"study output {out} holds the study {name!r} from {source} at scale "
                          f"{scale}, not {spec.name!r} from {spec.source} at scale "
                          f"{spec.scale}; choose another --out (running the same study file "
                          "at the same scale again resumes it)")


def _check_data(out: Path, spec: StudySpec, jobs: list[dict]) -> dict:
    """Fingerprints of the data of ``jobs`` (each dataset loaded once), checked against the
    ones the folder's earlier runs used: finished rows are reused only for the same data."""
    from ..data.registry import load_dataset
    from ..experiment import fingerprint

    prints, seen = {}, set()
    for job in jobs:
        c = job["config"]
        key = json.dumps([c["data"], c["data_dir"], c["download"], job["seed"]])
        if key not in seen:
            seen.add(key)
            try:
                prints[key] = fingerprint(load_dataset(c["data"], data_dir=c["data_dir"],
                                                       download=c["download"],
                                                       seed=job["seed"]))
            except GammabetaError as e:
                raise type(e)(f"{spec.source}: the data of its runs: {e}") from None
    try:
        held = json.loads((out / "study.json").read_text(encoding="utf-8")).get("data", {})
    except (OSError, ValueError, AttributeError):
        held = {}
    for key, fp in prints.items():
        if isinstance(held, dict) and held.get(key) not in (None, fp):
            data = json.loads(key)[0]
            raise OutputError(f"study output {out}: the data {data!r} is not the data its "
                              "finished runs used (its contents changed, or a relative path "
                              "now names another file); choose another --out")
    return prints


def _where(source) -> str:
    """A study's source as one spelling: built-ins by name, files by resolved path."""
    s = str(source)
    return s if s.startswith("builtin:") or s == "<string>" else str(Path(s).resolve())


def _run_locked(spec, jobs, out, workers, dask_scheduler, progress, command, on_result,
                report) -> dict:
    t0 = time.perf_counter()
    store = ResultStore(out)
    pending = [j for j in jobs if j["key"] not in store]
    skipped = len(jobs) - len(pending)
    prints = _check_data(out, spec, jobs)  # loads each dataset: parallel workers find it cached
    atomic_write_text(out / "study.json",
                      json.dumps({**spec.to_dict(), "data": prints}, indent=2) + "\n")
    workers = (os.cpu_count() or 1) if workers is None else max(1, int(workers))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), initial=skipped, desc=spec.name, unit="run",
                   file=sys.stderr, dynamic_ncols=True)
    try:
        for row in _named(execute_jobs(pending, workers, dask_scheduler), spec):
            store.append(row)
            if on_result is not None:
                on_result(row)
            if bar is not None:
                bar.update(1)
                if row.get("test_accuracy") is not None:
                    bar.set_postfix(last=f"{100 * row['test_accuracy']:.1f}%")
    finally:
        if bar is not None:
            bar.close()
    # labels come from the current spec: a run saved under older axis names is still this run
    rows = [{**store.rows[j["key"]], "axes": j["axes"]} for j in jobs]
    outputs = []
    if report:
        from .report import write_outputs

        outputs = write_outputs(spec, rows, out, command=command)
    return {"rows": rows, "ran": len(pending), "skipped": skipped,
            "seconds": time.perf_counter() - t0, "outputs": outputs}
