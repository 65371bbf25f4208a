"""Feature-group declarations: every mistake names the file, the field and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cupola import Settings
from cupola.errors import InvalidInput
from cupola.features import FeatureStore
from cupola.features.offline_store import OfflineStore
from cupola.features.registry import FeatureRegistry, open_registry
from cupola.specs import SpecError, load_feature_group
from cupola.stores.datalake import Datalake

VALID = {
    "name": "restaurant_prep",
    "owner": "eats-data",
    "entities": [{"name": "restaurant_id", "dtype": "int64"}],
    "source": {"path": "raw/orders", "event_time": "pickup_ts"},
    "transforms": {"prep_minutes": "minutes_between(order_ts, pickup_ts)"},
    "features": [
        {"name": "prep_mean_1h", "aggregation": {"function": "mean", "column": "prep_minutes", "window": "1h"}},
        {"name": "orders_7d", "dtype": "int64", "aggregation": {"function": "count", "window": "7d"}},
    ],
}


def write(tmp_path: Path, document: object, name: str = "group.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(document) if not isinstance(document, str) else document)
    return path


def with_change(change: dict) -> dict:
    document = yaml.safe_load(yaml.safe_dump(VALID))
    for dotted, value in change.items():
        target = document
        *parents, last = dotted.split(".")
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        target[last] = value
    return document


def test_valid_declaration_loads(tmp_path: Path) -> None:
    spec = load_feature_group(write(tmp_path, VALID))
    assert spec.feature_names == ["prep_mean_1h", "orders_7d"]
    assert spec.lookback.days == 7
    assert spec.source_columns() == {"restaurant_id", "pickup_ts", "order_ts"}


@pytest.mark.parametrize(
    ("change", "field", "fix"),
    [
        ({"colour": "red"}, "colour", "remove it or use one of: buckets, checks, description, entities"),
        (
            {"features.0.agg": {}},
            "features[0].agg",
            "remove it or use one of: aggregation, description, dtype, expr, name",
        ),
        ({"features.0.dtype": "float32"}, "features[0].dtype", "'int64', 'float64', 'string' or 'bool'"),
        ({"features.0.aggregation.window": "1x"}, "features[0].aggregation.window", "e.g. '10m' or '7d'"),
        ({"features.0.aggregation.column": None}, "features[0].aggregation", "needs 'column'"),
        ({"features.1.name": "prep_mean_1h"}, "(top level)", "declared twice: rename one of them"),
        ({"features.1.dtype": "float64"}, "features[1]", "is a count: set dtype: int64"),
        ({"transforms": {"prep_minutes": "shell('rm -rf /')"}}, "(top level)", "unknown function 'shell'"),
        ({"name": "Restaurant Prep"}, "name", "invalid name 'Restaurant Prep': use lower case letters"),
        ({"transforms": {"Bad Name": "1"}}, "(top level)", "invalid name 'Bad Name'"),
        ({"owner": None}, "owner", "valid string"),
        ({"buckets": 0}, "buckets", "greater than or equal to 1"),
    ],
)
def test_invalid_declarations_name_file_field_and_fix(tmp_path: Path, change: dict, field: str, fix: str) -> None:
    path = write(tmp_path, with_change(change))
    with pytest.raises(SpecError) as caught:
        load_feature_group(path)
    message = str(caught.value)
    assert str(path) in message
    assert f"{field}:" in message
    assert fix in message


def test_missing_required_keys_are_listed(tmp_path: Path) -> None:
    document = {key: value for key, value in VALID.items() if key not in {"owner", "source"}}
    with pytest.raises(SpecError) as caught:
        load_feature_group(write(tmp_path, document))
    assert "owner: required — add it" in str(caught.value)
    assert "source: required — add it" in str(caught.value)


def test_unparsable_yaml_and_wrong_top_level(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="not valid YAML"):
        load_feature_group(write(tmp_path, "name: [unclosed"))
    with pytest.raises(SpecError, match="expected a mapping"):
        load_feature_group(write(tmp_path, "- just\n- a list\n"))


def test_duplicate_group_across_files_names_both(tmp_path: Path) -> None:
    first = write(tmp_path, VALID, "a.yaml")
    second = write(tmp_path, VALID, "b.yaml")
    with pytest.raises(SpecError) as caught:
        FeatureRegistry.from_folder(tmp_path, OfflineStore(Datalake(tmp_path.as_uri())))
    assert str(second) in str(caught.value) and str(first) in str(caught.value)


def test_unknown_group_and_feature_references(tmp_path: Path) -> None:
    write(tmp_path, VALID)
    registry = FeatureRegistry.from_folder(tmp_path, OfflineStore(Datalake(tmp_path.as_uri())))
    with pytest.raises(KeyError, match="known groups: restaurant_prep"):
        registry.resolve(["nope.x"])
    with pytest.raises(KeyError, match="has no feature 'x'; it has: prep_mean_1h, orders_7d"):
        registry.resolve(["restaurant_prep.x"])
    with pytest.raises(ValueError, match="must look like 'group.feature'"):
        registry.resolve(["restaurant_prep"])
    assert registry.resolve(["restaurant_prep.*"])[0][1] == ["prep_mean_1h", "orders_7d"]


def test_applied_declarations_are_what_every_reader_of_the_datalake_sees(tmp_path: Path) -> None:
    """`apply` copies a folder's groups into the datalake (removing groups no longer declared); a registry
    opened without CUPOLA_FEATURE_REPO reads them, and with nothing applied names the command that fixes it."""
    lake = tmp_path / "lake"
    settings = Settings.load(data_root=str(lake))
    with pytest.raises(InvalidInput, match="no feature groups applied .*`cupola features apply FOLDER`"):
        open_registry(settings, OfflineStore(Datalake.from_settings(settings)))

    repo = tmp_path / "repo"
    repo.mkdir()
    write(repo, VALID, "prep.yaml")
    write(repo, {**VALID, "name": "old_group"}, "old.yaml")
    assert FeatureStore(settings).apply(repo) == ["old_group", "restaurant_prep"]
    (repo / "old.yaml").unlink()
    store = FeatureStore(settings)
    assert store.apply(repo) == ["restaurant_prep"]

    registry = open_registry(settings, OfflineStore(Datalake.from_settings(settings)))
    assert registry.names() == ["restaurant_prep"]
    assert registry.get("restaurant_prep") == load_feature_group(repo / "prep.yaml")
    assert registry.describe("restaurant_prep")["declared_in"] == f"{lake.as_uri()}/feature_repo/restaurant_prep.yaml"
    edited = tmp_path / "edited"
    edited.mkdir()
    write(edited, yaml.safe_dump(VALID).replace("prep_mean_1h", "prep_mean_2h"), "prep.yaml")
    local = open_registry(settings.model_copy(update={"feature_repo": edited}), store.offline)
    assert local.get("restaurant_prep").feature_names[0] == "prep_mean_2h"  # a local folder wins while editing
    broken = tmp_path / "broken"
    broken.mkdir()
    write(broken, "name: [unclosed", "bad.yaml")
    with pytest.raises(SpecError, match="bad.yaml"):
        store.apply(broken)
    assert open_registry(settings, store.offline).names() == ["restaurant_prep"]  # a refused apply changes nothing
