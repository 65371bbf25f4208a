"""Model specs: what to predict, from which features, per which partition, searched how.

A spec is validated on its own (names, metric vs task, search space, expressions) and then
against the feature registry (every `group.feature` exists, every expression reads a known
column), so a bad spec fails before any data is read.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cupola import dsl
from cupola.specs.durations import Duration, format_duration
from cupola.specs.errors import load_spec, parse_spec
from cupola.specs.feature_group import Identifier

METRIC_MODE = {"rmse": "min", "mae": "min", "logloss": "min", "error": "min", "auc": "max"}
TASK_METRICS = {"regression": {"rmse", "mae"}, "binary": {"logloss", "error", "auc"}}
LIVE_METRICS = {
    "regression": {"r2", "rmse", "rmsle", "mae"},
    "binary": {"auc", "logloss", "accuracy", "positive_rate", "predicted_rate"},
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Distribution(_Strict):
    """One hyperparameter's search distribution."""

    type: Literal["uniform", "loguniform", "randint", "choice", "grid"] = Field(
        description="how the parameter is drawn; `grid` tries every value"
    )
    low: float | None = Field(default=None, description="uniform, loguniform, randint: lower bound")
    high: float | None = Field(
        default=None, description="uniform, loguniform, randint: upper bound (inclusive for randint)"
    )
    values: list[Any] | None = Field(default=None, description="choice, grid: the values")

    @model_validator(mode="after")
    def _complete(self) -> "Distribution":
        if self.type in {"choice", "grid"}:
            if not self.values:
                raise ValueError(f"a '{self.type}' distribution needs 'values': a non-empty list")
        elif self.low is None or self.high is None or self.low >= self.high:
            raise ValueError(f"a '{self.type}' distribution needs 'low' < 'high'")
        elif self.type == "loguniform" and self.low <= 0:
            raise ValueError("a 'loguniform' distribution needs 'low' > 0")
        return self


class AlgorithmSpec(_Strict):
    name: Literal["xgboost", "tensorflow"] = Field(default="xgboost", description="the model family")
    params: dict[str, Any] = Field(default_factory=dict, description="fixed parameters, e.g. num_boost_round")
    search_space: dict[str, Distribution] = Field(
        default_factory=dict, description="parameters searched by Ray Tune, by name"
    )
    distributed_above_rows: int | None = Field(
        default=None,
        ge=1,
        description="units with more training rows get their final fit data-parallel with Ray Train (XGBoostTrainer or TensorflowTrainer)",
    )
    distributed_workers: int = Field(default=2, ge=1, le=1024, description="Ray Train workers of a data-parallel fit")


class SearchSpec(_Strict):
    method: Literal["random", "grid"] = Field(default="random", description="draw configurations, or walk a grid")
    num_samples: int = Field(default=8, ge=1, le=10_000, description="random: trials; grid: repeats of the grid")
    max_concurrent: int | None = Field(default=None, ge=1, description="trials at once; default: one per CPU")
    scheduler: Literal["fifo", "asha"] = Field(default="fifo", description="`asha` stops trailing trials early")


class FallbackSpec(_Strict):
    """How the fallback model (all rows; it serves small and unseen partitions) gets its configuration.
    `own_search` fits it in every trial like a partition; `best_partition_config` takes the configuration with
    the best validation score over the partitions, and `fixed` takes `params`: both fit the fallback once
    instead of once per trial, which halves a search whose partitions cover every row."""

    tuning: Literal["own_search", "best_partition_config", "fixed"] = Field(
        default="own_search", description="`own_search`, `best_partition_config` or `fixed` (with `params`)"
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="`fixed`: the fallback's parameters, over `algorithm.params`"
    )

    @model_validator(mode="after")
    def _params_only_when_fixed(self) -> "FallbackSpec":
        if self.params and self.tuning != "fixed":
            raise ValueError("partition.fallback.params is used only with tuning: fixed: set tuning: fixed")
        return self


class PartitionSpec(_Strict):
    column: str = Field(description="a column of the labels; one model per value")
    min_rows: int = Field(default=200, ge=1, description="partitions with fewer training rows use the fallback model")
    fallback: FallbackSpec = Field(
        default_factory=FallbackSpec, description="how the fallback model's configuration is chosen"
    )


class SplitSpec(_Strict):
    """Train, validation and test rows: by shares of rows (`validation`, `test`), or for a time split by
    dates (`validation_start`, `test_start`: rows from that instant on, UTC when no zone is given)."""

    method: Literal["time", "random"] = Field(
        default="time", description="by event time (later rows test), or shuffled"
    )
    validation: float = Field(default=0.15, gt=0, lt=0.5, description="share of rows for validation")
    test: float = Field(default=0.15, gt=0, lt=0.5, description="share of rows for the test")
    validation_start: datetime | None = Field(
        default=None, description="time split: validation rows have event times from here (with test_start)"
    )
    test_start: datetime | None = Field(default=None, description="time split: test rows have event times from here")

    @model_validator(mode="after")
    def _dates_or_shares(self) -> "SplitSpec":
        dated = (self.validation_start is not None, self.test_start is not None)
        if any(dated) and not all(dated):
            raise ValueError("split: give validation_start and test_start together")
        if all(dated):
            if self.method != "time":
                raise ValueError("split: validation_start and test_start need method: time")
            if {"validation", "test"} & self.model_fields_set:
                raise ValueError(
                    "split: give shares (validation, test) or dates (validation_start, test_start), not both"
                )
            if self.boundaries()[1] <= self.boundaries()[0]:  # type: ignore[operator]
                raise ValueError("split: test_start must be after validation_start")
        return self

    def boundaries(self) -> tuple[datetime | None, datetime | None]:
        """The date boundaries in UTC (a date without a zone is UTC), or (None, None) for shares."""

        def utc(moment: datetime | None) -> datetime | None:
            if moment is None:
                return None
            return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)

        return utc(self.validation_start), utc(self.test_start)


class TrainingData(_Strict):
    labels: str = Field(min_length=1, description="Parquet label events under the data root, or a URI")
    start: date | None = Field(default=None, description="first day of label events used (UTC)")
    end: date | None = Field(default=None, description="label events before this day (UTC)")
    features_as_of: Literal["at_or_before", "strictly_before"] = Field(
        default="at_or_before",
        description="which store values a row gets: the latest at or before its event time, or computed strictly "
        "before it, so an event at the row's own instant (an outcome keyed at the label's time) never reaches it",
    )

    @model_validator(mode="after")
    def _ordered(self) -> "TrainingData":
        if self.start and self.end and self.end <= self.start:
            raise ValueError("training_data.end must be after training_data.start")
        return self


class AlertThresholds(_Strict):
    """Limits on live metrics; Prometheus rules compare the exported metrics with these (exported too)."""

    min_r2: float | None = Field(default=None, description="alert below this live R² (regression)")
    max_rmse: float | None = Field(default=None, gt=0, description="alert above this live RMSE (regression)")
    max_mae: float | None = Field(default=None, gt=0, description="alert above this live MAE (regression)")
    max_rmsle: float | None = Field(default=None, gt=0, description="alert above this live RMSLE (regression)")
    min_auc: float | None = Field(default=None, ge=0, le=1, description="alert below this live AUC (binary)")
    max_logloss: float | None = Field(default=None, gt=0, description="alert above this live log loss (binary)")
    min_accuracy: float | None = Field(default=None, ge=0, le=1, description="alert below this live accuracy (binary)")
    max_psi: float = Field(
        default=0.2, gt=0, description="population stability index; 0.1-0.2 is moderate drift, above 0.2 significant"
    )

    def limits(self) -> dict[tuple[str, str], float]:
        """(metric, bound) → value for every threshold set, e.g. ('rmse', 'max') → 9.0."""
        return {
            (name.split("_", 1)[1], name.split("_", 1)[0]): value
            for name, value in self.model_dump().items()
            if value is not None
        }


class MonitoringSpec(_Strict):
    """How a deployed model is watched: which request fields identify an outcome, the live-metric windows,
    how many joined outcomes a window needs before its accuracy counts, and the alert thresholds."""

    outcome_keys: list[str] = Field(
        default_factory=list,
        description="request fields that identify the event an outcome is about (e.g. [order_id]); outcomes can always name a request id instead",
    )
    windows: list[Duration] = Field(
        default_factory=lambda: [timedelta(hours=1), timedelta(hours=24)],
        min_length=1,
        max_length=6,
        description="sliding windows over prediction time that live metrics are computed on",
    )
    min_outcomes: int = Field(
        default=30, ge=1, description="a window's accuracy is published once it has this many joined outcomes"
    )
    min_drift_samples: int = Field(
        default=500, ge=1, description="a window's drift is published once it has this many sampled rows"
    )
    thresholds: AlertThresholds = Field(default=AlertThresholds(), description="alert limits on live metrics")
    drift_thresholds: dict[str, Annotated[float, Field(gt=0)]] = Field(
        default_factory=dict,
        description="per input (as named in the version's inputs, e.g. distance_km), the threshold of its drift "
        "test instead of the default: a p-value for ks and chi2 (drift below it), a distance for wasserstein and "
        "jensenshannon (drift above it)",
    )

    @model_validator(mode="after")
    def _bounded_windows(self) -> "MonitoringSpec":
        for window in self.windows:
            if window > timedelta(days=7):
                raise ValueError(
                    f"monitoring.windows: {format_duration(window)} is longer than 7d; use windows of 7d or less"
                )
        return self

    def window_names(self) -> list[str]:
        return [format_duration(window) for window in self.windows]


class ModelSpec(_Strict):
    """A validated model declaration."""

    name: Identifier = Field(description="the model's name: lower case, digits and underscores")
    owner: str = Field(min_length=1, description="team or person answerable for the model")
    description: str = Field(default="", description="what the model predicts, shown in the catalog")
    task: Literal["regression", "binary"] = Field(description="a number, or the probability of a 0/1 label")
    label: str = Field(description="the labels' column to predict")
    event_time: str = Field(description="the labels' timestamp column: features are joined as of it")
    features: list[str] = Field(
        min_length=1, description="`group.feature` from the feature store, or request-time columns"
    )
    transforms: dict[Identifier, str] = Field(
        default_factory=dict, description="columns computed by DSL expressions, by name (later ones may read earlier)"
    )
    inputs: list[str] | None = Field(default=None, description="model inputs; default: transforms plus features")
    categorical: list[str] = Field(
        default_factory=list,
        description=(
            "inputs read as categories (text inputs always are): categories are learned from the training rows and "
            "stored with the version; unseen and missing values count as missing"
        ),
    )
    partition: PartitionSpec | None = Field(
        default=None, description="one model per value of a column, plus a fallback"
    )
    algorithm: AlgorithmSpec = Field(default=AlgorithmSpec(), description="the model family and its parameters")
    search: SearchSpec = Field(default=SearchSpec(), description="how Ray Tune searches the space")
    metric: str | None = Field(
        default=None, description="validation metric optimized: rmse, mae (regression); logloss, error, auc (binary)"
    )
    split: SplitSpec = Field(default=SplitSpec(), description="train, validation and test rows")
    refit: Literal["train_and_validation", "train"] | None = Field(
        default=None,
        description=(
            "what each unit's final model is fitted on: `train_and_validation` (for the rounds or epochs early "
            "stopping chose on validation; the default for time splits) or `train` (the default for random splits)"
        ),
    )
    training_data: TrainingData = Field(description="the label events trained on")
    monitoring: MonitoringSpec = Field(default=MonitoringSpec(), description="live metrics, drift and alerts")
    schedule: str | None = Field(
        default=None,
        description="retrain on this cron schedule in UTC (e.g. '0 3 * * 1'), run by the control plane's scheduler",
    )
    seed: int = Field(default=0, description="seeds the search plan and every fit: same seed, same models")

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from croniter import croniter

        if not croniter.is_valid(value) or len(value.split()) != 5:
            raise ValueError(
                f"'{value}' is not a five-field cron expression (minute hour day-of-month month day-of-week), e.g. '0 3 * * *'"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "ModelSpec":
        metric = self.metric or ("rmse" if self.task == "regression" else "logloss")
        if metric not in TASK_METRICS[self.task]:
            raise ValueError(
                f"metric '{metric}' does not fit task '{self.task}': use one of {', '.join(sorted(TASK_METRICS[self.task]))}"
            )
        if len(set(self.features)) != len(self.features):
            raise ValueError("features lists the same feature twice: list each once")
        known = set(self.columns_before_transforms())
        for name, expression in self.transforms.items():
            try:
                used = dsl.columns(dsl.parse(expression))
            except dsl.ExpressionError as error:
                raise ValueError(f"transform '{name}': {error}") from None
            unknown = used - known
            if unknown:
                raise ValueError(
                    f"transform '{name}' reads unknown column(s) {', '.join(sorted(unknown))}: add them to features or fix the expression"
                )
            if self.label in used:
                raise ValueError(
                    f"transform '{name}' reads the label '{self.label}': that leaks the answer into the inputs"
                )
            known.add(name)
        misplaced = {metric for metric, _ in self.monitoring.thresholds.limits()} - {"psi", *LIVE_METRICS[self.task]}
        if misplaced:
            raise ValueError(
                f"monitoring.thresholds sets {', '.join(sorted(misplaced))}, which a {self.task} model does not publish: "
                f"use thresholds on {', '.join(sorted(LIVE_METRICS[self.task]))}"
            )
        for column in self.model_inputs():
            if column not in known:
                raise ValueError(
                    f"input '{column}' is neither a feature nor a transform: add it to features or transforms"
                )
            if column == self.label:
                raise ValueError(f"input '{column}' is the label: remove it from inputs")
        for column in self.categorical:
            if column.replace(".", "__", 1) not in self.model_inputs():
                raise ValueError(f"categorical lists '{column}', which is not an input: list inputs only")
        return self

    @property
    def refit_on(self) -> Literal["train_and_validation", "train"]:
        return self.refit or ("train_and_validation" if self.split.method == "time" else "train")

    @property
    def optimize(self) -> str:
        return self.metric or ("rmse" if self.task == "regression" else "logloss")

    @property
    def mode(self) -> str:
        return METRIC_MODE[self.optimize]

    def store_features(self) -> list[str]:
        return [f for f in self.features if "." in f]

    def request_features(self) -> list[str]:
        return [f for f in self.features if "." not in f]

    def columns_before_transforms(self) -> list[str]:
        """Columns a transform may read: request features, joined store features, the event time."""
        joined = [f.replace(".", "__", 1) for f in self.store_features()]
        return [*self.request_features(), *joined, self.event_time]

    def categorical_inputs(self) -> list[str]:
        """Inputs the spec marks categorical, as matrix column names (`group__feature`)."""
        return [c.replace(".", "__", 1) for c in self.categorical]

    def model_inputs(self) -> list[str]:
        """The model's input columns, in a fixed order."""
        if self.inputs is not None:
            return [i.replace(".", "__", 1) for i in self.inputs]
        joined = [f.replace(".", "__", 1) for f in self.store_features()]
        return [*self.request_features(), *joined, *self.transforms]


MODEL_SPEC_KEYS = "name, task, label, features, training_data"


def load_model_spec(path: Path) -> ModelSpec:
    """Read and validate one model YAML; every problem names the file, the field and the fix."""
    return load_spec(path, ModelSpec, MODEL_SPEC_KEYS)


def parse_model_spec(text: str, source: str) -> ModelSpec:
    """Validate model YAML text that came from elsewhere than a local file (an API body, the datalake)."""
    return parse_spec(text, source, ModelSpec, MODEL_SPEC_KEYS)
