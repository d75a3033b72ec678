"""``python -m local.emulator --port P --data DIR``: serve the emulator in the foreground."""

from __future__ import annotations

import argparse
from pathlib import Path

from local.emulator.config import EmulatorConfig
from local.emulator.server import EmulatorServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument("--data", type=Path, default=Path(".visiontune/emulator"), help="state directory")
    parser.add_argument("--step-seconds", type=float, default=EmulatorConfig.step_seconds)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    server = EmulatorServer(
        args.data, host=args.host, port=args.port, config=EmulatorConfig(step_seconds=args.step_seconds, seed=args.seed)
    )
    try:
        server.serve_forever()
    except OSError as exc:
        parser.exit(2, f"error: {exc}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
