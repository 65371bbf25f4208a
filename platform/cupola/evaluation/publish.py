"""Reports and comparisons of registered versions, read back from the repository (the CLI and UI use these)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cupola.errors import NotFound
from cupola.evaluation.html import render_report_html
from cupola.evaluation.report import production_summary
from cupola.stores.models import ModelRepository, ModelVersion


def version_report_html(
    repository: ModelRepository, name: str, version_or_alias: int | str
) -> tuple[ModelVersion, str]:
    """A version's report page, compared with the version under `production` *now* (which may have moved since training)."""
    version = repository.resolve(name, version_or_alias)
    if not version.report:
        raise NotFound(
            f"{name} version {version.version} has no evaluation report (it was registered before reports existed): retrain it"
        )
    production = repository.aliases(name).get("production")
    current = production_summary(repository.get(name, production)) if production is not None else None
    return version, render_report_html(version, version.report, current)


def write_version_report(
    repository: ModelRepository, name: str, version_or_alias: int | str, output: Path | None
) -> Path:
    """Write the page to `output` (default `<name>-v<version>-report.html` in the working directory)."""
    version, page = version_report_html(repository, name, version_or_alias)
    path = output or Path(f"{name}-v{version.version}-report.html")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path.resolve()


def compare_versions(
    repository: ModelRepository, name: str, first: int | str, second: int | str
) -> tuple[ModelVersion, ModelVersion, list[tuple[str, str, Any, Any]]]:
    """(scope, metric, first value, second value) for every metric the two versions share: overall, then per partition."""
    a, b = repository.resolve(name, first), repository.resolve(name, second)
    rows: list[tuple[str, str, Any, Any]] = []
    scopes = ["overall"] + sorted(k for k in a.metrics if k.startswith("partition:") and k in b.metrics)
    for scope in scopes:
        for metric, value in a.metrics.get(scope, {}).items():
            other = b.metrics.get(scope, {}).get(metric)
            if isinstance(value, int | float) and isinstance(other, int | float) and not isinstance(value, bool):
                rows.append((scope.removeprefix("partition:"), metric, value, other))
    return a, b, rows
