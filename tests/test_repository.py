"""Model repository contract (run per backend): versions, aliases, history, artifact integrity."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from cupola import Settings
from cupola.stores.datalake import Datalake
from cupola.stores.models import (
    AliasConflict,
    ArtifactIntegrityError,
    ArtifactStore,
    ModelRepository,
    NewModelVersion,
    create_repository,
)


def draft(name: str = "eta", run_id: str = "run-1", **extra: object) -> NewModelVersion:
    now = datetime.now(timezone.utc)
    return NewModelVersion(
        name=name,
        created_by="tester",
        run_id=run_id,
        training_started_at=now,
        training_ended_at=now,
        spec={"name": name},
        params={"__fallback__": {"eta": 0.1}},
        metrics={"overall": {"rmse": 1.5}},
        data={"training_set": "file:///x", "fingerprint": "abc", "rows": {"train": 10}},
        artifacts={},
        **extra,
    )


@pytest.fixture
def settings(backend_settings: Settings) -> Settings:
    return backend_settings


@pytest.fixture
def repository(settings: Settings) -> Iterator[ModelRepository]:
    repository = create_repository(settings)
    yield repository
    repository.close()


def test_versions_count_up_per_model_and_records_round_trip(repository: ModelRepository) -> None:
    first = repository.register(draft())
    second = repository.register(draft(run_id="run-2"))
    other = repository.register(draft("other"))
    assert (first.version, second.version, other.version) == (1, 2, 1)
    loaded = repository.get("eta", 2)
    assert loaded.run_id == "run-2" and loaded.metrics == {"overall": {"rmse": 1.5}} and loaded.created_by == "tester"
    assert loaded.training_started_at == second.training_started_at
    assert [v.version for v in repository.versions("eta")] == [1, 2]
    assert repository.models() == ["eta", "other"]
    assert repository.resolve("eta", "latest").version == 2


def _register_from_process(args: tuple[str, int]) -> int:
    settings_json, index = args
    repository = create_repository(Settings.model_validate_json(settings_json))
    return repository.register(draft(run_id=f"run-{index}")).version


def test_twenty_concurrent_registrations_from_processes_get_distinct_versions(
    settings: Settings, repository: ModelRepository
) -> None:
    context = multiprocessing.get_context("spawn")
    with context.Pool(4) as pool:
        versions = pool.map(_register_from_process, [(settings.model_dump_json(), i) for i in range(20)])
    assert sorted(versions) == list(range(1, 21))
    assert sorted(v.run_id for v in repository.versions("eta")) == sorted(f"run-{i}" for i in range(20))


def test_aliases_move_atomically_and_keep_history(repository: ModelRepository) -> None:
    for run in ("a", "b", "c"):
        repository.register(draft(run_id=run))
    repository.set_alias("eta", "production", 1, "alice", expected_version=0)
    repository.set_alias("eta", "production", 2, "bob", expected_version=1)
    with pytest.raises(AliasConflict, match="points to 2, not 1; nothing was moved"):
        repository.set_alias("eta", "production", 3, "carol", expected_version=1)
    repository.set_alias("eta", "staging", 3, "carol")
    assert repository.aliases("eta") == {"production": 2, "staging": 3}
    assert repository.resolve("eta", "production").run_id == "b"
    repository.delete_alias("eta", "staging", "dave")
    history = [(m.alias, m.version, m.previous_version, m.moved_by) for m in repository.alias_history("eta")]
    assert history == [
        ("production", 1, None, "alice"),
        ("production", 2, 1, "bob"),
        ("staging", 3, None, "carol"),
        ("staging", None, 3, "dave"),
    ]
    with pytest.raises(KeyError, match="has no alias 'staging'; aliases: production→2"):
        repository.resolve("eta", "staging")


def test_unknown_versions_and_aliases_are_clear(repository: ModelRepository) -> None:
    repository.register(draft())
    with pytest.raises(KeyError, match="model 'eta' has no version 7; versions: 1..1"):
        repository.get("eta", 7)
    with pytest.raises(KeyError, match="has no version 9"):
        repository.set_alias("eta", "production", 9, "x")
    with pytest.raises(KeyError, match="has no versions: train it first"):
        repository.resolve("nothing", "latest")
    with pytest.raises(KeyError, match="has no alias 'ghost'"):
        repository.delete_alias("eta", "ghost", "x")


def test_artifacts_are_checked_on_every_load(tmp_path: Path) -> None:
    store = ArtifactStore(Datalake(tmp_path.as_uri()))
    ref = store.put("eta", "run-1", "model.ubj", b"model-bytes", "xgboost-ubj")
    assert store.get(ref) == b"model-bytes"
    with pytest.raises(FileExistsError, match="immutable"):
        store.put("eta", "run-1", "model.ubj", b"other", "xgboost-ubj")
    Path(ref.uri.removeprefix("file://")).write_bytes(b"model-bytez")
    with pytest.raises(ArtifactIntegrityError, match="corrupted or was modified.*refusing to load it"):
        store.get(ref)


def race(writers: int, write: Callable[[int], object]) -> list[object]:
    """Run `write(index)` in `writers` threads released at once; each result or the error it raised, by index."""
    results: list[object] = [None] * writers
    barrier = threading.Barrier(writers)

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = write(index)
        except Exception as error:
            results[index] = error

    threads = [threading.Thread(target=run, args=(index,)) for index in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_writers_racing_an_alias_move_from_the_same_version_leave_exactly_one_winner(settings: Settings) -> None:
    """Six writers (each its own store: SQLite connection or Cassandra session) all saw production at 1."""
    repository = create_repository(settings)
    for run in range(7):
        repository.register(draft(run_id=f"run-{run}"))
    repository.set_alias("eta", "production", 1, "setup", expected_version=0)

    results = race(6, lambda i: create_repository(settings).set_alias("eta", "production", i + 2, f"w{i}", 1))

    winners = [r for r in results if not isinstance(r, Exception)]
    assert len(winners) == 1 and all(isinstance(r, AliasConflict) for r in results if r not in winners), results
    won = winners[0]
    assert repository.aliases("eta") == {"production": won.version}  # type: ignore[attr-defined]
    history = repository.alias_history("eta")
    assert [(m.version, m.previous_version) for m in history] == [(1, None), (won.version, 1)]  # type: ignore[attr-defined]
