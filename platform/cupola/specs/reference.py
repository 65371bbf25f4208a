"""The spec reference page (docs/spec-reference.md), generated from the spec models and the DSL's functions.

Regenerate with `python -m cupola.specs.reference > docs/spec-reference.md`; a test fails when the
page in the repository differs from what this prints, and when a field has no description.
"""

from __future__ import annotations

import json
import re
import types
import typing
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from cupola import dsl
from cupola.specs.durations import format_duration
from cupola.specs.feature_group import FeatureGroupSpec
from cupola.specs.model import ModelSpec

INTRO = """# Spec reference

Every field of a feature-group declaration and of a model spec, with its type, default and
meaning, and every function of the transform DSL. Unknown keys are refused; every error names
the file, the field and the fix. Durations are written `30s`, `10m`, `1h`, `7d`, `2w`.

This page is generated from the code: `python -m cupola.specs.reference > docs/spec-reference.md`.
"""


def _type_name(annotation: Any) -> str:
    """A field's type as a reader writes it in YAML terms."""
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if origin is typing.Literal:
        return " \\| ".join(f"`{value}`" for value in arguments)
    if origin in (typing.Union, types.UnionType):
        named = [_type_name(a) for a in arguments if a is not type(None)]
        return " \\| ".join(named) + (" or null" if type(None) in arguments else "")
    if origin is typing.Annotated:
        return _type_name(arguments[0])
    if origin in (list, tuple):
        return f"list of {_type_name(arguments[0])}" if arguments else "list"
    if origin is dict:
        return f"mapping of {_type_name(arguments[0])} to {_type_name(arguments[1])}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "mapping (below)"
    names = {str: "text", int: "integer", float: "number", bool: "boolean", Any: "any value"}
    names |= {timedelta: "duration", date: "date (YYYY-MM-DD)", datetime: "date or time (ISO 8601)"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _default(field: Any) -> str:
    if field.is_required():
        return "required"
    value = field.default_factory() if field.default_factory is not None else field.default
    if value is PydanticUndefined or value is None or value == "":
        return "empty"
    if isinstance(value, BaseModel):
        return "(below)"
    if isinstance(value, timedelta):
        return f"`{format_duration(value)}`"
    if isinstance(value, list | dict):
        return (
            f"`{json.dumps(value, default=lambda v: format_duration(v) if isinstance(v, timedelta) else str(v))}`"
            if value
            else "empty"
        )
    return f"`{value}`"


def _json(value: Any) -> str:
    return format_duration(value) if isinstance(value, timedelta) else str(value)


def _models(annotation: Any) -> Iterator[type[BaseModel]]:
    """The spec models a field's type holds (a nested mapping, a list of them, an optional one)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for argument in typing.get_args(annotation):
        yield from _models(argument)


def fields(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, str, str, str]]:
    """(dotted name, type, default, meaning) of every field of `model` and of the models inside it."""
    for name, field in model.model_fields.items():
        dotted = f"{prefix}{name}"
        meaning = _cell(field.description or "")
        yield dotted, _type_name(field.annotation), _default(field), meaning
        for inner in _models(field.annotation):
            yield from fields(inner, f"{dotted}.")


def _cell(text: str) -> str:
    """Text for a Markdown table cell: one line, pipes escaped."""
    return re.sub(r"\s+", " ", text).replace("|", "\\|")


def _table(model: type[BaseModel]) -> str:
    rows = ["| field | type | default | meaning |", "| --- | --- | --- | --- |"]
    rows += [f"| `{name}` | {kind} | {default} | {meaning or '—'} |" for name, kind, default, meaning in fields(model)]
    return "\n".join(rows)


def spec_reference() -> str:
    """The Markdown page: a feature group's fields, a model spec's fields, the DSL's functions."""
    functions = ["| function | arguments | meaning |", "| --- | --- | --- |"]
    functions += [f"| `{name}` | {f.arity} | {_cell(f.doc)} |" for name, f in sorted(dsl.FUNCTIONS.items())]
    return "\n".join(
        [
            INTRO,
            "## Feature group (`features/*.yaml`, applied with `cupola features apply`)\n",
            _table(FeatureGroupSpec),
            "\n## Model spec (`cupola train SPEC`)\n",
            _table(ModelSpec),
            "\n## Transform functions\n",
            "Expressions are Python-like: column names, numbers, strings, `+ - * / // % **`, comparisons, "
            "`and or not`, and these functions (`group.feature` reads a joined feature column):\n",
            "\n".join(functions),
            "",
        ]
    )


if __name__ == "__main__":
    print(spec_reference(), end="")
