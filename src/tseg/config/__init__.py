"""Experiment configuration: dataclasses are the schema.

A run's config is built in three layers, later ones winning: the dataclass defaults (with a
named model preset applied), an experiment YAML holding only what differs, and dotted
``key.sub=value`` overrides from the command line. Unknown keys, wrong types and
out-of-range values are rejected with an error that names the key.

Each field carries its own rule (``rule(default, Range(...))``), so a rule cannot name a key
that does not exist; the few rules between keys are in ``between``, checked at import to name
existing keys.

Modules: ``rules`` (Range, Test, OneOf, Between), ``values`` (converting and checking a value),
``schema`` and ``schema_inference`` (the sections), ``between`` (rules between keys),
``presets``, ``yaml_io`` (the safe YAML reader), ``recipes`` (the packaged ``configs``) and
``build`` (set_key, validate, build_config). Everything is imported from ``tseg.config``.
"""

from __future__ import annotations

from ..errors import ConfigError
from .between import BETWEEN as _BETWEEN
from .build import (
    build_config,
    choices,
    from_dict,
    rules,
    save_yaml,
    set_key,
    to_dict,
    to_flat,
    validate,
    with_inference,
)
from .presets import PRESETS
from .recipes import CONFIGS, config_file, recipe_names, recipe_overrides, recipe_path, recipes
from .rules import (
    MANY,
    NAME,
    SEED_MAX,
    TEXT,
    UNIT,
    WIDTH,
    Between,
    OneOf,
    Range,
    Rule,
    Test,
    rule,
)
from .schema import (
    Config,
    DataConfig,
    EvalConfig,
    ImageEncoderConfig,
    ModelConfig,
    PseudoConfig,
    TextEncoderConfig,
    TrainConfig,
)
from .schema_inference import (
    SETTINGS,
    CRFConfig,
    InferenceConfig,
    PAMRConfig,
    ThresholdsConfig,
    TTAConfig,
)
from .values import check
from .yaml_io import ConfigLoader, load_yaml, parse_override, parse_yaml, yaml_problem

__all__ = [
    "CONFIGS",
    "MANY",
    "NAME",
    "PRESETS",
    "SEED_MAX",
    "SETTINGS",
    "TEXT",
    "UNIT",
    "WIDTH",
    "_BETWEEN",
    "Between",
    "CRFConfig",
    "Config",
    "ConfigError",
    "ConfigLoader",
    "DataConfig",
    "EvalConfig",
    "ImageEncoderConfig",
    "InferenceConfig",
    "ModelConfig",
    "OneOf",
    "PAMRConfig",
    "PseudoConfig",
    "Range",
    "Rule",
    "TTAConfig",
    "Test",
    "TextEncoderConfig",
    "ThresholdsConfig",
    "TrainConfig",
    "build_config",
    "check",
    "choices",
    "config_file",
    "from_dict",
    "load_yaml",
    "parse_override",
    "parse_yaml",
    "recipe_names",
    "recipe_overrides",
    "recipe_path",
    "recipes",
    "rule",
    "rules",
    "save_yaml",
    "set_key",
    "to_dict",
    "to_flat",
    "validate",
    "with_inference",
    "yaml_problem",
]
