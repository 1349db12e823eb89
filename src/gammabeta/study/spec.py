"""Study definitions: a TOML file naming a base training config, the axes that vary and seeds.

A study file looks like::

    name = "my-study"                  # used for the default output folder
    title = "Does γ = 0.5 help?"       # report heading
    description = "..."                # free text, copied into the report
    report = "generic"                 # which analysis writes the report (see report.py)
    seeds = [0, 1, 2]

    [base]                             # any TrainConfig field: the options of every run
    model = "mlp"
    epochs = 20

    [options]                          # per-run task options (study/options.py), e.g.
    eval_every = 20                    # test accuracy every 20 steps

    [axes]                             # the grid: product of all axes × seeds
    gamma_init = ["ones", 0.5]         # plain values set the option the axis is named after
    net = [{label = "MLP", model = "mlp"}, {label = "CNN", model = "cnn", epochs = 10}]

    [quick]                            # overrides for --quick: seeds, base, options, axes
    seeds = [0]
    base = {epochs = 5}

    [tiny]                             # further overrides for --tiny (CI-sized tests)

Unknown keys and malformed TOML raise :class:`~gammabeta.errors.ConfigError` naming the file,
the key and the keys that are valid there.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10: pip install tomli
    import tomli as tomllib  # type: ignore[no-redef]

from ..config import TrainConfig, check_option
from ..errors import ConfigError
from ..outputs import read_small_text, safe_name
from .options import OPTIONS

__all__ = ["StudySpec", "load_spec", "parse_spec", "builtin_names", "builtin_path", "SCALES"]

SCALES = ("full", "quick", "tiny")
TOP_KEYS = ("name", "title", "description", "report", "seeds", "data_with_dir", "base",
            "options", "axes", "quick", "tiny")
SCALE_KEYS = ("seeds", "base", "options", "axes")
TRAIN_KEYS = tuple(TrainConfig.options())
MAX_RUNS = 10_000  # a grid beyond this is a typo, not a study (it would run for weeks)


@dataclass
class StudySpec:
    """A loaded, validated study at one scale (``full``, ``quick`` or ``tiny``).

    ``axes`` maps each axis name to its values, each ``{"label": str, "set": {key: value}}``
    where keys are TrainConfig fields or task options.
    """

    name: str
    title: str
    description: str
    report: str
    seeds: list
    base: dict
    options: dict
    axes: dict
    source: str
    scale: str = "full"
    data_with_dir: str | None = None
    raw: dict = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict:
        """JSON-ready description (what ``study.json`` and the report record)."""
        return {"name": self.name, "title": self.title, "report": self.report,
                "scale": self.scale, "seeds": self.seeds, "base": self.base,
                "options": self.options, "axes": self.axes, "source": self.source}

    def with_data_dir(self, data_dir: str | None) -> StudySpec:
        """A copy whose runs read from ``data_dir`` (and switch to ``data_with_dir`` data)."""
        if not data_dir:
            return self
        base = {**self.base, "data_dir": str(data_dir)}
        if self.data_with_dir:
            base["data"] = self.data_with_dir
        return dataclasses.replace(self, base=base)


def _err(src: str, where: str, msg: str) -> ConfigError:
    return ConfigError(f"{src}: {where}: {msg}")


def _check_keys(src: str, where: str, table, valid) -> None:
    if not isinstance(table, dict):
        raise _err(src, where, f"expected a table, got {type(table).__name__}")
    bad = [k for k in table if k not in valid]
    if bad:
        raise _err(src, where, f"unknown key {bad[0]!r}; valid keys: {', '.join(valid)}")


def _check_value(src: str, where: str, key: str, value) -> None:
    """Check one training option or task option against its :class:`~gammabeta.config.Option`
    (the same definition ``gammabeta train`` uses)."""
    label = f"{src}: {where}.{key}"
    if key in TRAIN_KEYS:
        TrainConfig.check(key, value, label)
    else:
        check_option(key, value, OPTIONS[key][1], label)


def _check_setter(src: str, where: str, table: dict, allow_label: bool = False) -> None:
    valid = (*(("label",) if allow_label else ()), *TRAIN_KEYS, *OPTIONS)
    _check_keys(src, where, table, valid)
    if "seed" in table:
        raise _err(src, f"{where}.seed", "a study sets seeds with seeds = [0, 1, 2] at the top "
                   "level (every setting runs with each)")
    for k, v in table.items():
        if k != "label":
            _check_value(src, where, k, v)


def _normalize_axes(src: str, where: str, axes) -> dict:
    _check_keys(src, where, axes, list(axes) if isinstance(axes, dict) else ())
    out = {}
    for name, values in axes.items():
        w = f"{where}.{name}"
        if not isinstance(values, list) or not values:
            raise _err(src, w, "expected a non-empty list of values")
        norm = []
        for v in values:
            if isinstance(v, dict):
                _check_setter(src, w, v, allow_label=True)
                sets = {k: x for k, x in v.items() if k != "label"}
                label = str(v.get("label") or ", ".join(f"{k}={x}" for k, x in sets.items()))
            else:
                if name == "seed":
                    raise _err(src, w, "a study sets seeds with seeds = [0, 1, 2] at the top "
                               "level, not as an axis")
                if name not in TRAIN_KEYS and name not in OPTIONS:
                    raise _err(src, w, f"axis {name!r} has plain values, so its name must be a "
                               f"training option or task option; valid: "
                               f"{', '.join((*TRAIN_KEYS, *OPTIONS))} (or give each value as "
                               "a table {label = ..., key = value})")
                _check_value(src, where, name, v)
                sets, label = {name: v}, str(v)
            norm.append({"label": label, "set": sets})
        labels = [n["label"] for n in norm]
        dup = sorted({lab for lab in labels if labels.count(lab) > 1})
        if dup:
            raise _err(src, w, f"labels {dup} repeat; every value needs its own label")
        out[name] = norm
    return out


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if k == "model_options" and isinstance(v, dict):
            out[k] = {**out.get(k, {}), **v}
        else:
            out[k] = copy.deepcopy(v)
    return out


def _seeds(src: str, where: str, seeds) -> list:
    top = TrainConfig.options()["seed"].hi
    if (not isinstance(seeds, list) or not seeds
            or any(isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= top
                   for s in seeds)):
        raise _err(src, where, f"got {seeds!r}; expected a non-empty list of integers from 0 "
                   f"to {top:,}")
    if len(set(seeds)) != len(seeds):
        raise _err(src, where, f"seeds {seeds} repeat")
    return list(seeds)


def parse_spec(text: str, source: str = "<string>", scale: str = "full") -> StudySpec:
    """Parse and validate a study from TOML ``text`` at ``scale`` (full, quick or tiny)."""
    if scale not in SCALES:
        raise ConfigError(f"unknown study scale {scale!r}; expected one of {', '.join(SCALES)}")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{source}: not valid TOML: {e}") from None
    _check_keys(source, "top level", raw, TOP_KEYS)
    for key in ("name", "title", "description", "report", "data_with_dir"):
        if key in raw and not isinstance(raw[key], str):
            raise _err(source, key, f"got {raw[key]!r}; expected a string")
    if "name" in raw:
        name = safe_name(raw["name"], f"{source}: name")
    else:  # the file's own name, made safe for a folder name
        name = re.sub(r"[^A-Za-z0-9._+=,-]+", "_", Path(source).stem).lstrip("._") or "study"
    from .report import REPORTS

    report = raw.get("report", "generic")
    if report not in REPORTS:
        raise _err(source, "report", f"unknown report {report!r}; valid: {', '.join(REPORTS)}")
    base = raw.get("base", {})
    _check_setter(source, "base", base)
    options = raw.get("options", {})
    _check_keys(source, "options", options, tuple(OPTIONS))
    for k, v in options.items():
        _check_value(source, "options", k, v)
    axes = _normalize_axes(source, "axes", raw.get("axes", {}))
    seeds = _seeds(source, "seeds", raw.get("seeds", [0]))
    levels = {"full": (), "quick": ("quick",), "tiny": ("quick", "tiny")}[scale]
    for level in ("quick", "tiny"):  # validate both override tables whatever the scale
        over = raw.get(level, {})
        _check_keys(source, level, over, SCALE_KEYS)
        _check_setter(source, f"{level}.base", over.get("base", {}))
        _check_keys(source, f"{level}.options", over.get("options", {}), tuple(OPTIONS))
        for k, v in over.get("options", {}).items():
            _check_value(source, f"{level}.options", k, v)
        new_axes = over.get("axes", {})
        if new_axes and not axes:
            raise _err(source, f"{level}.axes", f"unknown axis {next(iter(new_axes))!r}; "
                       "this table overrides axes of [axes]; valid keys: none (the study has "
                       "no [axes])")
        _check_keys(source, f"{level}.axes", new_axes, tuple(axes))
        new_axes = _normalize_axes(source, f"{level}.axes", new_axes)
        if level in levels:
            base = _merge(base, over.get("base", {}))
            options = {**options, **over.get("options", {})}
            axes = {**axes, **new_axes}
            if "seeds" in over:
                seeds = _seeds(source, f"{level}.seeds", over["seeds"])
    owner: dict = {}  # every option is set by one axis at most: else the later one wins
    for axis, values in axes.items():
        for key in {k for v in values for k in v["set"]}:
            if key in owner and owner[key] != axis:
                raise _err(source, "axes", f"axes {owner[key]!r} and {axis!r} both set "
                           f"{key!r}, so one would silently override the other; set each "
                           "option in one axis")
            owner[key] = axis
    runs = len(seeds) * math.prod(len(v) for v in axes.values())
    if runs > MAX_RUNS:
        sizes = " × ".join([*(str(len(v)) for v in axes.values()), f"{len(seeds)} seeds"])
        raise _err(source, "axes", f"the grid has {runs:,} runs ({sizes}); at most "
                   f"{MAX_RUNS:,} per study: split it into several studies")
    return StudySpec(name=name, title=raw.get("title", name),
                     description=raw.get("description", "").strip(), report=report,
                     seeds=seeds, base=base, options=options, axes=axes, source=source,
                     scale=scale, data_with_dir=raw.get("data_with_dir"), raw=raw)


def builtin_names() -> list[str]:
    """Names of the studies shipped with gammabeta (``study/builtin/*.toml``)."""
    folder = resources.files("gammabeta.study").joinpath("builtin")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def builtin_path(name: str):
    """The packaged TOML file of built-in study ``name`` (a Traversable)."""
    if name not in builtin_names():
        raise ConfigError(f"unknown built-in study {name!r}; built-ins: "
                          f"{', '.join(builtin_names())} (or give a path to a .toml file)")
    return resources.files("gammabeta.study").joinpath("builtin", f"{name}.toml")


def load_spec(name_or_path, scale: str = "full", data_dir: str | None = None) -> StudySpec:
    """Load a built-in study by name or a study file by path, at ``scale``."""
    s = str(name_or_path)
    path = Path(s).expanduser()
    if s.endswith(".toml") or path.exists():
        try:
            text = read_small_text(path, "study file")
        except OSError as e:
            raise ConfigError(f"cannot read study file {path}: {e.strerror or e}") from None
        except UnicodeDecodeError as e:
            raise ConfigError(f"study file {path} is not UTF-8 text (byte {e.start}); "
                              "expected a TOML file") from None
        source = str(path.resolve())  # one spelling, wherever the study is run from
    else:
        text = builtin_path(s).read_text(encoding="utf-8")
        source = f"builtin:{s}.toml"
    return parse_spec(text, source, scale).with_data_dir(data_dir)


def canonical(obj) -> str:
    """Stable JSON text of ``obj`` (sorted keys): the basis of run keys."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
