"""``make conformance``: schemathesis against the official Azure OpenAI specs, on a fresh emulator.

Starts the emulator on a free loopback port in a temporary data dir, then runs ``schemathesis run`` (its
CLI, in a subprocess) once per API version the pipeline uses, on the operations the pipeline calls on it
(``shared/aoai/clients.py`` chooses them; ``docs/azure-fidelity.md`` lists them):

- ``2024-10-21``: files, uploads, models, batches, on ``azure-openai/2024-10-21.authoring.json``
  (``<url>/openai``, ``api-version`` pinned);
- ``v1``: fine-tuning jobs, events, checkpoints, on ``azure-openai/v1.authoring.yaml`` (``<url>/openai/v1``).

The spec copies are the ones in ``shared/specs`` beside the checkout. Exit code 0 when every check of
every version passes; schemathesis's own output says what failed otherwise.

    python -m local.conformance [--max-examples N] [--seed S] [extra schemathesis options...]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from local.emulator.config import EmulatorConfig
from local.emulator.constants import API_KEY, DATA_PLANE_API_VERSION
from local.emulator.server import EmulatorServer
from local.emulator.specs import AUTHORING_SPECS, find_specs_dir

SPECS_DIR = find_specs_dir()
# The checks that apply to these specs (no links, one auth scheme used): server errors, status codes,
# content types, headers and bodies against the schema, rejection of invalid input, unsupported methods.
# Not `ignored_auth`: its unauthenticated requests get Azure's real 401 body, whose
# `{"error": {"code": "401", ...}}` is outside the spec's ErrorCode enum (the spec and the service
# disagree; the emulator follows the service). tests/local/emulator/test_files.py checks the 401s.
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


@dataclass(frozen=True)
class Target:
    """One schemathesis run: a spec copy, the emulator base path, the operations the pipeline calls."""

    version: str
    base_path: str
    operation_ids: tuple[str, ...]
    api_version: str | None  # pinned ``api-version`` query parameter, None when the spec makes it optional

    @property
    def spec(self) -> Path:
        return (SPECS_DIR or Path("shared/specs")) / AUTHORING_SPECS[self.version]


TARGETS = (
    Target(
        DATA_PLANE_API_VERSION,
        "/openai",
        (
            "Files_List", "Files_Upload", "Files_Get", "Files_Delete", "Files_GetContent",
            "UploadFile_Start", "UploadFile_Part", "UploadFile_Complete", "UploadFile_Cancel",
            "Models_List", "Models_Get",
            "Batch_List", "Batch_Create", "Batch_Get", "Batch_Cancel",
        ),
        DATA_PLANE_API_VERSION,
    ),
    Target(
        "v1",
        "/openai/v1",
        (
            "createFineTuningJob", "listPaginatedFineTuningJobs", "retrieveFineTuningJob",
            "cancelFineTuningJob", "listFineTuningEvents", "listFineTuningJobCheckpoints",
        ),
        None,
    ),
)  # fmt: skip
CONFIG_TEMPLATE = """\
# Written by local/conformance.py for one run.
[parameters]
"query.api-version" = "{api_version}"
"""


def schemathesis_command(
    url: str, target: Target, config_file: Path | None, *, max_examples: int, seed: int, extra: list[str]
) -> list[str]:
    """The ``schemathesis run`` command line for ``target`` on an emulator at ``url``."""
    config = ["--config-file", str(config_file)] if config_file is not None else []
    operations = [option for operation_id in target.operation_ids for option in ("--include-operation-id", operation_id)]
    return [
        sys.executable,
        "-m",
        "schemathesis.cli",
        *config,
        "run",
        str(target.spec),
        "--url",
        f"{url}{target.base_path}",
        *operations,
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
    """Start an emulator, run schemathesis for every target against it, stop it; returns the first
    non-zero schemathesis exit code (0 when all pass)."""
    if SPECS_DIR is None:
        print("conformance: the spec copies are missing (shared/specs beside the checkout)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="visiontune-conformance-") as folder:
        config = EmulatorConfig(step_seconds=0.2, file_processing_seconds=0.1, deployment_seconds=0.2)
        server = EmulatorServer(Path(folder) / "emulator", config=config).start()
        codes = []
        try:
            for target in TARGETS:
                config_file = None
                if target.api_version is not None:
                    config_file = Path(folder) / f"schemathesis-{target.version}.toml"
                    config_file.write_text(CONFIG_TEMPLATE.format(api_version=target.api_version), encoding="utf-8")
                where = f"{server.url}{target.base_path}"
                print(f"conformance: API version {target.version} on {where}; spec {target.spec}", flush=True)
                command = schemathesis_command(
                    server.url, target, config_file, max_examples=max_examples, seed=seed, extra=extra or []
                )
                codes.append(subprocess.call(command, cwd=folder))
        finally:
            server.stop()
        exits = ", ".join(f"{t.version}: exit {c}" for t, c in zip(TARGETS, codes, strict=True))
        print(f"conformance: {exits}", flush=True)
        return next((code for code in codes if code), 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.conformance", description=__doc__.splitlines()[0])
    parser.add_argument("--max-examples", type=int, default=25, help="test cases per operation and phase")
    parser.add_argument("--seed", type=int, default=0)
    args, extra = parser.parse_known_args(argv)
    return run(args.max_examples, args.seed, extra)


if __name__ == "__main__":
    raise SystemExit(main())
