"""The rules between config keys (``validate`` checks them after every key's own rules).

A rule of one key sits beside its field (``tseg.config.schema``); a rule that relates several
keys is a ``Between`` here, naming them by dotted key. Each key named is checked to be a value
of the schema when this module is imported, so a renamed field cannot leave a rule unchecked.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterable

from .rules import Between
from .schema import section_of

_IMG, _TXT = "model.image", "model.text"
# Each key named here must be a value of the schema: checked below, when this module is imported.
BETWEEN: tuple[Between, ...] = (
    Between(("data.scale_min", "data.scale_max"), lambda lo, hi: lo <= hi,
            "config keys 'data.scale_min' > 'data.scale_max'"),
    Between(("model.tau_min", "model.tau_max"), lambda lo, hi: lo <= hi,
            "config keys 'model.tau_min' > 'model.tau_max'"),
    # the temperature is clamped to [tau_min, tau_max]: a start outside was moved silently
    Between(("model.tau_min", "model.tau_init", "model.tau_max"), lambda lo, v, hi: lo <= v <= hi,
            "config key 'model.tau_init' = {1} is outside [model.tau_min, model.tau_max] = "
            "[{0}, {2}]"),
    Between(("data.stream", "data.dataset"), lambda on, ds: not on or ds in ("webdataset", "hf"),
            "config key 'data.stream' streams WebDataset shards or a Hugging Face dataset, but "
            "data.dataset = {1}; set data.dataset=webdataset data.shards=... (or hf)"),
    Between(("data.stream", "train.mode"), lambda on, mode: not on or mode == "weak",
            "config key 'data.stream' trains on image-level text only (train.mode=weak), but "
            "train.mode = {1}: shards hold no masks or boxes"),
    Between((f"{_IMG}.name", "data.image_size", f"{_IMG}.patch_size"),
            lambda name, size, patch: name != "vit" or size % patch == 0,
            "config key 'data.image_size' = {1} must be a multiple of 'model.image.patch_size' "
            "= {2}"),
    Between((f"{_IMG}.name", f"{_IMG}.stem", f"{_IMG}.patch_size"),
            lambda name, stem, patch: name != "vit" or stem != "conv" or patch % 4 == 0,
            "config key 'model.image.patch_size' = {2} must be a multiple of 4 with "
            "model.image.stem=conv"),
    Between((f"{_IMG}.name", f"{_IMG}.patch_size"),
            lambda name, patch: name != "efficientnet_lite0" or patch in (4, 8, 16),
            "config key 'model.image.patch_size' = {1}: the EfficientNet hybrid's output stride "
            "is one of 4, 8, 16"),
    # timm's and transformers' attention split a width into equal heads
    Between((f"{_IMG}.embed_dim", f"{_IMG}.num_heads"), lambda width, heads: width % heads == 0,
            "config key 'model.image.num_heads' = {1} must divide 'model.image.embed_dim' = {0}"),
    # only a BERT built here: a pretrained one brings its own sizes
    Between((f"{_TXT}.name", f"{_TXT}.hidden_size", f"{_TXT}.num_heads"),
            lambda name, width, heads: name != "bert" or width % heads == 0,
            "config key 'model.text.num_heads' = {2} must divide 'model.text.hidden_size' = {1}"),
    Between(("train.mode", "data.pseudo_masks"), lambda mode, masks: mode != "pseudo" or masks,
            "config key 'train.mode' = 'pseudo' trains on pseudo masks, but 'data.pseudo_masks' "
            "is empty: set it to a folder written by tseg pseudo-label"),
)  # fmt: skip


def check_keys(rules: Iterable[Between]) -> None:
    """Raise ``ValueError`` unless every key each rule names is a value of the schema (a field
    that is not a section)."""
    for rule_ in rules:
        for key in rule_.keys:
            try:
                typ = typing.get_type_hints(section_of(key))[key.split(".")[-1]]
            except KeyError:
                raise ValueError(
                    f"a rule between config keys names '{key}', no config key"
                ) from None
            if dataclasses.is_dataclass(typ):
                raise ValueError(
                    f"a rule between config keys names '{key}', a section, not a value"
                )


# At import: a rule naming a key that is gone must fail loudly, not pass silently.
check_keys(BETWEEN)
