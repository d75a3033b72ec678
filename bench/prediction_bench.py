"""What a wrong preprocessing at prediction time costs in accuracy (``make bench-predict``).

Runs the demo's digits through the local stack to a promoted model, then classifies the held-out test
images of that version with the production deployment, once per preprocessing variant:

- ``right``: what ``visiontune predict`` does (the manifest's settings and system prompt);
- ``no EXIF transpose``: the images as a phone camera stores them (pixels rotated, EXIF Orientation 6)
  sent without applying the orientation (the right variant gets the same files and applies it);
- ``max side 16`` / ``enlarged to 224``: a different longest side than training's;
- ``JPEG quality 10``: a different encoder quality;
- ``no system prompt``: the image alone.

Prints one table: accuracy per variant and the loss against ``right`` in points, measured in one run.
Figures come from the Azure OpenAI emulator's classifier, not from a real fine-tuned GPT model: it reads
pixels (so orientation, size and quality matter as they would) but ignores the system prompt.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shared.pipeline.documents import Manifest

from cli.demo import DATASET, follow_run
from cli.push import push_dataset
from local.emulator.server import EmulatorConfig
from local.sample_data import export_digits
from shared.pipeline.context import Pipeline
from shared.prediction import ask_model, prepare_image, request_messages, resolve_target
from shared.settings import Settings

EXIF_ORIENTATION_TAG = 0x0112


def camera_style(data: bytes) -> bytes:
    """``data`` as a phone stores an upright photo taken sideways: the pixels rotated 90 degrees
    clockwise, EXIF Orientation 6 ("rotate 90 CW to display") so that viewers show it upright."""
    from PIL import Image

    image = Image.open(io.BytesIO(data)).convert("RGB")
    stored = image.transpose(Image.Transpose.ROTATE_90)  # counter-clockwise: what the sensor wrote
    exif = Image.Exif()
    exif[EXIF_ORIENTATION_TAG] = 6
    out = io.BytesIO()
    stored.save(out, "JPEG", quality=95, exif=exif)
    return out.getvalue()


def _encode(image: Any, quality: int) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=quality)
    return out.getvalue()


def _without_exif_transpose(data: bytes, target: Any) -> bytes:
    """Everything training does except applying the EXIF orientation."""
    from PIL import Image

    image = Image.open(io.BytesIO(data)).convert("RGB")
    image.thumbnail((target.max_side, target.max_side), Image.Resampling.BICUBIC)
    return _encode(image, target.quality)


def _enlarged(data: bytes, target: Any, side: int = 224) -> bytes:
    from PIL import Image, ImageOps

    image = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    return _encode(image.resize((side, side), Image.Resampling.BICUBIC), target.quality)


@dataclass(frozen=True)
class Variant:
    name: str
    camera_files: bool  # the inputs are the camera-style (EXIF-rotated) copies
    jpeg: Callable[[bytes, Any], bytes]  # (source bytes, target) -> the JPEG that is sent
    with_prompt: bool = True


def _right(data: bytes, target: Any) -> bytes:
    return prepare_image(data, target)[0]


def _with(**changes: Any) -> Callable[[bytes, Any], bytes]:
    def encode(data: bytes, target: Any) -> bytes:
        return _right(data, replace(target, **changes))

    return encode


VARIANTS = (
    Variant("right", False, _right),
    Variant("right (camera files, EXIF applied)", True, _right),
    Variant("no EXIF transpose (camera files)", True, _without_exif_transpose),
    Variant("max side 16", False, _with(max_side=16)),
    Variant("enlarged to 224", False, _enlarged),
    Variant("JPEG quality 10", False, _with(quality=10)),
    Variant("no system prompt", False, _right, with_prompt=False),
)


def measure(
    client: Any, target: Any, images: Sequence[tuple[str, bytes]], variants: Sequence[Variant] = VARIANTS,
    *, concurrency: int = 4,
) -> dict[str, dict[str, float]]:
    """``{variant: {"accuracy", "unknown", "n"}}`` for ``images`` = ``(truth, source bytes)`` pairs."""
    camera = [(truth, camera_style(data)) for truth, data in images]
    results: dict[str, dict[str, float]] = {}
    for variant in variants:
        inputs = camera if variant.camera_files else images

        def one(item: tuple[str, bytes], variant: Variant = variant) -> tuple[bool, bool]:
            truth, data = item
            messages = request_messages(target.prompt if variant.with_prompt else None, variant.jpeg(data, target))
            label, _ = ask_model(client, target, messages)
            return label == truth, label == "unknown"

        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            outcomes = list(pool.map(one, inputs))
        results[variant.name] = {
            "accuracy": sum(ok for ok, _ in outcomes) / len(outcomes),
            "unknown": sum(unknown for _, unknown in outcomes) / len(outcomes),
            "n": float(len(outcomes)),
        }
    return results


def held_out_images(source_dir: Path, manifest: Manifest | None) -> list[tuple[str, bytes]]:
    """The test split's source images as ``(label, bytes)``, read from the folder that was pushed."""
    images = []
    test_split = manifest.splits.get("test") if manifest is not None else None
    for path in test_split.files if test_split is not None else []:
        label = path.split("/")[-2]
        images.append((label, (source_dir / path).read_bytes()))
    return images


def print_table(results: dict[str, dict[str, float]]) -> None:
    right = results["right"]["accuracy"]
    print(f"{'preprocessing at prediction time':<38} {'accuracy':>9} {'vs right':>9} {'unknown':>8}")
    for name, figures in results.items():
        delta = (figures["accuracy"] - right) * 100
        print(f"{name:<38} {figures['accuracy']:>8.1%} {delta:>+8.1f}p {figures['unknown']:>7.1%}")
    print(f"(n = {int(results['right']['n'])} held-out test images per row, temperature 0)")


def main(argv: Sequence[str] | None = None) -> int:
    from local.stack import LocalStack

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64, help="digit image side in pixels (the demo's: 64)")
    args = parser.parse_args(argv)

    from rich.console import Console

    console = Console(width=130)
    repo = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory(prefix="visiontune-bench-") as tmp:
        root = Path(tmp)
        data = export_digits(root / "digits", size=args.size)
        extra = {"VISIONTUNE_RETRY_BASE_SECONDS": "0", "VISIONTUNE_EVAL_TICK_SECONDS": "60", "VISIONTUNE_EVAL_CONCURRENCY": "8"}
        config = EmulatorConfig(step_seconds=0.2, file_processing_seconds=0.2, deployment_seconds=0.2)
        with LocalStack(root / "stack", app_root=repo, emulator_config=config, start_host=False,
                        local_settings_path=None, extra_settings=extra) as stack:  # fmt: skip
            settings = Settings.model_validate(stack.settings)
            started = time.monotonic()
            push_dataset(settings, data, DATASET)
            run = follow_run(stack, settings, console, label="bench")
            if run.state.value != "promoted":
                console.print(f"the run ended {run.state.value}, not promoted: nothing to measure")
                return 1
            pipeline = Pipeline(settings)
            target = resolve_target(pipeline, DATASET)
            images = held_out_images(data, pipeline.manifest(DATASET, target.version))
            console.print(f"promoted in {time.monotonic() - started:.0f} s; measuring {len(images)} test images")
            results = measure(pipeline.openai, target, images)
    print_table(results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
