"""``visiontune convert SRC OUT`` and ``visiontune validate FILE.jsonl``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from shared.conversion import (
    ArtifactSink,
    ConversionResult,
    ConvertOptions,
    DatasetError,
    DatasetSource,
    FolderSink,
    convert_dataset,
    open_source,
)
from shared.conversion.cache import ImageCache, folder_cache
from shared.conversion.options import CONVERTER_FORMAT, image_settings
from shared.conversion.splits import parse_split_ratios
from shared.pipeline.intake import convert_options as pipeline_convert_options
from shared.pipeline.overrides import RunOverrides
from shared.settings import load_settings
from shared.validation import ERROR_TYPES, validate_file

DEFAULTS_NOTE = (
    "Defaults: the pipeline's settings (VISIONTUNE_SEED, VISIONTUNE_MAX_SIDE, ... from the environment, else "
    "their defaults), so the same folder converts to the same version here as in the function app."
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``convert`` and ``validate`` subcommands."""
    convert = subparsers.add_parser(
        "convert",
        help="turn an image folder or .zip (ImageFolder layout) into fine-tuning JSONL",
        description=(
            "Convert SRC (a folder or .zip laid out as <label>/<image> or "
            "{train,validation,test}/<label>/<image>) into OUT/train.jsonl, validation.jsonl, test.jsonl, "
            "rejected.json and manifest.json. " + DEFAULTS_NOTE
        ),
    )
    convert.add_argument("src", type=Path, metavar="SRC", help="image folder or .zip archive")
    convert.add_argument(
        "out", type=Path, metavar="OUT", help="output folder (created; its artifacts are replaced)"
    )
    convert.add_argument(
        "--max-side", type=int, default=None, help="longest side of the encoded images, px (max_side)"
    )
    convert.add_argument("--quality", type=int, default=None, help="JPEG quality 1-95 (jpeg_quality)")
    convert.add_argument(
        "--split", default=None, help="train/validation/test shares when SRC gives no splits (80/10/10)"
    )
    convert.add_argument(
        "--seed", type=int, default=None, help="seed of the hash split and the line order (seed)"
    )
    convert.add_argument(
        "--workers", type=int, default=None, help="worker processes (convert_workers; 0 = one per core)"
    )
    convert.add_argument(
        "--prompt", default=None, help="system prompt; {categories} becomes the '- label' lines"
    )
    convert.add_argument("--model", default=None, help="base model, for the token estimate (base_model)")
    convert.add_argument(
        "--epochs", type=int, default=None, help="epochs, for the cost estimate (n_epochs, else 2)"
    )
    convert.add_argument(
        "--price",
        type=float,
        default=None,
        help="USD per 1M training tokens, for the estimate (price_training_per_1m_tokens)",
    )
    convert.add_argument(
        "--cache",
        type=Path,
        metavar="DIR",
        default=None,
        help="reuse images converted earlier from DIR (created) and add the new ones; the output is the same",
    )
    convert.add_argument(
        "--cache-keep",
        type=int,
        default=3,
        metavar="N",
        help="with --cache: keep the entries of the N most recent versions converted with it, collect the rest (3)",
    )
    convert.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    convert.add_argument("--json", action="store_true", help="print the manifest summary as JSON")
    convert.set_defaults(handler=run_convert)

    validate = subparsers.add_parser(
        "validate",
        help="check a fine-tuning JSONL file (format + Azure vision rules)",
        description="Independent checks of a chat fine-tuning JSONL file; exits 1 if any error is found.",
    )
    validate.add_argument("files", type=Path, nargs="+", metavar="FILE.jsonl")
    validate.add_argument(
        "--min-examples",
        type=int,
        default=10,
        help="fewest examples a file may hold (10; use 1 for test files)",
    )
    validate.add_argument("--json", action="store_true", help="print the reports as JSON")
    validate.set_defaults(handler=run_validate)


def _error(message: str) -> int:
    print(f"visiontune convert: error: {message}", file=sys.stderr)
    return 2


def convert_options(args: argparse.Namespace) -> ConvertOptions:
    """The pipeline's conversion options (``shared.pipeline.intake.convert_options`` on the settings from the
    environment), with the options given on the command line as the marker overrides of the same name."""
    given = {
        "max_side": args.max_side,
        "jpeg_quality": args.quality,
        "seed": args.seed,
        "prompt": args.prompt,
        "base_model": args.model,
        "n_epochs": args.epochs,
    }
    # Not validated here: ConvertOptions.validated() names a bad option the way this command spells it.
    overrides = RunOverrides.model_construct(
        **{key: value for key, value in given.items() if value is not None}
    )
    settings = load_settings()
    local_only = {"convert_workers": args.workers, "price_training_per_1m_tokens": args.price}
    settings = settings.model_copy(
        update={key: value for key, value in local_only.items() if value is not None}
    )
    options = pipeline_convert_options(settings, overrides)
    if args.split is not None:
        options = dataclasses.replace(options, split=parse_split_ratios(args.split))
    return options.validated()


def run_convert(args: argparse.Namespace) -> int:
    try:
        options = convert_options(args)
        source = open_source(args.src)
    except (ValueError, FileNotFoundError) as exc:
        return _error(str(exc))
    sink = FolderSink(args.out)
    cache = None
    if args.cache is not None:
        if args.cache_keep < 1:
            return _error(f"--cache-keep must be >= 1, got {args.cache_keep}")

        # grace 0: one person's disk cache has no concurrent conversion to protect
        cache = folder_cache(args.cache, image_settings(options), CONVERTER_FORMAT, grace_seconds=0.0)
    try:
        if args.quiet or args.json:
            result = convert_dataset(source, sink, options, cache=cache)
        else:
            result = _convert_with_progress(source, sink, options, cache)
        if cache is not None:
            recent = [version for version, _ in cache.referenced_versions()][-args.cache_keep :]
            result.stats["cache"] = cache.collect(set(recent) | {result.version})
    except DatasetError as exc:
        return _error(f"{args.src}: {exc}")
    except OSError as exc:
        return _error(f"{exc}")
    finally:
        close = getattr(source, "close", None)
        if callable(close):
            close()
    if args.json:
        print(json.dumps(_summary(result, args.out), indent=2, ensure_ascii=False))
    elif not args.quiet:
        _print_summary(result, args.out)
    return 0


def _convert_with_progress(
    source: DatasetSource, sink: ArtifactSink, options: ConvertOptions, cache: ImageCache | None = None
) -> ConversionResult:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("converting"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("images"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task("convert", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        return convert_dataset(source, sink, options, progress=progress, cache=cache)


def _summary(result: ConversionResult, out: Path) -> dict[str, Any]:
    manifest = result.manifest
    return {
        "version": result.version,
        "out": str(out),
        "labels": manifest["labels"],
        "examples": {split: info["examples"] for split, info in manifest["splits"].items()},
        "bytes": {split: info["bytes"] for split, info in manifest["splits"].items()},
        "rejected": manifest["rejected_by_code"],
        "ignored": len(manifest["ignored"]),
        "warnings": manifest["warnings"],
        "estimate": manifest["estimate"],
        "stats": result.stats,
    }


def _print_summary(result: ConversionResult, out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    manifest = result.manifest
    console = Console()
    table = Table(title=f"visiontune convert -> {out}  (version {result.version})")
    table.add_column("split")
    table.add_column("examples", justify="right")
    table.add_column("labels present", justify="right")
    table.add_column("size", justify="right")
    table.add_column("bytes / example", justify="right")
    for split, info in manifest["splits"].items():
        present = sum(1 for n in info["per_label"].values() if n)
        per = info["bytes"] // info["examples"] if info["examples"] else 0
        table.add_row(
            split,
            f"{info['examples']:,}",
            f"{present}/{len(manifest['labels'])}",
            f"{info['bytes'] / 2**20:.1f} MiB",
            f"{per:,}",
        )
    console.print(table)
    labels = manifest["labels"]
    console.print(f"labels ({len(labels)}): " + ", ".join(labels[:20]) + (" ..." if len(labels) > 20 else ""))
    estimate = manifest["estimate"]
    console.print(
        f"estimate: {estimate['tokens_per_epoch']:,} tokens per epoch x {estimate['epochs']} epochs = "
        f"{estimate['training_tokens']:,} training tokens ~ ${estimate['cost_usd']:,.2f} "
        f"at ${estimate['price_per_1m']}/1M ({estimate['model']})"
    )
    if manifest["rejected"]:
        codes = ", ".join(f"{n} {code}" for code, n in manifest["rejected_by_code"].items())
        console.print(
            f"[yellow]rejected {manifest['rejected']} file(s): {codes} - see {out / 'rejected.json'}[/]"
        )
    if manifest["ignored"]:
        console.print(f"ignored {len(manifest['ignored'])} system/hidden file(s) (listed in manifest.json)")
    for warning in manifest["warnings"]:
        console.print(f"[yellow]warning:[/] {warning}")
    stats = result.stats
    console.print(
        f"{stats['files_processed']:,} files in {stats['seconds']:.1f} s with {stats['workers']} worker(s) "
        f"({stats['images_per_second']:,.0f} images/s): {stats['images_converted']:,} images converted, "
        f"{stats['images_reused']:,} reused from the cache"
    )


def run_validate(args: argparse.Namespace) -> int:
    failed = False
    reports = {}
    for path in args.files:
        if path.is_dir():
            print(
                f"visiontune validate: error: {path} is a folder: pass the .jsonl files in it "
                f"(e.g. {path / 'train.jsonl'})",
                file=sys.stderr,
            )
            failed = True
            continue
        if not path.is_file():
            print(f"visiontune validate: error: no such file: {path}", file=sys.stderr)
            failed = True
            continue
        report = validate_file(path, min_examples=args.min_examples)
        reports[str(path)] = report.as_dict()
        failed = failed or not report.ok
        if args.json:
            continue
        status = "OK" if report.ok else "ERRORS"
        print(
            f"{path}: {status} - {report.examples} examples, {report.image_examples} with images, {report.images} images"
        )
        for error, count in sorted(report.errors.items()):
            numbers = [str(n) for n in report.lines.get(error, []) if n]
            where = f"lines {', '.join(numbers)}" if numbers else "whole file"
            print(f"  {error}: {count}  ({ERROR_TYPES.get(error, '')}; {where})")
    if args.json:
        print(json.dumps(reports, indent=2))
    return 1 if failed else 0
