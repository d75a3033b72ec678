"""``visiontune predict IMAGE|DIR... --dataset NAME [--version V] [--json]``: classify images with the
dataset's production model (or a version's deployment), preprocessed exactly as its training images."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from cli.common import CommandError, command_settings, storage_errors
from shared.prediction import MAX_IMAGE_BYTES, Prediction, PredictionError, Predictor

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".mpo"})


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``predict``."""
    parser = subparsers.add_parser(
        "predict",
        help="classify images with a dataset's production model",
        description="Classify each IMAGE (or every image file under each DIR) with the production model of "
        "--dataset, or with --version's deployment. Each image gets the preprocessing of that version's "
        "training data (EXIF orientation, RGB, longest side, JPEG quality, system prompt from its manifest). "
        "Prints the label ('unknown' when the answer is no label), the confidence when the deployment returns "
        "logprobs, and the latency.",
    )
    parser.add_argument("paths", nargs="+", type=Path, metavar="IMAGE|DIR")
    parser.add_argument("--dataset", required=True, metavar="NAME")
    parser.add_argument("--version", default=None, metavar="V", help="a version (or unique prefix) instead of production")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight (4)")
    parser.add_argument("--settings", type=Path, default=None, help="local.settings.json to read")
    parser.add_argument("--json", action="store_true", help="print one JSON object per image (JSON lines)")
    parser.set_defaults(handler=run_predict)


def collect_images(paths: list[Path]) -> tuple[list[Path], list[str]]:
    """The image files named or found (recursively, sorted, hidden files skipped) under ``paths``, and
    one message per path that does not exist."""
    found: list[Path] = []
    missing: list[str] = []
    for path in paths:
        if path.is_dir():
            found.extend(
                p
                for p in sorted(path.rglob("*"))
                if p.is_file()
                and p.suffix.lower() in IMAGE_SUFFIXES
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        elif path.is_file():
            found.append(path)  # named explicitly: tried whatever its suffix, refused if not an image
        else:
            missing.append(f"{path}: no such file or folder")
    return found, missing


def _row(prediction: Any) -> str:
    if prediction.error:
        return f"{prediction.source}\terror\t{prediction.error['message']}"
    confidence = "-" if prediction.confidence is None else f"{prediction.confidence:.1%}"
    return f"{prediction.source}\t{prediction.label}\t{confidence}\t{prediction.latency_ms:.0f} ms"


def run_predict(args: argparse.Namespace) -> int:
    @storage_errors
    def run(args: argparse.Namespace) -> int:
        images, missing = collect_images(args.paths)
        for message in missing:
            print(f"visiontune: {message}", file=sys.stderr)
        if not images:
            raise CommandError("no image files to classify: name image files or folders that contain them")
        settings = command_settings(args.settings)
        predictor = Predictor(settings, args.dataset, args.version)
        try:
            target = predictor.target()
        except PredictionError as error:
            raise CommandError(str(error)) from None
        items: list[tuple[str, bytes]] = []
        unreadable: list[Prediction] = []
        for path in images:
            try:
                size = path.stat().st_size
                if size > MAX_IMAGE_BYTES:
                    unreadable.append(Prediction(source=str(path), dataset=args.dataset, error={
                        "code": "too_large", "status": 413,
                        "message": f"{size / 1e6:.1f} MB; the limit is {MAX_IMAGE_BYTES / 1e6:.0f} MB"}))
                    continue
                items.append((str(path), path.read_bytes()))
            except OSError as error:
                unreadable.append(Prediction(source=str(path), dataset=args.dataset,
                                             error={"code": "unreadable", "status": 400, "message": str(error)}))
        predictions = predictor.predict_many(items, concurrency=args.concurrency) + unreadable
        if not args.json:
            print(f"# {target.dataset} {target.version} ({target.source}: {target.deployment})")
        for prediction in predictions:
            print(json.dumps(prediction.to_json()) if args.json else _row(prediction))
        failed = sum(1 for p in predictions if p.error)
        if failed and not args.json:
            print(f"visiontune: {failed} of {len(predictions)} image(s) could not be classified", file=sys.stderr)
        return 1 if failed or missing else 0

    return run(args)
