"""The settings reference page (docs/settings.md), generated from the `Settings` fields so it cannot drift.

Regenerate with `python -m cupola.config.reference > docs/settings.md`; a test fails when the
page in the repository differs from what this prints.
"""

from __future__ import annotations

import json
import re

from pydantic import SecretStr
from pydantic_core import PydanticUndefined

from cupola.config.settings import ENV_PREFIX, Settings

INTRO = """# Settings

One `Settings` object (`platform/cupola/config/settings.py`) reads every variable; nothing
else reads the environment. Precedence: keyword arguments, `CUPOLA_*` variables, the YAML
file named by `CUPOLA_CONFIG_FILE` (keys in lower case, as in the first column without the
prefix), then the defaults. Unknown keys and bad values are refused with the variable's name
and the fix. `cupola config` prints the effective values, secrets masked.

Secrets (marked below) are never printed, logged or forwarded to Ray jobs and Serve replicas:
set them in the environment of every node (or a `CUPOLA_CONFIG_FILE` only the Ray user can
read). Lists and mappings are JSON, e.g. `CUPOLA_CASSANDRA_HOSTS='["10.0.0.1", "10.0.0.2"]'`.

This page is generated from the code: `python -m cupola.config.reference > docs/settings.md`.
"""


def _default(field_name: str) -> str:
    field = Settings.model_fields[field_name]
    value = field.default_factory() if field.default_factory is not None else field.default  # type: ignore[call-arg]
    if value is PydanticUndefined or value is None or value == "" or value == SecretStr(""):
        return "empty"
    if isinstance(value, list | dict):
        return f"`{json.dumps(value)}`"
    return f"`{value}`"


def settings_reference() -> str:
    """The Markdown page: one row per setting with its variable, default, whether it is secret, and its meaning."""
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        meaning = re.sub(r"\s*Env: CUPOLA_[A-Z0-9_]+\.?\s*$", "", field.description or "").replace("|", "\\|") or "—"
        secret = " **Secret.**" if field.annotation is SecretStr else ""
        rows.append(f"| `{ENV_PREFIX}{name.upper()}` | {_default(name)} | {meaning}{secret} |")
    return INTRO + "\n" + "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(settings_reference(), end="")
