"""Shared CLI plumbing: one console, progress bars for long steps, and errors without tracebacks."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from cupola.config import Settings
from cupola.errors import CupolaError

console = Console()


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Show a `CupolaError` (and a settings or record value pydantic refuses) as one clear message and exit 2;
    anything else is a bug and keeps its traceback."""
    try:
        yield
    except (CupolaError, ValidationError) as error:
        console.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from None


@contextlib.contextmanager
def progress_bars() -> Iterator[Callable[[str, int, int], None]]:
    """A progress callback `(step, done, total)` drawing one bar per step on a terminal; into a file or a pipe,
    where a bar would show only at the end, one line when a step starts and one when it is done."""
    if not console.is_terminal:
        yield _progress_lines()
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as bars:
        tasks: dict[str, TaskID] = {}

        def report(step: str, done: int, total: int) -> None:
            if step not in tasks:
                tasks[step] = bars.add_task(step, total=total)
            bars.update(tasks[step], completed=done, total=total)

        yield report


def load_settings() -> Settings:
    with user_errors():
        return Settings.load()


def _progress_lines() -> Callable[[str, int, int], None]:
    started: set[str] = set()

    def report(step: str, done: int, total: int) -> None:
        if step not in started:
            started.add(step)
            console.print(f"{step}: started ({total} to do)", highlight=False, soft_wrap=True)
        if done >= total:
            console.print(f"{step}: done ({done}/{total})", highlight=False, soft_wrap=True)

    return report
