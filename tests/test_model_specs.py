"""Model specs: the packaged example loads; each mistake names the file, the field and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cupola.specs import SpecError
from cupola.specs.model import load_model_spec

EXAMPLE = Path(__file__).resolve().parents[1] / "platform/cupola/examples/models/delivery_minutes.yaml"


def test_example_spec_loads() -> None:
    spec = load_model_spec(EXAMPLE)
    assert spec.mode == "min" and spec.optimize == "rmse"
    assert spec.store_features()[0] == "restaurant_prep.prep_minutes_mean_7d"
    assert spec.model_inputs()[-3:] == ["hour_of_day", "log_distance", "rush_hour"]
    assert "restaurant_prep__prep_minutes_mean_7d" in spec.model_inputs()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"name": "Delivery"}, "name: invalid name 'Delivery'"),
        ({"task": "ranking"}, "task: Input should be 'regression' or 'binary'"),
        ({"metric": "auc"}, "metric 'auc' does not fit task 'regression': use one of mae, rmse"),
        ({"transforms": {"x": "speed * 2"}}, "transform 'x' reads unknown column(s) speed: add them to features"),
        ({"transforms": {"x": "delivery_minutes * 2"}}, "unknown column(s) delivery_minutes"),
        ({"transforms": {"x": "eval('1')"}}, "unknown function 'eval'"),
        ({"inputs": ["distance_km", "courier_rating"]}, "input 'courier_rating' is neither a feature nor a transform"),
        ({"algorithm": {"search_space": {"eta": {"type": "loguniform", "low": 0, "high": 1}}}}, "needs 'low' > 0"),
        ({"algorithm": {"search_space": {"eta": {"type": "choice"}}}}, "needs 'values'"),
        ({"algorithm": {"name": "lightgbm"}}, "algorithm.name: Input should be 'xgboost' or 'tensorflow'"),
        ({"split": {"test": 0.7}}, "split.test: Input should be less than 0.5"),
        ({"training_data": {"labels": "x", "start": "2026-02-01", "end": "2026-01-01"}}, "end must be after"),
        (
            {"partition": {"colum": "city"}},
            "partition.colum: unknown key — remove it or use one of: column, fallback, min_rows",
        ),
        ({"features": ["distance_km", "distance_km"]}, "lists the same feature twice"),
    ],
)
def test_invalid_model_specs(tmp_path: Path, change: dict, expected: str) -> None:
    document = yaml.safe_load(EXAMPLE.read_text())
    document.update(change)
    path = tmp_path / "model.yaml"
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(SpecError) as caught:
        load_model_spec(path)
    assert str(path) in str(caught.value)
    assert expected in str(caught.value)


def test_label_cannot_be_an_input(tmp_path: Path) -> None:
    document = yaml.safe_load(EXAMPLE.read_text())
    document["features"] = [*document["features"], "delivery_minutes"]
    path = tmp_path / "model.yaml"
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(SpecError, match="input 'delivery_minutes' is the label"):
        load_model_spec(path)
