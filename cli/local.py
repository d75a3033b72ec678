"""``visiontune local up | emulator | tick``: the local stack from the command line."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

from cli import common
from cli.common import default_settings_path
from local.azurite import AzuriteError
from local.emulator.server import EmulatorConfig, EmulatorServer, local_settings_values
from local.host.indexing import IndexingError

DEFAULT_HOST_PORT = 7071  # Core Tools' port
DEFAULT_DATA_DIR = Path(".local-stack")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``local`` with its ``up``, ``emulator`` and ``tick`` subcommands."""
    local = subparsers.add_parser(
        "local",
        help="run everything on this machine: Azurite, the Azure OpenAI emulator, the functions host",
        description="The local stack: Azurite (storage), an Azure OpenAI emulator, and a functions host "
        "that runs function_app.py the way Azure Functions does.",
    )
    commands = local.add_subparsers(dest="local_command", required=True, metavar="SUBCOMMAND")

    up = commands.add_parser(
        "up",
        help="start Azurite, the emulator and the functions host in the foreground (Ctrl-C stops all three)",
        description="Start Azurite, the Azure OpenAI emulator and the functions host; write the settings to "
        "<app root>/local.settings.json (Core Tools format; your other Values are kept); print the endpoints; "
        "run until Ctrl-C. State is kept under --data, so the next `local up` finds the same blobs, files, "
        "jobs and deployments.",
    )
    up.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR, help=f"state folder ({DEFAULT_DATA_DIR})")
    up.add_argument(
        "--emulator-port", type=int, default=0, help="Azure OpenAI emulator port (0: any free port)"
    )
    up.add_argument(
        "--host-port",
        type=int,
        default=DEFAULT_HOST_PORT,
        help=f"functions host HTTP port ({DEFAULT_HOST_PORT})",
    )
    up.add_argument(
        "--app-root", type=Path, default=None, help="folder with function_app.py (default: this checkout)"
    )
    up.add_argument(
        "--step-seconds", type=float, default=None, help="emulator clock: seconds per job/batch status"
    )
    up.add_argument("--poll-interval", type=float, default=1.0, help="seconds between blob scans (1)")
    up.add_argument("--verbose", action="store_true", help="also log the storage SDK's requests")
    up.set_defaults(handler=run_up)

    emulator = commands.add_parser(
        "emulator",
        help="serve only the Azure OpenAI emulator in the foreground",
        description="Serve the Azure OpenAI emulator (data plane + ARM deployments) until Ctrl-C and print "
        "the settings that point visiontune at it.",
    )
    emulator.add_argument("--port", type=int, default=0, help="port (0: any free port)")
    emulator.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR / "emulator", help="state folder")
    emulator.add_argument("--step-seconds", type=float, default=None, help="seconds per job/batch status")
    emulator.set_defaults(handler=run_emulator)

    tick = commands.add_parser(
        "tick",
        help="run a function now (a timer such as advance_runs), on the running `local up` host",
        description="Run FUNCTION now and print how it ended. By default this asks the host of a running "
        "`visiontune local up` (POST /admin/functions/FUNCTION, as with Core Tools), so it runs with that "
        "stack's settings. --in-process runs it in this process instead, with <app root>/local.settings.json "
        "(the services it calls must be reachable). Blob-trigger functions need --input CONTAINER/BLOB. "
        "Exit code 0 when the function succeeded, 1 when it failed.",
    )
    tick.add_argument("function", metavar="FUNCTION", help="function name, e.g. advance_runs")
    tick.add_argument(
        "--input", default=None, metavar="CONTAINER/BLOB", help="the blob, for a blob-trigger function"
    )
    tick.add_argument(
        "--host-url",
        default=None,
        help="the running host (default: the port `visiontune local up` wrote as Host.LocalHttpPort in "
        f"local.settings.json, else {DEFAULT_HOST_PORT})",
    )
    tick.add_argument("--settings", type=Path, default=None, help="local.settings.json to read the host's port from")
    tick.add_argument("--in-process", action="store_true", help="run here, not on the running host")
    tick.add_argument(
        "--app-root", type=Path, default=None, help="folder with function_app.py (with --in-process)"
    )
    tick.set_defaults(handler=run_tick)


def _configure_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    if not verbose:
        for noisy in ("azure", "urllib3", "httpx", "httpx2", "openai", "uvicorn.access"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def _error(message: str) -> int:
    print(f"visiontune local: error: {message}", file=sys.stderr)
    return 2


def _wait_for_interrupt() -> None:
    """Block until Ctrl-C or SIGTERM."""
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    finally:
        signal.signal(signal.SIGTERM, previous)


def _emulator_config(step_seconds: float | None) -> EmulatorConfig | None:
    if step_seconds is None:
        return None

    return EmulatorConfig(step_seconds=step_seconds)


def run_up(args: argparse.Namespace) -> int:
    from local.stack import LocalStack, LocalStackError

    _configure_logging(args.verbose)
    app_root = (args.app_root or common.default_app_root()).resolve()
    if not (app_root / "function_app.py").exists():
        return _error(f"no function_app.py in {app_root} (use --app-root)")
    stack = LocalStack(
        args.data.resolve(),
        app_root=app_root,
        emulator_config=_emulator_config(args.step_seconds),
        host_poll_interval=args.poll_interval,
        emulator_port=args.emulator_port,
        host_port=args.host_port,
        local_settings_path=app_root / "local.settings.json",
    )
    try:
        stack.start()
    except (AzuriteError, LocalStackError, IndexingError) as error:
        return _error(str(error))
    try:
        endpoints = stack.endpoints()
        print("visiontune local stack is up (Ctrl-C stops it)")
        print(f"  storage (Azurite)  blob {endpoints['blob']}  queue {endpoints['queue']}")
        print(f"  Azure OpenAI       {endpoints['azure_openai']}  (ARM: the same URL)")
        print(f"  functions host     {endpoints.get('functions', '-')}")
        print(f"  settings           {app_root / 'local.settings.json'}")
        print(f"  state              {args.data.resolve()}")
        assert stack.host is not None
        for info in stack.host.functions():
            print(f"    - {info.describe()}")
        tick = "visiontune local tick advance_runs"
        if args.host_port != DEFAULT_HOST_PORT and stack.host.http_url:
            tick += f" --host-url {stack.host.http_url}"  # the real port, also when 0 asked for any
        print(f"  push a dataset with `visiontune push DIR --dataset NAME`; `{tick}` moves runs now")
        _wait_for_interrupt()
    except KeyboardInterrupt:
        pass
    finally:
        print("stopping the local stack ...", file=sys.stderr)
        stack.stop()
    return 0


def run_emulator(args: argparse.Namespace) -> int:
    _configure_logging()
    server = EmulatorServer(args.data.resolve(), port=args.port, config=_emulator_config(args.step_seconds))
    try:
        server.start()
    except (OSError, RuntimeError) as error:
        return _error(f"the emulator could not start on port {args.port}: {error}")
    try:
        print(f"Azure OpenAI emulator on {server.url} (state in {args.data.resolve()}); Ctrl-C stops it")
        print(json.dumps(local_settings_values(server.url), indent=2))
        _wait_for_interrupt()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


def local_host_url(settings_path: Path | None) -> str:
    """The URL of the host ``visiontune local up`` started: the ``Host.LocalHttpPort`` it wrote into
    local.settings.json (Core Tools' field), else Core Tools' default port."""
    path = settings_path or default_settings_path()
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
        port = int(document["Host"]["LocalHttpPort"])
    except (OSError, ValueError, KeyError, TypeError):
        port = DEFAULT_HOST_PORT
    return f"http://127.0.0.1:{port}"


def run_tick(args: argparse.Namespace) -> int:
    if args.in_process:
        return _tick_in_process(args)

    if args.host_url is None:
        args.host_url = local_host_url(args.settings)
    url = f"{args.host_url.rstrip('/')}/admin/functions/{args.function}"
    body = json.dumps({"input": args.input} if args.input else {}).encode()
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=None) as response:
            invocation = json.loads(response.read())
    except urllib.error.HTTPError as error:
        detail = error.read().decode(errors="replace")
        try:
            detail = json.loads(detail).get("error", detail)
        except ValueError:
            pass
        return _error(f"the host refused: {detail}")
    except urllib.error.URLError as error:
        return _error(
            f"no functions host answers at {args.host_url} ({error.reason}): start `visiontune local up`, "
            "or pass --host-url, or use --in-process"
        )
    print(json.dumps(invocation, indent=2))
    return 0 if invocation.get("outcome") == "succeeded" else 1


def _tick_in_process(args: argparse.Namespace) -> int:
    from local.host.host import LocalFunctionsHost

    _configure_logging()
    app_root = (args.app_root or common.default_app_root()).resolve()
    try:
        host = LocalFunctionsHost(app_root)
    except IndexingError as error:
        return _error(str(error))
    try:
        invocation = host.tick(args.function, blob_path=args.input)
    except KeyError as error:
        return _error(str(error.args[0]))
    except ValueError as error:
        return _error(str(error))
    finally:
        host.stop()
    print(json.dumps(invocation.to_json(), indent=2))
    return 0 if invocation.succeeded else 1
