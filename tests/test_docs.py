"""The user documentation stays true: the settings page matches the code, links resolve, and the README is a
guide (short, no internal work-log labels), not a lab notebook."""

from __future__ import annotations

import re
from pathlib import Path

from cupola.config.reference import settings_reference

ROOT = Path(__file__).resolve().parents[1]
PAGES = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    ROOT / "benchmarks" / "README.md",
    ROOT / "benchmarks" / "RESULTS.md",
]


def test_the_settings_page_is_generated_from_the_settings_fields() -> None:
    assert (ROOT / "docs" / "settings.md").read_text() == settings_reference(), (
        "docs/settings.md is stale: regenerate it with `python -m cupola.config.reference > docs/settings.md`"
    )


def test_every_setting_is_on_the_settings_page_with_a_meaning() -> None:
    from cupola.config import Settings

    page = settings_reference()
    for name in Settings.model_fields:
        row = next(line for line in page.splitlines() if line.startswith(f"| `CUPOLA_{name.upper()}` |"))
        assert not row.endswith("| — |"), f"Settings.{name} has no description"


def test_the_spec_reference_is_generated_from_the_spec_models_and_documents_every_field_and_function() -> None:
    from cupola import dsl
    from cupola.specs.feature_group import FeatureGroupSpec
    from cupola.specs.model import ModelSpec
    from cupola.specs.reference import fields, spec_reference

    page = spec_reference()
    assert (ROOT / "docs" / "spec-reference.md").read_text() == page, (
        "docs/spec-reference.md is stale: regenerate it with `python -m cupola.specs.reference > docs/spec-reference.md`"
    )
    for model in (FeatureGroupSpec, ModelSpec):
        undocumented = [name for name, _, _, meaning in fields(model) if not meaning]
        assert not undocumented, f"{model.__name__} fields without a description: {undocumented}"
    listed = set(re.findall(r"^\| `([a-z_0-9]+)` \| \d \|", page, re.MULTILINE))
    assert listed == set(dsl.FUNCTIONS)
    assert "| `split.validation_start` |" in page and "| `features.aggregation.window` | duration |" in page


def test_relative_links_in_the_docs_resolve() -> None:
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / target).exists(), f"{page.relative_to(ROOT)} links to {target}, which does not exist"


def test_the_readme_is_short_and_no_page_carries_work_log_labels() -> None:
    assert len((ROOT / "README.md").read_text().splitlines()) <= 300
    for page in PAGES:
        text = page.read_text()
        assert not re.search(r"\bsession \d|\bwork period|\.\./shared/", text, re.IGNORECASE), page.relative_to(ROOT)
