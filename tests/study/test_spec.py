from pathlib import Path

import pytest

from deploybench.study.spec import (
    StudyConfig,
    StudyFileError,
    deep_merge,
    dump_study_config,
    load_study_config,
    quick_overrides,
    study_model_spec,
)


def test_default_study_is_valid_and_round_trips(tmp_path: Path) -> None:
    config = load_study_config(None)
    assert config.model.source == "torchvision:resnet50"
    assert 16 in config.load.include_concurrency
    path = tmp_path / "study.yaml"
    path.write_text(dump_study_config(config))
    assert load_study_config(path) == config


def test_invalid_study_file_names_every_bad_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "name: x\n"
        "modle: {source: torchvision:resnet18}\n"
        "knobs: {workers: [0, 'two']}\n"
        "load: {window_s: -1, concurency: 3}\n"
        "constraints: {objective: cheapest}\n"
    )
    with pytest.raises(StudyFileError) as excinfo:
        load_study_config(path)
    message = str(excinfo.value)
    for field in (
        "modle",
        "knobs.workers.0",
        "knobs.workers.1",
        "load.window_s",
        "load.concurency",
        "constraints.objective",
    ):
        assert f"{path}: {field}" in message, message


def test_study_file_must_be_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(StudyFileError, match="mapping"):
        load_study_config(path)


def test_cli_overrides_win_over_the_file(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("model: {source: torchvision:resnet18, weights: random}\nload: {window_s: 4}\n")
    config = load_study_config(
        path, {"model": {"source": "torchvision:mobilenet_v3_small"}, **quick_overrides()}
    )
    assert config.model.source == "torchvision:mobilenet_v3_small"
    assert config.model.weights == "random"  # untouched sibling keys survive
    assert config.load.window_s == quick_overrides()["load"]["window_s"]


def test_deep_merge_replaces_leaves_and_merges_maps() -> None:
    merged = deep_merge({"a": {"b": 1, "c": [1]}, "d": 1}, {"a": {"c": [2]}, "e": 3})
    assert merged == {"a": {"b": 1, "c": [2]}, "d": 1, "e": 3}


def test_cluster_study_names_machine_types_and_its_folder_does_not_depend_on_the_address(
    tmp_path: Path,
) -> None:
    path = tmp_path / "cluster.yaml"
    path.write_text(
        "cluster: {address: 'ray://head:10001'}\nmachines: [{instance: c7i.xlarge}, {instance: g6.xlarge}]\n"
    )
    config = load_study_config(path)
    assert [m.instance for m in config.machines] == ["c7i.xlarge", "g6.xlarge"]
    other = load_study_config(path, {"cluster": {"address": "auto"}})
    assert dump_study_config(other) == dump_study_config(config)  # same study, reached another way
    assert "head:10001" not in dump_study_config(config)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("machines: [{instance: c7i.xlarge}]\n", "machines: needs cluster"),
        ("cluster: {}\nmachine: {instance: c7i.xlarge}\n", "a cluster study lists machines"),
        (
            "cluster: {}\nmachines: [{instance: c7i.xlarge}, {instance: c7i.xlarge}]\n",
            "each instance type once",
        ),
        ("cluster: {}\nmachines: [{instance: 'g6 xlarge'}]\n", "machines.0.instance"),
    ],
)
def test_bad_cluster_machines_are_errors_that_say_why(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(StudyFileError, match=error):
        load_study_config(path)


def test_a_relative_model_path_is_made_absolute_for_servers_started_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stacks start in their own work folders: `--model model.tar.gz` must still be found there."""
    pytest.importorskip("torch")  # telling a SageMaker folder from a name loads the model side
    (tmp_path / "model" / "code").mkdir(parents=True)
    (tmp_path / "model" / "code" / "inference.py").write_text("")
    (tmp_path / "cat.jpg").write_bytes(b"jpeg")
    monkeypatch.chdir(tmp_path)
    config = StudyConfig.model_validate({"model": {"source": "model", "payload": "cat.jpg"}})
    spec = study_model_spec(config)
    assert spec.source == str(tmp_path / "model") and spec.payload == tmp_path / "cat.jpg"
    assert study_model_spec(StudyConfig()).source == "torchvision:resnet50"  # names stay names
