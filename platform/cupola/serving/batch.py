"""Batch prediction: a Parquet dataset in, predictions back to the datalake, in one process or with Ray Data.

Two engines, the same `Predictor` that serves online requests and the same output:
  local     this process reads the dataset batch by batch with pyarrow, predicts, and writes one
            Parquet file; no Ray worker, no planning, no actor start-up.
  ray-data  Ray Data reads in parallel, predicting actors load the version once each, and the
            writes stream back: the work spreads over the cluster.
`auto` (the default) counts the input rows from the Parquet footers and runs `local` up to
`Settings.batch_local_max_rows`: Ray Data's fixed cost (actor processes, imports, planning) is
seconds, which only a large input repays (see benchmarks/batch_predict.py).

The version is resolved to a number before the job starts, so an alias moved mid-job cannot mix
versions. Output rows carry the model name, the version, the partition model that answered and
the batch run id.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pds
import pyarrow.parquet as pq
import ray

from cupola.algorithms import import_xgboost_without_sklearn
from cupola.config import Settings
from cupola.errors import InvalidInput
from cupola.model_inputs import raw_columns
from cupola.runtime import ensure_ray
from cupola.serving.predictor import Predictor
from cupola.stores.datalake import Datalake
from cupola.stores.models import ArtifactStore, create_repository

BATCH_ROWS = 65_536
LOCAL_BATCH_ROWS = 262_144  # in one process, fewer and larger batches: less per-batch overhead, the same memory bound
# Each predicting actor, and each read and write task, reserves half a CPU: with whole CPUs, one actor
# per CPU held every CPU and the tasks that feed them never got one (the job hung here on 2 cores); and
# with whole-CPU tasks beside half-CPU actors, two 1-CPU nodes each kept half a CPU free that no task fit
# (seen on the local multi-node stack: "Pending Demands: {'CPU': 1.0}" with 1.0/2.0 CPU used).
ACTOR_CPUS = 0.5


Engine = Literal["auto", "local", "ray-data"]
ENGINES: tuple[str, ...] = ("auto", "local", "ray-data")


@dataclass(frozen=True)
class BatchResult:
    run_id: str
    model: str
    version: int
    input_uri: str
    output_uri: str
    rows: int
    seconds: float
    engine: str


class PredictBatches:
    """A Ray Data actor: the version is loaded in `__init__`, once per worker, never per batch."""

    def __init__(self, settings: dict[str, Any], name: str, version: int, run_id: str, keep: list[str]) -> None:
        resolved = Settings.load(**settings)
        repository = create_repository(resolved)
        record = repository.resolve(name, version)
        repository.close()
        self.predictor = _batch_predictor(record, Datalake.from_settings(resolved))
        self.run_id = run_id
        self.keep = keep

    def __call__(self, batch: pa.Table) -> pa.Table:
        return with_predictions(self.predictor, batch, self.run_id, self.keep)


def _batch_predictor(version: Any, datalake: Datalake) -> Predictor:
    """The version loaded for a batch engine; XGBoost imported without scikit-learn first (a batch worker, or the
    local job, is a process of cupola's own, where XGBoost's optional scikit-learn import is only start-up cost)."""
    if version.spec["algorithm"]["name"] == "xgboost":
        import_xgboost_without_sklearn()
    return Predictor.from_version(version, ArtifactStore(datalake))


def with_predictions(predictor: Predictor, batch: pa.Table, run_id: str, keep: list[str] | None = None) -> pa.Table:
    """The kept input columns (all when None) with the prediction columns the batch job writes."""
    predictions = predictor.predict_table(batch)
    out = batch if keep is None else batch.select([c for c in keep if c in batch.column_names])
    rows = batch.num_rows
    constant = np.zeros(rows, dtype="int32")
    out = (
        out.append_column("prediction", pa.array(predictions.values))
        .append_column("partition_model", pa.array(predictions.units.tolist(), pa.string()))
        .append_column("model", pa.DictionaryArray.from_arrays(constant, pa.array([predictor.name])))
        .append_column("model_version", pa.array(np.full(rows, predictor.version.version, dtype="int64")))
        .append_column("prediction_run_id", pa.DictionaryArray.from_arrays(constant, pa.array([run_id])))
    )
    labels = predictor.labels(predictions.values)
    return out if labels is None else out.append_column("predicted_label", pa.array(labels))


def predict_batch(
    settings: Settings,
    name: str,
    version_or_alias: int | str,
    input_path: str,
    output_path: str | None = None,
    features_from_offline_store: bool = False,
    workers: int | None = None,
    keep: list[str] | None = None,
    engine: Engine = "auto",
) -> BatchResult:
    """Predict every row of the Parquet dataset at `input_path` (datalake path or URI) and write the result.

    The output keeps the `keep` input columns beside the predictions; by default every input column
    except the joined store features (`group__feature`), which would double the bytes written."""
    if engine not in ENGINES:
        raise InvalidInput(f"engine '{engine}' is not one of {', '.join(ENGINES)}", "engine")
    started = time.perf_counter()
    repository = create_repository(settings)
    try:
        version = repository.resolve(name, version_or_alias)
    finally:
        repository.close()
    datalake = Datalake.from_settings(settings)
    run_id = f"{name}-v{version.version}-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    input_uri = _uri(datalake, input_path)
    try:
        source = datalake.parquet_dataset(input_uri)
    except (FileNotFoundError, OSError) as error:
        raise InvalidInput(f"batch input {input_uri} cannot be read as Parquet: {error}", "input") from None
    spec = version.model_spec()
    if features_from_offline_store:
        ensure_ray(settings)
        input_uri = _join_offline_features(settings, spec, source, input_uri, run_id)
        source = datalake.parquet_dataset(input_uri)

    columns = source.schema.names
    keys = keep if keep is not None else [c for c in columns if "__" not in c]
    needed = [*raw_columns(spec), *([spec.partition.column] if spec.partition else [])]
    read = [c for c in columns if c in set(keys) | set(needed)]  # read only what is predicted from or written back
    output_uri = _uri(datalake, output_path or f"predictions/{name}/{run_id}")
    chosen = (
        engine
        if engine != "auto"
        else ("local" if source.count_rows() <= settings.batch_local_max_rows else "ray-data")
    )
    if chosen == "local":
        _predict_locally(version, source, read, keys, datalake, output_uri, run_id)
    else:
        _predict_with_ray_data(
            settings, name, version.version, input_uri, read, keys, datalake, output_uri, run_id, workers
        )
    rows = datalake.parquet_dataset(output_uri).count_rows()
    return BatchResult(
        run_id, name, version.version, input_uri, output_uri, rows, time.perf_counter() - started, chosen
    )


def _predict_locally(
    version: Any,
    source: pds.Dataset,
    read: list[str],
    keep: list[str],
    datalake: Datalake,
    output_uri: str,
    run_id: str,
) -> None:
    """The `local` engine: batches of LOCAL_BATCH_ROWS streamed from the dataset through the Predictor into one file."""
    predictor = _batch_predictor(version, datalake)
    if version.spec["algorithm"]["name"] == "xgboost":
        for booster in predictor.models.values():  # a local job has this process's cores to itself, not one CPU's share
            booster.set_param({"nthread": os.cpu_count() or 1})
    filesystem, folder = datalake.locate(output_uri)
    filesystem.create_dir(folder, recursive=True)
    writer: pq.ParquetWriter | None = None
    writing: Future[None] | None = None
    # One writer thread: Parquet encoding and compression (Arrow's C++, without the GIL) of one batch overlap the
    # prediction of the next; at most one batch waits to be written.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch-writer") as background:
        try:
            for batch in source.to_batches(columns=read, batch_size=LOCAL_BATCH_ROWS):
                if batch.num_rows == 0:
                    continue
                table = with_predictions(predictor, pa.Table.from_batches([batch]), run_id, keep)
                if writer is None:
                    writer = pq.ParquetWriter(f"{folder}/part-00000.parquet", table.schema, filesystem=filesystem)
                if writing is not None:
                    writing.result()
                writing = background.submit(writer.write_table, table)
            if writing is not None:
                writing.result()
        finally:
            if writer is not None:
                if writing is not None:
                    wait([writing])
                writer.close()
    if writer is None:
        raise InvalidInput("the batch input has no rows to predict", "input")


def _predict_with_ray_data(
    settings: Settings,
    name: str,
    version: int,
    input_uri: str,
    read: list[str],
    keep: list[str],
    datalake: Datalake,
    output_uri: str,
    run_id: str,
    workers: int | None,
) -> None:
    """The `ray-data` engine: parallel read, one predicting actor per CPU (the version loaded once each), streamed writes."""
    ensure_ray(settings)
    node_cpus = [float(node["Resources"].get("CPU", 0)) for node in ray.nodes() if node["Alive"]]
    cpus = max(1, int(sum(node_cpus)))
    input_filesystem, input_path = datalake.locate(input_uri)
    with _parquet_reader_v1():
        source_rows = ray.data.read_parquet(
            input_path, filesystem=input_filesystem, columns=read, override_num_blocks=4 * cpus, num_cpus=ACTOR_CPUS
        )
    dataset = source_rows.map_batches(
        PredictBatches,
        fn_constructor_kwargs={
            "settings": settings.for_workers(),
            "name": name,
            "version": version,
            "run_id": run_id,
            "keep": keep,
        },
        batch_format="pyarrow",
        batch_size=BATCH_ROWS,
        compute=ray.data.ActorPoolStrategy(size=workers or default_workers(node_cpus)),
        num_cpus=ACTOR_CPUS,
    )
    output_filesystem, output_path = datalake.locate(output_uri)
    dataset.write_parquet(output_path, filesystem=output_filesystem, ray_remote_args={"num_cpus": ACTOR_CPUS})


def default_workers(node_cpus: list[float]) -> int:
    """Predicting actors when the caller does not say: one per CPU (each reserves ACTOR_CPUS, so every
    node with 2 or more CPUs keeps a whole one free), except on a cluster of nodes under 2 CPUs.

    Ray Data starts whole-CPU tasks it offers no knob for (Ray 2.60: the V2 reader's file listing,
    the V1 reader's Parquet sampling). Actors spread over 1-CPU nodes leave half a CPU on each and a
    whole one nowhere: the job hung so on the local two-node stack. There, one node is left without
    an actor."""
    nodes = [cpus for cpus in node_cpus if cpus > 0]
    if not nodes:
        return 1
    if max(nodes) >= 2:
        return max(1, int(sum(nodes)))
    return max(1, len(nodes) - 1)


@contextlib.contextmanager
def _parquet_reader_v1() -> Iterator[None]:
    """Plan the read with Ray Data's V1 Parquet datasource, the V2 flag restored afterwards.

    Ray 2.60's default V2 reader lists files in a task that starts 32 footer-reading actors
    (`RAY_DATA_PARQUET_FOOTER_NUM_ACTORS`) per read, and packs a single file into one block
    whatever `override_num_blocks` says. On 2 cores that read took 1.5-6 s for one 20 MB file and
    left one of the two predicting actors idle; V1 read it in 0.2-0.3 s as the 8 blocks asked."""
    context = ray.data.DataContext.get_current()
    was = context.use_datasource_v2
    context.use_datasource_v2 = False
    try:
        yield
    finally:
        context.use_datasource_v2 = was


def _uri(datalake: Datalake, path: str) -> str:
    """A URI as is, an absolute local path as a file URI, anything else relative to the data root."""
    if "://" in path:
        return path
    if path.startswith("/"):
        return Path(path).as_uri()
    return datalake.uri(path)


def _join_offline_features(settings: Settings, spec: Any, source: pds.Dataset, input_uri: str, run_id: str) -> str:
    """Rows with entity keys and event times get the model's store features point-in-time from the offline store."""
    from cupola.features import FeatureStore

    if spec.event_time not in source.schema.names:
        raise InvalidInput(
            f"batch input has no event time column '{spec.event_time}': features are joined as of that time"
        )
    if not spec.store_features():
        return input_uri
    frame = source.to_table().to_pandas()
    return FeatureStore(settings).training_set(f"predict-{run_id}", frame, spec.event_time, spec.store_features()).uri
