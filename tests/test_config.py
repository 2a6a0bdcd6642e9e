"""Config: defaults, presets, YAML diffs, dotted overrides and the errors that name the key."""

import pytest

from tseg.config import ConfigError, build_config, from_dict, to_dict


def test_defaults_preset_yaml_and_overrides(tmp_path):
    y = tmp_path / "exp.yaml"
    y.write_text("model:\n  head: spa\ntrain:\n  steps: 7\n")
    cfg = build_config(y, ["train.steps=9", "train.lr=1e-2", "data.hflip=false"])
    assert cfg.model.head == "spa"
    assert cfg.train.steps == 9  # CLI wins over the file
    assert cfg.train.lr == pytest.approx(0.01)
    assert cfg.data.hflip is False


def test_paper_preset():
    cfg = build_config(None, ["model.preset=paper"])
    # Pretrained by default, named on the Hugging Face Hub (read from its cache: docs/hub.md).
    assert cfg.model.image.weights == "hf-hub:timm/vit_small_patch16_384.augreg_in21k_ft_in1k"
    assert cfg.model.text.name == "pretrained"
    assert cfg.model.text.weights == "google/bert_uncased_L-4_H-512_A-8"
    scratch = build_config(
        None, ["model.preset=paper", "model.image.weights=none", "model.text.name=bert"]
    )
    assert (scratch.model.image.weights, scratch.model.text.name) == ("none", "bert")
    assert cfg.model.image.timm_model == "vit_small_patch16_384"
    assert cfg.model.embed_dim == 1024
    assert (cfg.model.text.num_layers, cfg.model.text.hidden_size, cfg.model.text.num_heads) == (
        4,
        512,
        8,
    )
    assert cfg.data.image_size == 384


def test_round_trip():
    cfg = build_config(None, ["model.head=gap"])
    assert from_dict(to_dict(cfg)) == cfg


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.hed=mpa", "unknown config key 'model.hed'"),
        ("nope.x=1", "unknown config key 'nope.x'"),
        ("train.steps=abc", "'train.steps': expected an integer"),
        ("train.steps=0", "'train.steps' = 0 is out of range"),
        ("model.head=max", "'model.head' = 'max': choose one of gap, gmp, spa, mpa"),
        ("data.hflip=maybe", "'data.hflip': expected true/false"),
        ("model.cam_threshold=2", "'model.cam_threshold' = 2.0 is out of range [0.0, 1.0]"),
        ("data.image_size=70", "must be a multiple of 'model.image.patch_size'"),
        ("model.preset=huge", "'model.preset' = 'huge'"),
        ("train.text_lr_scale=-0.1", "'train.text_lr_scale' = -0.1 is out of range [0.0, inf]"),
        ("train.accum_steps=0", "'train.accum_steps' = 0 is out of range"),
        ("trainsteps", "is not of the form key=value"),
        # keys of an unreleased layout are unknown keys like any other
        ("inference.tta_scales=1,2", "unknown config key 'inference.tta_scales'"),
        ("inference.crf_iterations=3", "unknown config key 'inference.crf_iterations'"),
        ("eval.split=val", "unknown config key 'eval.split'"),
        ("train.tfidf_threshold=0.5", "unknown config key 'train.tfidf_threshold'"),
        ("inference.tta=true", "config key 'inference.tta' is a section; expected a mapping"),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        build_config(None, [override])


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        build_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        build_config(bad)
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        build_config(lst)
    unk = tmp_path / "unk.yaml"
    unk.write_text("train:\n  stepz: 3\n")
    with pytest.raises(ConfigError, match="unknown config key 'train.stepz'"):
        build_config(unk)


@pytest.mark.parametrize("value", ["nan", ".nan", "inf", "-.inf"])
def test_non_finite_floats_are_refused_by_name(value):
    with pytest.raises(ConfigError, match="train.lr.*not a finite number"):
        build_config(None, [f"train.lr={value}"])
    with pytest.raises(ConfigError, match="inference.presence_threshold.*not a finite"):
        build_config(None, [f"inference.presence_threshold={value}"])


def test_every_rule_between_keys_names_existing_keys_and_every_number_has_a_rule():
    import dataclasses

    from tseg import config

    flat = config.to_flat(config.Config())
    for between in config._BETWEEN:
        assert all(k in flat for k in between.keys), between.keys
    for key, value in flat.items():
        if isinstance(value, (int, float, list)) and not isinstance(value, bool):
            assert config.rules(key), key
    assert dataclasses.fields(config.TrainConfig)


def test_a_rule_between_keys_naming_no_value_is_refused() -> None:
    """``tseg.config.between`` checks its rules' keys when imported: a key that is not a field,
    or a section rather than a value, raises (so a renamed field cannot leave a rule idle)."""
    from tseg.config.between import check_keys
    from tseg.config.rules import Between

    check_keys([Between(("train.steps", "model.image.depth"), lambda a, b: True, "")])
    for key in ("train.stepz", "nope.steps", "model.image", "model.head.x"):
        with pytest.raises(ValueError, match=f"names '{key}'"):
            check_keys([Between(("train.steps", key), lambda a, b: True, "")])


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.log_every=0", "'train.log_every' = 0 is out of range"),
        ("train.seed=-1", "'train.seed' = -1 is out of range"),
        ("train.steps=1.0e+30", "'train.steps' = 1000000000000000019884624838656 is out of range"),
        ("model.image.num_heads=3", "'model.image.num_heads' = 3 must divide"),
        ("train.momentum=1", "'train.momentum' = 1.0: must be in \\[0, 1\\)"),
        ("model.tau_init=1e+30", "'model.tau_init' = 1e\\+30 is out of range"),
        ("model.tau_init=200", "'model.tau_init' = 200.0 is outside"),
        ("train.out_dir=", "'train.out_dir' = '': must not be empty"),
        ("train.save_every=-1", "'train.save_every' = -1 is out of range"),
        ("eval.max_images=-1", "'eval.max_images' = -1 is out of range"),
        ("data.seed=-1", "'data.seed' = -1 is out of range"),
        ("model.image.num_heads=0", "'model.image.num_heads' = 0 is out of range"),
        ("model.image.embed_dim=-1", "'model.image.embed_dim' = -1 is out of range"),
        ("model.image.stem_channels=0", "'model.image.stem_channels' = 0 is out of range"),
        ("model.text.num_heads=-1", "'model.text.num_heads' = -1 is out of range"),
        ("model.text.hidden_size=0", "'model.text.hidden_size' = 0 is out of range"),
        ("model.text.vocab_size=0", "'model.text.vocab_size' = 0 is out of range"),
        ("model.text.intermediate_size=0", "'model.text.intermediate_size' = 0 is out of range"),
        ("train.eval_every=-1", "'train.eval_every' = -1 is out of range"),
        ("inference.tta.scales=[1,.inf]", "'inference.tta.scales'"),
        ("inference.tta.scales=[1,1e30]", "'inference.tta.scales'"),
    ],
)
def test_issue_26_keys_have_rules(override, message):
    with pytest.raises(ConfigError, match=message):
        build_config(None, [override])


def test_a_fuzz_of_every_key_ends_in_config_errors_only() -> None:
    """Every config key given 14 kinds of bad value (1,666 inputs at the time of writing):
    accepted or one ConfigError naming the key, never another exception."""
    from tseg.config import ConfigError, to_flat

    values = ["-1", "0", "1e30", "-1e30", "x", "nan", "inf", "''", "[]", "[1,x]", "true", "1.5"]
    values += ["{a: 1}", "999999999999999999999"]
    keys = list(to_flat(build_config(None, [])))
    assert len(keys) > 100
    for key in keys:
        for value in values:
            try:
                build_config(None, [f"{key}={value}"])
            except ConfigError as e:
                assert key in str(e) or key.split(".")[-1] in str(e), (key, value, str(e))
