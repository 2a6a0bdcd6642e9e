"""Every model preset and every shipped recipe builds exactly the config frozen in a fixture.

``tests/fixtures/built_configs.json`` holds ``to_dict(build_config(...))`` of each model preset
(``model.preset=<name>`` alone) and each YAML recipe, written once from the code before the
config package was reorganised (issue 27). A refactor of the config code or of the recipe files
must leave every entry as it is: a changed default shows here as a changed key. Only a deliberate
change of a default edits the fixture, in the commit that makes it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tseg.config import build_config, choices, recipe_names, recipe_path, to_dict

FIXTURE = Path(__file__).parent / "fixtures" / "built_configs.json"
ENTRIES: list[dict[str, Any]] = json.loads(FIXTURE.read_text(encoding="utf-8"))["entries"]


def _label(entry: dict[str, Any]) -> str:
    return " ".join([entry["recipe"] or "(no file)", *entry["overrides"]])


@pytest.mark.parametrize("entry", ENTRIES, ids=_label)
def test_built_config_matches_the_fixture(entry: dict[str, Any]) -> None:
    path = recipe_path(entry["recipe"]) if entry["recipe"] else None
    built = to_dict(build_config(path, entry["overrides"]))
    # Compared as JSON text too: 1 == 1.0 in Python, but an int turned float is a change.
    assert built == entry["config"]
    assert json.dumps(built, sort_keys=True) == json.dumps(entry["config"], sort_keys=True)


def test_the_fixture_covers_every_preset_and_recipe() -> None:
    presets = {
        o.split("=", 1)[1]
        for e in ENTRIES
        if e["recipe"] is None
        for o in e["overrides"]
        if o.startswith("model.preset=")
    }
    assert presets == set(choices("model.preset"))
    assert {e["recipe"] for e in ENTRIES if e["recipe"]} == set(recipe_names())


def test_a_preset_file_built_alone_is_the_preset() -> None:
    """Presets are YAML files read by the experiment files' loader; each names itself."""
    from tseg.config.recipes import PRESET_DIR

    assert sorted(p.stem for p in PRESET_DIR.glob("*.yaml")) == sorted(choices("model.preset"))
    for name in choices("model.preset"):
        alone = build_config(PRESET_DIR / f"{name}.yaml")
        assert alone == build_config(None, [f"model.preset={name}"]), name
