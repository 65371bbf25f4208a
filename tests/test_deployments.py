"""Deployment records contract, run on SQLite and on a real Cassandra: revisions, conflicts, events, "what served at T", shadow log."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone

import pytest

from cupola import Settings
from cupola.stores.deployments.base import Canary, DeploymentConfig, DeploymentConflict, Deployments
from cupola.stores.models import create_repository
from tests.test_repository import draft, race


@pytest.fixture
def settings(backend_settings: Settings) -> Settings:
    return backend_settings


@pytest.fixture
def deployments(settings: Settings) -> Iterator[Deployments]:
    records = Deployments.from_settings(settings)
    yield records
    records.close()


def test_revisions_conflicts_and_events(deployments: Deployments) -> None:
    first = deployments.put(DeploymentConfig(model="eta"), "deploy", "alice")
    second = deployments.put(
        DeploymentConfig(model="eta", canary=Canary(version=2, percent=10)),
        "canary",
        "bob",
        "try v2",
        expected_revision=1,
    )
    assert (first.revision, second.revision) == (1, 2)
    with pytest.raises(DeploymentConflict, match="at revision 2, not 1"):
        deployments.put(DeploymentConfig(model="eta"), "rollback", "replica", expected_revision=1)
    deployments.put(DeploymentConfig(model="other", target="3"), "deploy", "carol")
    assert [d.config.model for d in deployments.list()] == ["eta", "other"]
    assert (
        deployments.get("eta").config.canary == Canary(version=2, percent=10)
        and deployments.get("eta").updated_by == "bob"
    )
    deployments.remove("other", "dave", "retired")
    assert deployments.get("other") is None
    with pytest.raises(KeyError, match="not deployed"):
        deployments.remove("other", "dave")
    assert [(e.action, e.by, e.reason) for e in deployments.events("eta")] == [
        ("deploy", "alice", ""),
        ("canary", "bob", "try v2"),
    ]
    assert [e.action for e in deployments.events("other")] == ["deploy", "undeploy"]


def test_serving_at_follows_deployments_and_alias_moves(settings: Settings, deployments: Deployments) -> None:
    repository = create_repository(settings)
    for run in ("a", "b"):
        repository.register(draft(run_id=run))
    before = datetime.now(timezone.utc)
    repository.set_alias("eta", "production", 1, "alice")
    deployments.put(DeploymentConfig(model="eta"), "deploy", "alice")
    deployed = datetime.now(timezone.utc)
    repository.set_alias("eta", "production", 2, "bob")
    assert deployments.serving_at("eta", before, repository) is None
    assert deployments.serving_at("eta", deployed, repository).version == 1
    assert deployments.serving_at("eta", datetime.now(timezone.utc), repository).version == 2


def test_shadow_predictions_are_kept_with_their_difference(deployments: Deployments) -> None:
    deployments.log_shadow("req-1", "eta", 1, 2, [1.0, 2.0], [1.5, 1.0], None)
    deployments.log_shadow("req-2", "eta", 1, 2, [1.0], None, "ValueError: broken")
    logged = deployments.shadow_log("eta")
    assert [(r["request_id"], r["max_abs_difference"], r["error"]) for r in logged] == [
        ("req-1", 1.0, None),
        ("req-2", None, "ValueError: broken"),
    ]


def test_writers_racing_a_deployment_from_the_same_revision_leave_exactly_one_winner(settings: Settings) -> None:
    """A person's deploy and replicas' rollbacks all read revision r: one write lands, the others change nothing."""
    deployments = Deployments.from_settings(settings)
    current = deployments.put(DeploymentConfig(model="eta", canary=Canary(version=2, percent=10)), "deploy", "alice")

    def write(index: int) -> object:
        config = DeploymentConfig(model="eta", target=str(index + 1))
        action, by = ("deploy", "bob") if index == 0 else ("rollback", f"replica-{index}")
        return Deployments.from_settings(settings).put(config, action, by, expected_revision=current.revision)

    results = race(5, write)

    winners = [r for r in results if not isinstance(r, Exception)]
    assert len(winners) == 1 and all(isinstance(r, DeploymentConflict) for r in results if r not in winners), results
    stored = deployments.get("eta")
    assert stored is not None and stored == winners[0] and stored.revision == current.revision + 1
    assert [e.by for e in deployments.events("eta")] == ["alice", stored.updated_by]
