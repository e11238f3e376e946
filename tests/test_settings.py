import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from two_tower_recsys.errors import ConfigError
from two_tower_recsys.pipelines.hydra_edge import (
    compose_settings,
    config_dir,
    register_schemas,
    schema_groups,
)
from two_tower_recsys.settings import (
    AppConfig,
    DataConfig,
    EvalConfig,
    InferConfig,
    TrainerConfig,
    settings_from_mapping,
)


def test_default_config_has_the_original_defaults():
    settings = compose_settings()
    assert settings.data.name == "ml-20m"
    assert settings.data.md5 == "cd245b17a1ae2cc31bb14903e1204af3"
    assert settings.data.size_bytes == 198_702_078
    assert (settings.data.rating_threshold, settings.data.min_user_interactions) == (4.0, 5)
    assert settings.data.min_item_interactions == 5
    assert settings.trainer.max_interactions == 2_000_000
    assert settings.model.embedding_dim == 64 and settings.model.temperature == 1.0
    assert settings.eval.recall_ks == (10, 50, 100)
    assert settings.paths.raw_zip == Path("data/raw/ml-20m.zip")
    assert settings.paths.processed_dir == Path("data/processed")
    assert settings.paths.artifacts_dir == Path("artifacts") and settings.paths.plots_dir == Path("plots")
    assert settings.logging.mlflow.tracking_uri == "http://127.0.0.1:8080"


@pytest.mark.parametrize("name", ["ml-20m", "ml-25m", "ml-32m", "ml-latest-small", "custom", "synthetic"])
def test_every_dataset_config_composes(name):
    settings = compose_settings([f"data={name}"])
    assert settings.data.name == name
    assert settings.paths.raw_zip == Path(f"data/raw/{name}.zip")
    if name.startswith("ml-"):
        assert settings.data.url == f"https://files.grouplens.org/datasets/movielens/{name}.zip"


def test_overrides_reach_the_typed_settings():
    settings = compose_settings(
        ["data=ml-latest-small", "paths.raw_zip=/tmp/x.zip", "data.rating_threshold=3.5"]
    )
    assert settings.paths.raw_zip == Path("/tmp/x.zip")
    assert settings.data.rating_threshold == 3.5


def test_refit_is_off_by_default_and_the_readmes_refit_command_turns_it_on():
    assert compose_settings().trainer.refit is False
    readme = " ".join((Path(__file__).parents[1] / "README.md").read_text().split())
    commands = re.findall(r"`two-tower train ([^`]*trainer\.refit=true[^`]*)`", readme)
    assert commands
    for command in commands:
        assert compose_settings(command.split()).trainer.refit is True


def test_added_unknown_key_is_an_error():
    with pytest.raises(ConfigError, match="^data.colour: Key 'colour' not in 'DataConfig'$"):
        compose_settings(["+data.colour=red"])


def test_wrong_type_names_the_key():
    with pytest.raises(
        ConfigError,
        match="^data.min_user_interactions: Value 'many' of type 'str' could not be converted to Integer$",
    ):
        compose_settings(["data.min_user_interactions=many"])


def test_non_positive_values_are_rejected():
    with pytest.raises(ConfigError, match="infer.k must be positive, got 0"):
        compose_settings(["infer.k=0"])
    with pytest.raises(ConfigError, match="infer.exclude must be one of rated, positives, none"):
        compose_settings(["infer.exclude=seen"])
    with pytest.raises(ConfigError, match=r"infer.answer_table_k must be 0 \(no table\) or positive, got -1"):
        compose_settings(["infer.answer_table_k=-1"])
    assert compose_settings(["infer.answer_table_k=0"]).infer.answer_table_k == 0
    with pytest.raises(ConfigError, match="infer.pq_refine_factor must be positive, got 0"):
        compose_settings(["infer.pq_refine_factor=0"])


def test_literal_choices_are_checked():
    with pytest.raises(ConfigError, match="model.negatives must be one of in_batch, full, mixed"):
        compose_settings(["model.negatives=random"])
    with pytest.raises(ConfigError, match="infer.index must be one of exact, pq, hnsw"):
        compose_settings(["infer.index=ivf"])


def test_missing_required_key():
    with pytest.raises(ConfigError, match="^paths.raw_zip: .* missing mandatory value: raw_zip$"):
        settings_from_mapping(AppConfig, {"data": {"name": "x"}})


def test_tuples_and_nested_dataclasses():
    config = settings_from_mapping(EvalConfig, {"recall_ks": [1, 2], "ndcg_ks": []})
    assert config.recall_ks == (1, 2) and config.ndcg_ks == ()
    data = settings_from_mapping(
        DataConfig, {"name": "s", "synthetic": {"users": 5, "movies": 100, "ratings": 50, "clusters": 4}}
    )
    assert data.synthetic.users == 5


def test_weight_decay_is_refused_with_lazy_adam():
    with pytest.raises(ConfigError, match="trainer.weight_decay applies to trainer.optimizer=adam or adamw"):
        compose_settings(["trainer.weight_decay=0.1"])
    assert (
        compose_settings(["trainer.weight_decay=0.1", "trainer.optimizer=adamw"]).trainer.weight_decay == 0.1
    )


def test_registered_model_name_defaults_to_two_tower_and_null_disables_registration():
    assert compose_settings().logging.mlflow.registered_model_name == "two-tower"
    assert (
        compose_settings(["logging.mlflow.registered_model_name=null"]).logging.mlflow.registered_model_name
        is None
    )
    with pytest.raises(ConfigError, match="registered_model_name must be a model name"):
        compose_settings(["logging.mlflow.registered_model_name=' '"])


def test_sequence_tower_settings_reach_the_model_config():
    settings = compose_settings(
        ["model.user_tower=sequence", "trainer.optimizer=adamw", "model.max_history=30", "model.n_heads=4"]
    )
    assert (settings.model.user_tower, settings.model.max_history, settings.model.n_heads) == (
        "sequence",
        30,
        4,
    )
    assert compose_settings().model.user_tower == "id"


def readme_ml20m_sequence_commands() -> list[list[str]]:
    """The overrides of every `two-tower train data=ml-20m experiment=sequence ...` in the README."""
    readme = " ".join((Path(__file__).parents[1] / "README.md").read_text().split())
    commands = re.findall(r"`two-tower train (data=ml-20m experiment=sequence[^`]*)`", readme)
    return [command.split() for command in commands]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.user_tower=rnn"], "config key model.user_tower must be one of id, sequence, got 'rnn'"),
        (["model.n_heads=3"], "model.embedding_dim (64) must be divisible by model.n_heads (3)"),
        (["model.dropout=1.0"], "model.dropout must be in [0, 1), got 1.0"),
        (["model.max_history=0"], "model.max_history must be positive, got 0"),
        (["model.user_tower=sequence"], "model.user_tower=sequence needs trainer.optimizer=adam or adamw"),
        (["model.label_smoothing=1.0"], "model.label_smoothing must be in [0, 1), got 1.0"),
        (["model.label_smoothing=0.1"], "model.label_smoothing needs model.negatives=full or mixed"),
        (
            ["experiment=sequence", "model.negatives=in_batch"],
            "model.label_smoothing needs model.negatives=full or mixed",
        ),
        (
            ["model.hide_earlier_positives=true", "model.negatives=mixed"],
            "model.hide_earlier_positives needs model.user_tower=sequence and model.negatives=full or "
            "mixed, got user_tower=id, negatives=mixed",
        ),
        (
            ["experiment=sequence", "model.negatives=mixed", "model.sampled_negatives=0"],
            "model.sampled_negatives must be positive, got 0",
        ),
    ],
)
def test_bad_sequence_tower_settings_are_one_line_errors(overrides, message):
    with pytest.raises(ConfigError) as error:
        compose_settings(overrides)
    assert str(error.value).startswith(message)


def test_the_sequence_experiment_sets_the_recipe_and_keeps_later_overrides():
    settings = compose_settings(["experiment=sequence", "trainer.max_epochs=3"])
    assert (settings.model.user_tower, settings.model.negatives, settings.model.l2_reg) == (
        "sequence",
        "full",
        0.0,
    )
    assert (settings.trainer.optimizer, settings.trainer.weight_decay, settings.trainer.lr) == (
        "adamw",
        0.1,
        0.005,
    )
    assert settings.trainer.max_epochs == 3 and settings.model.max_history == 100
    assert settings.trainer.batch_size == 256 and settings.trainer.ema_decay == 0.997
    assert settings.model.label_smoothing == 0.2 and settings.model.hide_earlier_positives
    assert compose_settings(["experiment=sequence"]).trainer.max_epochs == 40
    large_catalogue = readme_ml20m_sequence_commands()  # the README's ML-20M advice, each place it is
    assert len(large_catalogue) >= 2
    for overrides in large_catalogue:  # the recipe with mixed negatives, the two loss options kept
        model = compose_settings(overrides).model
        assert (model.user_tower, model.negatives, model.sampled_negatives) == ("sequence", "mixed", 4096)
        assert model.label_smoothing == 0.2 and model.hide_earlier_positives
    assert compose_settings().model.user_tower == "id"  # the default stays the ID tower


# The structured schema: OmegaConf checks keys and types while Hydra composes.


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["trainer.batch_size=abc"],
            "trainer.batch_size: Value 'abc' of type 'str' could not be converted to Integer",
        ),
        (
            ["logging.mlflow.connect_timeout_s=soon"],
            "logging.mlflow.connect_timeout_s: Value 'soon' of type 'str'",
        ),
        (
            ["trainer.devices=1.5"],
            "trainer.devices: Value '1.5' of type 'float' is incompatible with type hint",
        ),
        (["data.colour=red"], "data.colour: Key 'colour' not in 'DataConfig'"),
        (["+logging.mlflow.colour=red"], "logging.mlflow.colour: Key 'colour' not in 'MlflowConfig'"),
        (["+colour=red"], "colour: Key 'colour' not in 'AppConfig'"),
        (
            ["data=ml-99m"],
            "In 'config': Could not find 'data/ml-99m' Available options in 'data': custom ml-20m",
        ),
    ],
)
def test_the_schema_refuses_wrong_types_and_unknown_keys_in_one_line(overrides, message):
    with pytest.raises(ConfigError) as error:
        compose_settings(overrides)
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)


def test_values_of_a_union_type_keep_their_type():
    settings = compose_settings(["trainer.devices=auto", "trainer.limit_train_batches=0.5"])
    assert (settings.trainer.devices, settings.trainer.limit_train_batches) == ("auto", 0.5)
    settings = compose_settings(["trainer.devices=2", "trainer.limit_train_batches=3"])
    assert (settings.trainer.devices, settings.trainer.limit_train_batches) == (2, 3)
    assert isinstance(settings.trainer.limit_train_batches, int)  # Lightning: batches, not a share


def test_a_mapping_outside_hydra_is_checked_against_the_same_schema():
    with pytest.raises(
        ConfigError, match="^model_config.k: Value 'many' of type 'str' could not be converted"
    ):
        settings_from_mapping(InferConfig, {"k": "many"}, "model_config")
    with pytest.raises(ConfigError, match="^model_config.colour: Key 'colour' not in 'InferConfig'$"):
        settings_from_mapping(InferConfig, {"colour": "red"}, "model_config")
    with pytest.raises(ConfigError, match="exclude must be one of rated, positives, none, got 'seen'"):
        settings_from_mapping(InferConfig, {"exclude": "seen"}, "model_config")
    assert settings_from_mapping(InferConfig, {"history": [3, 1]}).history == (3, 1)  # a tuple: hashable


GROUPS = schema_groups()
GROUP_FILES = sorted((group, path.stem) for group in GROUPS for path in (config_dir() / group).glob("*.yaml"))


def test_every_section_of_the_config_is_a_group_with_files():
    assert {group for group, _ in GROUP_FILES} == set(GROUPS)


@pytest.mark.parametrize(("group", "name"), GROUP_FILES, ids=[f"{g}/{n}" for g, n in GROUP_FILES])
def test_every_group_file_composes_into_its_dataclass_and_sets_only_what_differs(group, name):
    settings = compose_settings([f"{group}={name}"])
    section = getattr(settings, group)
    assert type(section) is GROUPS[group]
    written = yaml.safe_load((config_dir() / group / f"{name}.yaml").read_text())
    assert written["defaults"][0] == "_schema"  # checked against the dataclass, its defaults beneath
    defaults = {spec.name: spec for spec in dataclasses.fields(GROUPS[group])}
    for key, value in written.items():
        if key == "defaults":
            continue
        assert key in defaults, f"{group}/{name}.yaml: {key} is not a field"
        default = defaults[key].default
        assert value != default, f"{group}/{name}.yaml repeats the default {key}={default!r}"
        if "${" not in str(value) and not isinstance(value, dict):
            assert getattr(section, key) == value


def test_a_default_changed_in_the_dataclass_is_what_composes(monkeypatch):
    """The YAML repeats no default: change one in the dataclass and the composed config follows."""
    try:
        monkeypatch.setattr(dataclasses.fields(TrainerConfig)[0], "default", 7)  # max_epochs
        monkeypatch.setattr(
            {f.name: f for f in dataclasses.fields(InferConfig)}["hnsw_ef_search"], "default", 333
        )
        register_schemas()
        settings = compose_settings()
        assert settings.trainer.max_epochs == 7 and settings.infer.hnsw_ef_search == 333
    finally:
        monkeypatch.undo()
        register_schemas()
    assert compose_settings().trainer.max_epochs == TrainerConfig().max_epochs


def test_baselines_default_to_all_three_and_model_ease_or_als_selects_one():
    settings = compose_settings()
    assert settings.eval.baselines == ("popularity", "ease", "als")
    assert compose_settings(["model=ease"]).model.name == "ease"
    assert compose_settings(["model=als"]).model.name == "als"
    assert compose_settings(["eval.baselines=[]"]).eval.baselines == ()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("eval.baselines=[popularity,knn]", r"eval.baselines: unknown baseline\(s\) \['knn'\]"),
        ("eval.ease_l2_grid=[]", "eval.ease_l2_grid must be a non-empty list of positive numbers"),
        ("eval.als_regularization_grid=[1,-1]", "eval.als_regularization_grid must be a non-empty list"),
        ("eval.ease_max_memory_gb=0", "eval.ease_max_memory_gb must be positive"),
        ("eval.beyond_accuracy_ks=[10,0]", r"eval.beyond_accuracy_ks\[1\] must be positive"),
    ],
)
def test_bad_baseline_settings_name_the_field(override, message):
    with pytest.raises(ConfigError, match=message):
        compose_settings([override])
