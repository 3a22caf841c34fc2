"""Recipes and overrides: typed, validated before any work, errors that list the valid keys."""
from pathlib import Path

import pytest

from metafwp.train import ConfigError, load_config
from metafwp.train.config import config_to_yaml, trajectory_differences
from tests.helpers import write_mnist

RECIPES = sorted((Path(__file__).parents[2] / "recipes").glob("*.yaml"))


def test_overrides_are_typed():
    config = load_config(None, ["model.mixer=delta", "train.steps=5", "optim.betas=[0.8,0.9]"])
    assert (config.model.mixer, config.train.steps, config.optim.betas) == ("delta", 5, [0.8, 0.9])


@pytest.mark.parametrize("override,message", [
    ("model.mixr=delta", "Unknown config key 'model.mixr'. Did you mean 'model.mixer'? Valid keys of model: kind, "),
    ("trian.steps=3", "Unknown config key 'trian'. Did you mean 'train'? Valid keys: task, data, model, optim, train"),
    ("data.n_wya=3", "Unknown config key 'data.n_wya'. Did you mean 'data.n_way'? Valid keys of data: dataset, root"),
    ("task=regresion", "Unknown task 'regresion'. Valid: few_shot"),
    ("train.progress=fast", "Unknown train.progress 'fast'. Valid: auto, bar, lines, none"),
    ("eval.baselines=[pixels]", "Unknown eval.baselines entry 'pixels' for task few_shot. Valid: pixel_nn, "
                                "prototypes_on_backbone"),
    ("eval.val_every=-1", "eval.val_every must be >= 0"),
    ("train.steps=many", "Bad config value for 'train.steps'"),
    ("model=3", "'model' is a section"),
    ("model.mixer=gru", "Unknown model.mixer 'gru'. Valid: srwm, lstm, attention, hebbian, delta"),
    ("train.steps=0", "train.steps must be >= 1"),
    ("model.feature_map=relu", "Unknown model.feature_map 'relu'. Valid: identity, elu_plus_one"),
    ("steps", "is not key=value"),
    ("eval.baselines=pixel_nn", "eval.baselines is a list: write eval.baselines=[pixel_nn]"),
    ("optim.betas=0.9", "optim.betas is a list: write optim.betas=[0.9]"),
])
def test_bad_settings_say_what_is_valid(override, message):
    with pytest.raises(ConfigError, match=message.replace("?", r"\?").replace("[", r"\[")):
        load_config(None, [override])


@pytest.mark.parametrize("written,progress", [("true", "auto"), ("false", "none"), ("lines", "lines")])
def test_progress_takes_the_booleans_yaml_users_write(written, progress):
    assert load_config(None, [f"train.progress={written}"]).train.progress == progress


def test_the_meta_test_data_is_named_before_training():
    with pytest.raises(ConfigError, match="data.test_dataset=mnist needs data.test_root"):
        load_config(None, ["task=continual", "data.test_dataset=mnist", "eval.baselines=[]"])


def test_on_resume_what_shapes_only_the_test_may_change_and_the_thread_count_may_not(tmp_path):
    base = ["task=continual", "eval.baselines=[]"]
    saved = load_config(None, base)
    write_mnist(tmp_path)
    test_only = ["data.test_dataset=mnist", f"data.test_root={tmp_path}", "data.test_k_shot=5", "data.invert_test=false",
                 "eval.episodes=7", "eval.seed=3", "train.test=false", "train.progress=none"]
    assert trajectory_differences(saved, load_config(None, base + test_only)) == []
    assert trajectory_differences(saved, load_config(None, base + ["train.threads=2"])) == ["train.threads (None -> 2)"]
    multitask = ["task=multitask", "eval.baselines=[]", "data.train_splits=[train,train]"]
    assert trajectory_differences(load_config(None, multitask),
                                  load_config(None, multitask + ["data.test_splits=[val,val]"])) == []


@pytest.mark.parametrize("overrides,message", [
    (["data.test_split=tset"], "Unknown glyphs split 'tset' for data.test_split. Valid: background, evaluation"),
    (["data.val_split=val"], "data.val_split=val shares classes with the training split background of glyphs"),
    (["data.train_split=train", "data.test_split=background"], "data.test_split=background shares classes"),
    (["data.dataset=omniglot", "data.root=/x", "data.train_split=background", "data.test_split=test"],
     "data.test_split=test shares classes with the training split background of omniglot"),
    (["data.dataset=mini_imagenet", "data.root=/x", "data.train_split=train", "data.test_split=train"],
     "data.test_split=train shares classes"),
    (["task=multitask", "eval.baselines=[]", "data.test_splits=[evaluation,val]"],
     r"data.test_splits\[1\]=val shares classes with the training split background of glyphs"),
    (["task=continual", "eval.baselines=[]", "data.train_splits=[backgroud]"], "Unknown glyphs split 'backgroud'"),
])
def test_held_out_splits_are_named_and_never_share_training_classes_before_any_work(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_folder_splits_that_share_class_folders_are_a_warning(tmp_path, capsys):
    for split, classes in (("a", ["cat", "dog"]), ("b", ["dog", "eel"]), ("c", ["fox"])):
        for name in classes:
            (tmp_path / split / name).mkdir(parents=True)
    folder = ["data.dataset=folder", f"data.root={tmp_path}", "data.train_split=a"]
    load_config(None, folder + ["data.test_split=b"])
    assert "warning: data.test_split=b and the training split a" in capsys.readouterr().err
    load_config(None, folder + ["data.test_split=c"])
    assert capsys.readouterr().err == ""


def test_baselines_need_synchronous_feedback():
    with pytest.raises(ConfigError, match="data.feedback=synchronous"):
        load_config(None, ["model.kind=prototypical", "data.feedback=delayed", "data.n_query=0"])


def test_a_recipe_that_does_not_parse_says_so(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("model:\n  mixer: delta\n   num_layers: 2\n")
    with pytest.raises(ConfigError, match="bad.yaml is not valid YAML"):
        load_config(recipe)


RECIPES_DIR = Path(__file__).parents[2] / "recipes"


@pytest.mark.parametrize("recipe,overrides,message", [
    ("glyphs_5way1shot_protonet", ["model.mixer=delta"], "model.mixer is not read with model.kind=prototypical"),
    ("glyphs_5way1shot_lstm", ["model.matched_init=true"], "model.matched_init is not read with .*model.mixer=lstm"),
    ("glyphs_5way1shot_srwm", ["model.kind=pixel_nn", "model.filters=4"], "model.filters is not read with "
                                                                           "model.kind=pixel_nn"),
    ("glyphs_5way1shot_srwm", ["data.rotations=true"], "data.rotations is not read with data.dataset=glyphs"),
    ("glyphs_5way1shot_srwm", ["optim.warmup_steps=10"], "optim.warmup_steps is not read with .*optim.schedule=cosine"),
])
def test_a_key_the_chosen_kind_does_not_read_is_an_error(recipe, overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(RECIPES_DIR / f"{recipe}.yaml", overrides)


def test_keys_of_an_earlier_layer_that_the_kind_does_not_read_are_left_out_with_a_note(capsys, tmp_path):
    config = load_config(RECIPES_DIR / "glyphs_5way1shot_protonet.yaml")  # its base is the SRWM recipe
    assert capsys.readouterr().err == ""  # a base recipe may carry keys of other learners
    written = config_to_yaml(config)
    assert "mixer" not in written and "srwm_input_norm" not in written and "filters: 16" in written
    switched = load_config(RECIPES_DIR / "glyphs_5way1shot_srwm.yaml", ["model.mixer=delta"])
    assert "note: model.srwm_input_norm of " in capsys.readouterr().err
    assert switched.model.srwm_input_norm is False  # back to its default
    assert "srwm_input_norm" not in config_to_yaml(switched) and "beta_activation" in config_to_yaml(switched)
    (tmp_path / "config.yaml").write_text(written)  # a run's config.yaml loads back as the same config
    assert load_config(tmp_path / "config.yaml") == config


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


def test_overrides_that_shape_training_name_their_own_run_folder():
    recipe = RECIPES_DIR / "glyphs_5way1shot_srwm.yaml"
    delta = load_config(recipe, ["model.mixer=delta", "train.steps=5"])
    assert delta.train.name.startswith("glyphs_5way1shot_srwm-") and len(delta.train.name) == 28
    assert load_config(recipe, ["train.steps=5", "model.mixer=delta"]).train.name == delta.train.name  # found again
    assert load_config(recipe, ["model.mixer=delta", "train.steps=6"]).train.name != delta.train.name
    assert load_config(recipe, ["eval.episodes=5", "train.progress=none"]).train.name is None  # the recipe's name
    assert load_config(recipe, ["model.mixer=delta", "train.name=mine"]).train.name == "mine"
