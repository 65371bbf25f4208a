"""Shared CLI plumbing: one console, progress bars for long steps, and errors without tracebacks."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cupola.client import ApiError, Client
from cupola.config import Settings, SettingsError
from cupola.stores.models import AliasConflict, ArtifactIntegrityError
from cupola.specs import SpecError

console = Console()
USER_ERRORS = (
    SpecError, SettingsError, ValidationError, ValueError, KeyError, TypeError, FileNotFoundError, NotImplementedError,
    AliasConflict, ArtifactIntegrityError, ConnectionError, ApiError,
)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Show a bad-input error as one clear message and exit 2, never as a stack trace."""
    try:
        yield
    except USER_ERRORS as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
        console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from None


@contextlib.contextmanager
def progress_bars() -> Iterator[Callable[[str, int, int], None]]:
    """A progress callback `(step, done, total)` drawing one bar per step."""
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console, transient=False) as bars:
        tasks: dict[str, int] = {}

        def report(step: str, done: int, total: int) -> None:
            if step not in tasks:
                tasks[step] = bars.add_task(step, total=total)
            bars.update(tasks[step], completed=done, total=total)

        yield report


def load_settings() -> Settings:
    with user_errors():
        return Settings.load()


def remote(settings: Settings) -> Client | None:
    """The control plane's client when CUPOLA_API_URL is set: the command then works through the API."""
    return Client(settings.api_url, settings.api_token.get_secret_value(), user=settings.user or None) if settings.api_url else None
