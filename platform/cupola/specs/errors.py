"""One error type for every bad declaration, rendered as `file: field: problem — fix`."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from cupola.errors import InvalidInput

SpecModel = TypeVar("SpecModel", bound=BaseModel)


class SpecError(InvalidInput):
    """A declaration is invalid. The message names the file, the field and the fix."""


def _field_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(top level)"


def _allowed_keys(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """Walk the model along `loc` (minus the unknown key) to list the keys allowed there."""
    current: type[BaseModel] | None = model
    for part in loc[:-1]:
        if current is None or isinstance(part, int):
            continue
        field = current.model_fields.get(str(part))
        if field is None:
            return []
        annotation = field.annotation
        current = _first_model(annotation)
    return sorted(current.model_fields) if current is not None else []


def _first_model(annotation: object) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _first_model(arg)
        if found is not None:
            return found
    return None


def spec_error_from_validation(source: Path | str, model: type[BaseModel], error: ValidationError) -> SpecError:
    """Turn pydantic's errors into one SpecError naming each field and how to fix it."""
    lines = []
    for problem in error.errors():
        loc = tuple(problem["loc"])
        field = _field_path(loc)
        if problem["type"] == "extra_forbidden":
            allowed = ", ".join(_allowed_keys(model, loc)) or "none"
            lines.append(f"{field}: unknown key — remove it or use one of: {allowed}")
        elif problem["type"] == "missing":
            lines.append(f"{field}: required — add it")
        else:
            message = str(problem["msg"]).removeprefix("Value error, ")
            lines.append(f"{field}: {message}")
    return SpecError(f"{source}: " + ("\n  ".join(lines) if len(lines) == 1 else "\n  " + "\n  ".join(lines)))


def read_spec_text(path: Path) -> str:
    """A declaration file's text; SpecError naming the file when it cannot be read."""
    try:
        return path.read_text()
    except OSError as error:
        raise SpecError(f"{path}: cannot be read: {error.strerror}") from None


def load_spec(path: Path, model: type[SpecModel], expected: str) -> SpecModel:
    """Read one YAML declaration and validate it as `model`; `expected` lists its main keys for the error."""
    return parse_spec(read_spec_text(path), path, model, expected)


def parse_spec(text: str, source: Path | str, model: type[SpecModel], expected: str) -> SpecModel:
    """Validate YAML text as `model`; errors name `source` (a file, or where the text came from)."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise SpecError(f"{source}: not valid YAML: {error}") from None
    if not isinstance(document, dict):
        raise SpecError(f"{source}: expected a mapping of keys ({expected}), got {type(document).__name__}")
    try:
        return model.model_validate(document)
    except ValidationError as error:
        raise spec_error_from_validation(source, model, error) from None
