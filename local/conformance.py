"""``make conformance``: schemathesis against the Azure OpenAI authoring spec, on a fresh emulator.

Starts the emulator on a free loopback port in a temporary data dir, then runs ``schemathesis run`` (its
CLI, in a subprocess) on ``<repo>/../shared/specs/azure-openai-authoring-2024-10-21.excerpt.json``
(files, fine_tuning/jobs, batches) with ``api-version`` pinned and the emulator's ``api-key`` sent.
Exit code 0 when every check passes; schemathesis's own output says what failed otherwise.

    python -m local.conformance [--max-examples N] [--seed S] [extra schemathesis options...]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from local.emulator.config import EmulatorConfig
from local.emulator.constants import API_KEY, DATA_PLANE_API_VERSION
from local.emulator.server import EmulatorServer

REPO_ROOT = Path(__file__).resolve().parent.parent
SPEC_PATH = REPO_ROOT.parent / "shared" / "specs" / "azure-openai-authoring-2024-10-21.excerpt.json"
# The checks that apply to this spec (it has no links and one auth scheme): server errors, status codes,
# content types, headers and bodies against the schema, rejection of invalid input, unsupported methods.
# Not `ignored_auth`: its unauthenticated requests get Azure's real 401 body, whose
# `{"error": {"code": "401", ...}}` is outside the excerpt's ErrorCode enum (the spec and the service
# disagree; the emulator follows the service). tests/local/emulator/test_emulator_files.py checks the 401s.
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "unsupported_method",
    "missing_required_header",
)
CONFIG_TEMPLATE = """\
# Written by local/conformance.py for one run.
[parameters]
"query.api-version" = "{api_version}"
"""


def schemathesis_command(
    url: str, config_file: Path, *, max_examples: int, seed: int, extra: list[str]
) -> list[str]:
    """The ``schemathesis run`` command line for an emulator at ``url``."""
    return [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(config_file),
        "run",
        str(SPEC_PATH),
        "--url",
        f"{url}/openai",
        "--header",
        f"api-key: {API_KEY}",
        "--checks",
        ",".join(CHECKS),
        "--max-examples",
        str(max_examples),
        "--seed",
        str(seed),
        "--workers",
        "1",
        "--no-color",
        "--generation-database",
        "none",
        # The key is sent with --header; do not generate (or drop) the api-key header as test data.
        "--generation-with-security-parameters",
        "false",
        *extra,
    ]


def run(max_examples: int = 25, seed: int = 0, extra: list[str] | None = None) -> int:
    """Start an emulator, run schemathesis against it, stop it; returns schemathesis's exit code."""
    if not SPEC_PATH.exists():
        print(f"conformance: the spec is missing: {SPEC_PATH}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="visiontune-conformance-") as folder:
        config_file = Path(folder) / "schemathesis.toml"
        config_file.write_text(CONFIG_TEMPLATE.format(api_version=DATA_PLANE_API_VERSION), encoding="utf-8")
        config = EmulatorConfig(step_seconds=0.2, file_processing_seconds=0.1, deployment_seconds=0.2)
        server = EmulatorServer(Path(folder) / "emulator", config=config).start()
        try:
            print(f"conformance: emulator on {server.url}; spec {SPEC_PATH}", flush=True)
            command = schemathesis_command(
                server.url, config_file, max_examples=max_examples, seed=seed, extra=extra or []
            )
            return subprocess.call(command, cwd=folder)
        finally:
            server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.conformance", description=__doc__.splitlines()[0])
    parser.add_argument("--max-examples", type=int, default=25, help="test cases per operation and phase")
    parser.add_argument("--seed", type=int, default=0)
    args, extra = parser.parse_known_args(argv)
    return run(args.max_examples, args.seed, extra)


if __name__ == "__main__":
    raise SystemExit(main())
