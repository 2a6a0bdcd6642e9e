"""Building a config: defaults, the model preset, the YAML file, then ``key=value`` overrides.

``set_key`` sets one dotted key (converting the value), ``validate`` checks every key's own
rules and then the rules between keys; ``build_config`` and ``from_dict`` do both.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError
from .between import BETWEEN
from .presets import PRESETS
from .recipes import config_file
from .rules import OneOf, Rule
from .schema import Config, field_of
from .schema_inference import InferenceConfig
from .values import check, coerce, field_types, flatten, short
from .yaml_io import load_yaml, parse_override


def set_key(
    cfg: Any, key: str, value: Any, labels: Mapping[str, str] | None = None, prefix: str = ""
) -> None:
    """Set a dotted key (``model.image.depth``) on ``cfg`` (a Config, or the section at
    ``prefix``), converting the value; ``validate`` (or ``check``) then checks it."""
    full = f"{prefix}.{key}" if prefix else key
    parts = full.split(".")[len(prefix.split(".")) if prefix else 0 :]
    obj: Any = cfg
    for i, part in enumerate(parts):
        types = field_types(obj)
        if part not in types:
            where = ".".join([p for p in (prefix, *parts[:i]) if p])
            known = ", ".join(sorted(types))
            section = f"section '{where}'" if where else "the top level"
            raise ConfigError(f"unknown config key '{full}': {section} has {known}")
        if i == len(parts) - 1:
            typ = types[part]
            if dataclasses.is_dataclass(typ):
                if not isinstance(value, dict):
                    raise ConfigError(f"config key '{full}' is a section; expected a mapping")
                for sub, v in value.items():
                    set_key(cfg, f"{key}.{sub}", v, labels, prefix)
            else:
                setattr(obj, part, coerce(full, value, typ, labels))
        else:
            obj = getattr(obj, part)


def validate(cfg: Config, labels: Mapping[str, str] | None = None) -> Config:
    """Check every key (see ``check``), then the rules between keys (``BETWEEN``)."""
    check(cfg, "", labels)
    flat = to_flat(cfg)
    for rule_ in BETWEEN:
        values = [flat[k] for k in rule_.keys]
        if not rule_.test(*values):
            raise ConfigError(rule_.message.format(*(short(v) for v in values)))
    return cfg


def with_inference(
    ic: InferenceConfig, changes: Mapping[str, Any], labels: Mapping[str, str] | None = None
) -> InferenceConfig:
    """A copy of ``ic`` with ``changes`` (keys under ``inference``: ``threshold``,
    ``tta.scales``, ...) applied and checked. ``tta``, ``crf`` and ``pamr`` also take a
    TTAConfig / CRFConfig / PAMRConfig (used as given), a bool (on or off with the configured
    parameters) or None (off).
    """
    out = copy.deepcopy(ic)
    for key, value in changes.items():
        if key in ("tta", "crf", "pamr") and (value is None or dataclasses.is_dataclass(value)):
            setattr(out, key, copy.deepcopy(value) if value is not None else getattr(out, key))
            if value is None:
                getattr(out, key).enabled = False
            continue
        if key in ("tta", "crf", "pamr") and not isinstance(value, dict):
            key = f"{key}.enabled"  # a bool switches the configured section on or off
        set_key(out, key, value, labels, prefix="inference")
    check(out, "inference", labels)
    return out


def to_flat(cfg: Config) -> dict[str, Any]:
    """The config as a flat dict of dotted keys."""
    return flatten(dataclasses.asdict(cfg))


def to_dict(cfg: Config) -> dict[str, Any]:
    """The config as nested dicts of sections (as ``config.yaml`` and checkpoints hold it)."""
    return dataclasses.asdict(cfg)


def build_config(
    path: str | Path | None = None,
    overrides: list[str] | None = None,
) -> Config:
    """Defaults, then the model preset, then the YAML file, then ``key=value`` overrides."""
    file_data = load_yaml(config_file(path)) if path else {}
    flat_file = flatten(file_data)
    pairs = [parse_override(o) for o in overrides or []]
    # The preset can come from the YAML file or the override list; the last one wins.
    name = "tiny"
    for k, v in [*flat_file.items(), *pairs]:
        if k == "model.preset":
            name = str(v)
    if name not in PRESETS:
        raise ConfigError(
            f"config key 'model.preset' = {short(name)}: choose one of {', '.join(PRESETS)}"
        )
    cfg = Config()
    cfg.model.preset = name
    for k, v in PRESETS[name].items():
        set_key(cfg, k, v)
    for k, v in flat_file.items():
        set_key(cfg, k, v)
    for k, v in pairs:
        set_key(cfg, k, v)
    return validate(cfg)


def from_dict(data: dict[str, Any]) -> Config:
    """Rebuild a config saved with a checkpoint (every key must be known)."""
    if not isinstance(data, dict):
        raise ConfigError(f"a config must be a mapping of sections, got {type(data).__name__}")
    cfg = Config()
    for k, v in flatten(data).items():
        set_key(cfg, k, v)
    return validate(cfg)


def save_yaml(cfg: Config, path: str | Path) -> None:
    """Write the whole config to ``path`` as YAML, in the schema's key order."""
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False), encoding="utf-8")


def rules(key: str) -> tuple[Rule, ...]:
    """The rules of the dotted config key ``key`` (KeyError: no such key)."""
    return field_of(key).metadata.get("rules", ())


def choices(key: str) -> tuple[str, ...]:
    """The values a choice key allows (a registry's names where one defines them)."""
    return next(r for r in rules(key) if isinstance(r, OneOf)).names()
