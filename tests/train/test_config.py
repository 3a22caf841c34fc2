"""Recipes and overrides: typed, validated before any work, errors that list the valid keys."""
from pathlib import Path

import pytest

from metafwp.train import ConfigError, load_config

RECIPES = sorted((Path(__file__).parents[2] / "recipes").glob("*.yaml"))


def test_overrides_are_typed():
    config = load_config(None, ["model.mixer=delta", "train.steps=5", "optim.betas=[0.8,0.9]"])
    assert (config.model.mixer, config.train.steps, config.optim.betas) == ("delta", 5, [0.8, 0.9])


@pytest.mark.parametrize("override,message", [
    ("model.mixr=delta", "Unknown config key 'model.mixr'. Did you mean 'model.mixer'? Valid keys of model: kind, "),
    ("trian.steps=3", "Unknown config key 'trian'. Did you mean 'train'? Valid keys: data, model, optim, train"),
    ("train.steps=many", "Bad config value for 'train.steps'"),
    ("model=3", "'model' is a section"),
    ("model.mixer=gru", "Unknown model.mixer 'gru'. Valid: srwm, lstm, attention, hebbian, delta"),
    ("train.steps=0", "train.steps must be >= 1"),
    ("model.feature_map=relu", "Unknown model.feature_map 'relu'. Valid: identity, elu_plus_one"),
    ("steps", "is not key=value"),
])
def test_bad_settings_say_what_is_valid(override, message):
    with pytest.raises(ConfigError, match=message.replace("?", r"\?").replace("[", r"\[")):
        load_config(None, [override])


def test_baselines_need_synchronous_feedback():
    with pytest.raises(ConfigError, match="data.feedback=synchronous"):
        load_config(None, ["model.kind=prototypical", "data.feedback=delayed", "data.n_query=0"])


def test_a_missing_recipe_points_at_the_shipped_ones():
    with pytest.raises(ConfigError, match="recipes/"):
        load_config("recipes/nope.yaml")


def test_typo_in_a_recipe_file_is_caught(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("model:\n  num_layer: 3\n")
    with pytest.raises(ConfigError, match="Did you mean 'model.num_layers'"):
        load_config(recipe)


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.stem for r in RECIPES])
def test_every_recipe_loads_and_says_what_it_reproduces(recipe):
    config = load_config(recipe)
    assert config.recipe == recipe.stem
    head = recipe.read_text().splitlines()[:6]
    assert head[0].startswith("# ") and any(f"python -m metafwp.train {recipe.parent.name}/{recipe.name}" in line
                                            for line in head)
