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
from cupola.specs.errors import SpecError

console = Console()


def _user_error_types() -> tuple[type[BaseException], ...]:
    """The errors shown as a message; imported only when one is raised, so `cupola --help` stays fast."""
    from cupola.stores.models import AliasConflict, ArtifactIntegrityError

    return (
        SpecError, SettingsError, ValidationError, ValueError, KeyError, TypeError, FileNotFoundError, NotImplementedError,
        AliasConflict, ArtifactIntegrityError, ConnectionError, ApiError,
    )


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Show a bad-input error as one clear message and exit 2, never as a stack trace."""
    try:
        yield
    except _user_error_types() as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
        console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from None


@contextlib.contextmanager
def progress_bars() -> Iterator[Callable[[str, int, int], None]]:
    """A progress callback `(step, done, total)` drawing one bar per step on a terminal; into a file or a pipe,
    where a bar would show only at the end, one line when a step starts and one when it is done."""
    if not console.is_terminal:
        yield _progress_lines()
        return
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


def _progress_lines() -> Callable[[str, int, int], None]:
    started: set[str] = set()

    def report(step: str, done: int, total: int) -> None:
        if step not in started:
            started.add(step)
            console.print(f"{step}: started ({total} to do)", highlight=False, soft_wrap=True)
        if done >= total:
            console.print(f"{step}: done ({done}/{total})", highlight=False, soft_wrap=True)

    return report

