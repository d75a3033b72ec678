"""What the storage commands (``push``, ``status``, ``report``) share: their ``--settings``/``--json``
arguments, loading the settings with a message that says what to do, one sentence for storage errors,
and the names of the datasets there are."""

from __future__ import annotations

import argparse
import json
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from shared.layout import DATASETS_CONTAINER
from shared.pipeline.store import RunStore
from shared.settings import SettingsError, load_settings
from shared.storage.clients import blob_service_client, container_client

DEFAULT_SETTINGS = Path("local.settings.json")


def add_storage_arguments(parser: argparse.ArgumentParser) -> None:
    """``--settings`` and ``--json``, for the commands that talk to storage."""
    parser.add_argument(
        "--settings",
        type=Path,
        default=None,
        help="local.settings.json to read (default: ./local.settings.json, else the one `visiontune "
        "local up` wrote in this checkout; the environment wins)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON for scripts instead of tables")


class CommandError(Exception):
    """A problem the user can fix; its message is one sentence saying what to do (printed, exit code 2)."""


def default_settings_path() -> Path:
    """``./local.settings.json`` when it exists, else the one ``visiontune local up`` writes in this checkout
    (so ``status`` works from any folder while the stack runs)."""
    if DEFAULT_SETTINGS.is_file():
        return DEFAULT_SETTINGS
    return default_app_root() / DEFAULT_SETTINGS.name


def default_app_root() -> Path:
    """The current folder if it holds ``function_app.py``, else this checkout's root."""
    if (Path.cwd() / "function_app.py").exists():
        return Path.cwd()
    return Path(__file__).resolve().parent.parent


def command_settings(path: Path | None) -> Any:
    """The settings for a storage command; ``CommandError`` (saying what to do) when there are none usable."""
    import pydantic

    explicit = path is not None
    path = path if path is not None else default_settings_path()
    if explicit and not path.is_file():
        raise CommandError(
            f"no settings file at {path}: pass the local.settings.json that `visiontune local up` wrote "
            "(in the folder it was started from), or leave out --settings"
        )
    try:
        settings = load_settings(local_settings=path)
        settings.require_storage()
    except json.JSONDecodeError as error:
        raise CommandError(
            f"{path} is not valid JSON (line {error.lineno}, column {error.colno}): fix it, or delete it and "
            "start `visiontune local up` again to write a new one"
        ) from None
    except pydantic.ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ())) or "a setting"
        raise CommandError(f"invalid setting {where} in {path} or the environment: {first['msg']}") from None
    except SettingsError as error:
        if path.is_file():
            raise CommandError(f"{error} (in {path} or the environment)") from None
        raise CommandError(
            "no local.settings.json here and no storage settings in the environment: start the local stack "
            "with `visiontune local up` (it writes local.settings.json), or pass --settings PATH"
        ) from None
    check_storage_reachable(settings, path)
    return settings


def check_storage_reachable(settings: Any, path: Path, timeout: float = 3.0) -> None:
    """Fail in seconds, not after the SDK's minute of retries, when nothing listens at the blob endpoint
    (typically: the local stack that wrote the settings has been stopped)."""
    url = urlparse(blob_service_client(settings).url)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout).close()
    except OSError as error:
        raise CommandError(
            f"cannot reach blob storage at {url.scheme}://{url.netloc} ({error.strerror or error}): start the "
            f"local stack with `visiontune local up` (the settings came from {path}), or pass --settings PATH"
        ) from None


def fail(message: str) -> int:
    """Print ``visiontune: message`` to stderr; returns the exit code for a problem the user can fix (2)."""
    print(f"visiontune: {message}", file=sys.stderr)
    return 2


def storage_errors(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn the failures a user can meet (bad settings, storage down or refusing) into one sentence."""

    def wrapped(args: argparse.Namespace) -> int:
        from azure.core.exceptions import AzureError, ServiceRequestError, ServiceResponseError

        try:
            return handler(args)
        except CommandError as error:
            return fail(str(error))
        except ServiceRequestError as error:
            return fail(
                f"blob storage stopped answering ({error.message}): is `visiontune local up` still running?"
            )
        except ServiceResponseError as error:  # connected, then no (complete) answer within the read timeout
            return fail(
                f"blob storage accepted the connection but did not answer in time ({error.message}); check that "
                "the storage endpoint in your settings is blob storage (VISIONTUNE_STORAGE_READ_TIMEOUT sets the wait)"
            )
        except AzureError as error:
            first_line = (error.message or str(error)).strip().splitlines()[0]
            return fail(f"blob storage refused the request: {first_line}")

    wrapped.__name__ = handler.__name__
    wrapped.__doc__ = handler.__doc__
    return wrapped


def dataset_names(settings: Any) -> tuple[list[str], list[str]]:
    """``(datasets with runs, datasets pushed to the drop zone)``, each sorted."""
    with_runs = sorted(RunStore.from_settings(settings).datasets())
    pushed = set()
    for item in container_client(settings, DATASETS_CONTAINER).walk_blobs(delimiter="/"):
        name = item.name
        if name.endswith("/"):
            pushed.add(name[:-1])
        elif name.endswith(".zip"):
            pushed.add(name[: -len(".zip")])
    return with_runs, sorted(pushed)


def no_runs_message(dataset: str, with_runs: list[str], pushed: list[str]) -> tuple[bool, str]:
    """``(is_pending, sentence)`` for a dataset without runs: pushed and waiting, or unknown."""
    if dataset in pushed:
        return True, (
            f"dataset {dataset!r} was pushed but has no run yet: the functions host converts it when it sees "
            f"the _READY marker (or the .zip); check that `visiontune local up` is running and try again in a moment"
        )
    known = sorted(set(with_runs) | set(pushed))
    listing = f"known datasets are {', '.join(known)}" if known else "there are no datasets yet"
    return (
        False,
        f"no dataset named {dataset!r}: {listing}; push one with `visiontune push DIR --dataset NAME`",
    )


def table_console() -> Any:
    """A console for tables: the terminal's width, or a wide one when the output is a file or a pipe (so
    long version ids and messages are not folded at 80 columns)."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=140)
