"""Configuration: the original's keys and defaults, merged strictly from YAML.

Port of the original `misc/config.py` (`__C`, `cfg_from_file`, `_merge_a_into_b`). Differences:

* No global mutable `cfg`: `load_config` returns a read-only `Config` that callers pass around.
* Every key of the original keeps its name and default, except `TRAIN.LR_DECAY_EPOCH`, which is 100
  (the paper's schedule) instead of the original 50 (docs/porting.md, "Where the port differs").
* A few keys the port needs are added, each marked "port addition" below.
* YAML numbers such as `2e-4` are read as floats (PyYAML alone reads them as strings), and an
  integer is accepted where a float is expected; any other type mismatch, and any unknown key, is an
  error that names the key and the file.
"""
from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any, Iterator, Mapping

import yaml

from misc.errors import ConfigError
from misc.utils import atomic_write_text

_DEFAULTS: dict[str, Any] = {
    "DATASET_NAME": "birds",
    "EMBEDDING_TYPE": "cnn-rnn",  # 'cnn-rnn' or 'skip-thought': which embeddings pickle to read
    "CONFIG_NAME": "",  # prefix of the run folder: stageI, stageII
    "GPU_ID": 0,  # accepted at 0 only: GPUs are chosen with --gpu
    "Z_DIM": 100,
    "SEED": 0,  # port addition: seeds NumPy, TensorFlow and the data sampler
    "DATA_DIR": "",  # port addition: '' means Data/<DATASET_NAME>
    "OUTPUT_DIR": "ckt_logs",  # port addition: runs go to <OUTPUT_DIR>/<DATASET_NAME>/<CONFIG_NAME>_<time>
    "TEST": {
        "LR_IMSIZE": 64,
        "HR_IMSIZE": 256,
        "NUM_COPY": 16,
        "BATCH_SIZE": 64,
        "PRETRAINED_MODEL": "",
        "CAPTION_PATH": "",
    },
    "TRAIN": {
        "FLAG": True,
        "BATCH_SIZE": 64,
        "NUM_COPY": 4,
        "MAX_EPOCH": 600,
        "SNAPSHOT_INTERVAL": 2000,
        "PRETRAINED_MODEL": "",
        "PRETRAINED_EPOCH": 600,
        "DISCRIMINATOR_LR": 2e-4,
        "GENERATOR_LR": 2e-4,
        "LR_DECAY_EPOCH": 100,  # the original default was 50; the paper halves every 100 epochs
        "NUM_EMBEDDING": 4,
        "COND_AUGMENTATION": True,
        "B_WRONG": True,
        "COEFF": {"KL": 2.0},
        "FINETUNE_LR": False,  # accepted at false only: not ported
        "FT_LR_RETIO": 0.1,  # sic: the original's spelling of "ratio"
        "SYNC_BN": True,  # port addition: batch-norm statistics over the global batch on N replicas
        "SUMMARY_INTERVAL": 1,  # port addition: TensorBoard scalars every N iterations (original: 1)
        # port addition: 'none' (float32), 'bfloat16' (CPUs with AMX / AVX-512 bf16, recent GPUs) or
        # 'float16' (GPUs; with dynamic loss scaling); variables and losses stay float32
        "MIXED_PRECISION": "none",
    },
    "GAN": {
        "EMBEDDING_DIM": 128,
        "DF_DIM": 64,
        "GF_DIM": 128,
        "NETWORK_TYPE": "default",
        "R_NUM": 4,  # port addition: Stage-II residual blocks (fixed to 4 in the original)
        # port addition: leaky ReLU after the Stage-I discriminator's 3rd and 4th convolutions, as
        # the paper draws it; the original code (False) has no activation there
        "D_PAPER_ACTIVATIONS": False,
    },
    "TEXT": {
        "DIMENSION": 1024,  # port addition: text embedding size, checked against the data
    },
}

# Values a key may take, beyond its type.
# The values of TRAIN.MIXED_PRECISION (and of --mixed-precision).
PRECISIONS = ("none", "bfloat16", "float16")

_CHOICES = {
    "EMBEDDING_TYPE": ("cnn-rnn", "skip-thought"),
    "GAN.NETWORK_TYPE": ("default",),  # the unused 'simple' variant is not ported
    "TRAIN.MIXED_PRECISION": PRECISIONS,
}
# Keys of the original that this port accepts only at their default, each with what to do instead.
_DEFAULT_ONLY = {
    "GPU_ID": "is not used by this port: GPUs are chosen with --gpu (e.g. --gpu 1; by default every visible one)",
    "TRAIN.FINETUNE_LR": "is not ported: fine-tuning the Stage-I networks inside Stage-II is off in every "
                         "original config",
}
_POSITIVE = {
    "Z_DIM", "TEST.LR_IMSIZE", "TEST.HR_IMSIZE", "TEST.NUM_COPY", "TEST.BATCH_SIZE",
    "TRAIN.BATCH_SIZE", "TRAIN.NUM_COPY", "TRAIN.SNAPSHOT_INTERVAL", "TRAIN.DISCRIMINATOR_LR",
    "TRAIN.GENERATOR_LR", "TRAIN.LR_DECAY_EPOCH", "TRAIN.NUM_EMBEDDING", "TRAIN.SUMMARY_INTERVAL",
    "GAN.EMBEDDING_DIM", "GAN.DF_DIM", "GAN.GF_DIM", "GAN.R_NUM", "TEXT.DIMENSION",
}
_NON_NEGATIVE = {"SEED", "TRAIN.MAX_EPOCH", "TRAIN.PRETRAINED_EPOCH", "TRAIN.COEFF.KL", "TRAIN.FT_LR_RETIO"}


class _Loader(yaml.SafeLoader):
    """A safe YAML loader that reads `2e-4` and `1e5` as floats, as YAML 1.2 does."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$|^[-+]?\d+\.\d*$"),
    list("-+0123456789."),
)  # appended after PyYAML's own int resolver, so "600" stays an integer


class Config(Mapping):
    """A read-only, nested configuration with attribute access (`cfg.TRAIN.BATCH_SIZE`).

    Port of the original EasyDict `cfg`, but passed around instead of imported as a global.
    """

    def __init__(self, values: Mapping[str, Any]):
        data = {}
        for key, value in values.items():
            data[key] = Config(value) if isinstance(value, Mapping) else value
        object.__setattr__(self, "_data", data)

    def __getattr__(self, key: str) -> Any:
        try:
            return self._data[key]
        except KeyError:
            raise AttributeError(key) from None

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError("Config is read-only; use cfg.updated({...}) or load_config(overrides=...)")

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"Config({self.to_dict()!r})"

    def to_dict(self) -> dict[str, Any]:
        """Return a plain nested dict copy."""
        return {k: v.to_dict() if isinstance(v, Config) else copy.deepcopy(v) for k, v in self._data.items()}

    def updated(self, overrides: Mapping[str, Any], source: str = "overrides") -> "Config":
        """Return a new Config with dotted-key `overrides` merged strictly (see `load_config`)."""
        merged = self.to_dict()
        for dotted, value in overrides.items():
            _merge(merged, _nest(dotted, value), source, prefix="")
        _validate(merged, source)
        return Config(merged)

    def data_dir(self) -> Path:
        """The dataset folder: `DATA_DIR` if set, else `Data/<DATASET_NAME>` as in the original."""
        return Path(self.DATA_DIR) if self.DATA_DIR else Path("Data") / self.DATASET_NAME


def default_config() -> Config:
    """The defaults of the original `misc/config.py`, plus the port's additions."""
    return Config(_DEFAULTS)


def _nest(dotted: str, value: Any) -> dict[str, Any]:
    out: Any = value
    for part in reversed(dotted.split(".")):
        out = {part: out}
    return out


def _type_name(value: Any) -> str:
    return {bool: "a boolean (true/false)", int: "an integer", float: "a number", str: "a string",
            dict: "a section"}.get(type(value), type(value).__name__)


def _merge(into: dict[str, Any], new: Mapping[str, Any], source: str, prefix: str) -> None:
    """Merge `new` into `into` in place; unknown keys and type mismatches raise ConfigError."""
    for key, value in new.items():
        name = f"{prefix}{key}"
        if not isinstance(key, str) or key not in into:
            section = f" in {prefix[:-1]}" if prefix else ""
            valid = ", ".join(sorted(into))
            raise ConfigError(f"{source}: unknown key '{name}' (valid keys{section}: {valid})")
        default = into[key]
        if isinstance(default, dict):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{source}: '{name}' must be a section of keys, got {value!r}")
            _merge(default, value, source, prefix=f"{name}.")
            continue
        if type(default) is float and type(value) is int:
            value = float(value)
        if type(value) is not type(default):
            raise ConfigError(
                f"{source}: '{name}' must be {_type_name(default)} like the default {default!r}, "
                f"got {value!r}")
        into[key] = value


def _lookup(values: Mapping[str, Any], dotted: str) -> Any:
    node: Any = values
    for part in dotted.split("."):
        node = node[part]
    return node


def _validate(values: Mapping[str, Any], source: str) -> None:
    """Check value ranges and choices that types alone do not catch."""
    def get(dotted: str) -> Any:
        return _lookup(values, dotted)

    def get_default(dotted: str) -> Any:
        return _lookup(_DEFAULTS, dotted)

    for dotted, instead in _DEFAULT_ONLY.items():
        default = get_default(dotted)
        if get(dotted) != default:
            raise ConfigError(f"{source}: '{dotted}' {get(dotted)!r} {instead}; leave it at {default!r}")
    for dotted, allowed in _CHOICES.items():
        if get(dotted) not in allowed:
            raise ConfigError(f"{source}: '{dotted}' must be one of {', '.join(allowed)}, got {get(dotted)!r}")
    for dotted in _POSITIVE:
        if get(dotted) <= 0:
            raise ConfigError(f"{source}: '{dotted}' must be positive, got {get(dotted)!r}")
    for dotted in _NON_NEGATIVE:
        if get(dotted) < 0:
            raise ConfigError(f"{source}: '{dotted}' must not be negative, got {get(dotted)!r}")


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML text with the project's loader; syntax errors name `source`."""
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as err:
        where = ""
        mark = getattr(err, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(err, "problem", None) or "syntax error"
        raise ConfigError(f"{source}: not valid YAML{where} ({problem})") from None


def parse_override(text: str) -> tuple[str, Any]:
    """Split a command-line override `KEY=VALUE` (VALUE read as YAML) into its key and value."""
    if "=" not in text:
        raise ConfigError(f"--set {text}: expected KEY=VALUE, e.g. TRAIN.MAX_EPOCH=10")
    key, raw = text.split("=", 1)
    return key.strip(), parse_yaml(raw, f"--set {text}") if raw.strip() else ""


def load_config(path: str | os.PathLike | None = None,
                overrides: Mapping[str, Any] | None = None) -> Config:
    """Load the defaults, merge the YAML file at `path`, then dotted-key `overrides`.

    Port of `cfg_from_file`. Args:
      path: a YAML file using the original keys (nested sections TRAIN, GAN, TEST, TEXT), or None.
      overrides: e.g. `{"TRAIN.MAX_EPOCH": 2}`, merged with the same strictness.

    Returns:
      The resolved, read-only `Config`.

    Raises:
      ConfigError: a missing or unreadable file, invalid YAML, an unknown key, a wrong type or an
        out-of-range value; the message names the file (or `--set`) and the key.
    """
    values = copy.deepcopy(_DEFAULTS)
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: no such config file")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"{path}: cannot read the config file ({err.__class__.__name__})") from None
        loaded = parse_yaml(text, str(path))
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, Mapping):
            raise ConfigError(f"{path}: a config file must be a mapping of keys, got {_type_name(loaded)}")
        _merge(values, loaded, str(path), prefix="")
        _validate(values, str(path))
    cfg = Config(values)
    if overrides:
        cfg = cfg.updated(overrides, source="--set")
    return cfg


def save_config(cfg: Config, path: str | os.PathLike) -> None:
    """Write the resolved config as YAML (atomically), so a run folder records what it ran."""
    text = yaml.safe_dump(cfg.to_dict(), sort_keys=False, default_flow_style=False)
    atomic_write_text(path, text)
