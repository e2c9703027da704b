"""Config loading: presets validate, unknown keys and wrong types are errors, overrides apply."""

from __future__ import annotations

from pathlib import Path

import pytest

from dimgen.config import EncoderConfig, from_dict, load_config, replace, save_config
from dimgen.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("name", ["digits-gaussian", "mnist-gaussian", "mnist-uniform"])
def test_presets_load(name: str) -> None:
    cfg = load_config(CONFIGS / f"{name}.yaml")
    assert isinstance(cfg, EncoderConfig)


def test_digits_preset_is_the_default() -> None:
    assert load_config(CONFIGS / "digits-gaussian.yaml") == EncoderConfig()


def test_mnist_preset_is_the_papers_setup() -> None:
    cfg = load_config(CONFIGS / "mnist-gaussian.yaml")
    assert (cfg.data, cfg.dim, cfg.batch_size, cfg.epochs, cfg.encoder, cfg.critic) == (
        "mnist", 2, 1024, 2000, "conv", "mlp",
    )  # fmt: skip


def test_unknown_key_is_named(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("sigma: 0.3\nsigmaa: 0.4\n")
    with pytest.raises(ConfigError, match=r"unknown key.*sigmaa"):
        load_config(p)


@pytest.mark.parametrize(
    "data,match",
    [
        ({"epochs": "ten"}, "epochs"),
        ({"epochs": 1.5}, "epochs"),
        ({"sigma": "0.3x"}, "sigma"),
        ({"sigma": "nan"}, "sigma"),
        ({"amp": "yes"}, "amp"),
        ({"sigma": 0}, "sigma"),
        ({"eps": 0.7}, "eps"),
        ({"dim": 0}, "dim"),
        ({"batch_size": 1}, "batch_size"),
        ({"device": "tpu"}, "device"),
    ],
)
def test_bad_values_are_named(data: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        from_dict(EncoderConfig, data)


def test_not_a_mapping_and_bad_yaml(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(p)
    p.write_text("sigma: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_int_is_accepted_for_float_and_round_trip(tmp_path: Path) -> None:
    cfg = from_dict(EncoderConfig, {"sigma": 1})
    assert cfg.sigma == 1.0 and isinstance(cfg.sigma, float)
    cfg = replace(cfg, dim=4, epochs=None)
    assert cfg.dim == 4 and cfg.epochs == EncoderConfig().epochs
    save_config(cfg, tmp_path / "out.yaml")
    assert load_config(tmp_path / "out.yaml") == cfg


def test_tokens_preset_is_the_documented_command() -> None:
    """configs/digits-tokens.yaml == `dimgen encode --prior uniform --eps 0.25 --epochs 500
    --set squash=steps --set lr_schedule=cosine` (docs/tokenizer.md)."""
    expected = replace(EncoderConfig(), prior="uniform", eps=0.25, epochs=500, squash="steps",
                       lr_schedule="cosine")  # fmt: skip
    assert load_config(CONFIGS / "digits-tokens.yaml") == expected
