"""Predictions end to end on the local stack: a digits run is promoted through the functions host, then
``visiontune predict`` and ``POST /api/classify/{dataset}`` (through the host's HTTP server) classify the
held-out test images with the production deployment, preprocessed as training preprocessed them."""

from __future__ import annotations

import io
import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from cli.main import main
from tests.fixtures.local_stack import PIPELINE_SETTINGS, host_less_stack
from tests.fixtures.pipeline import FAST_CLOCK


@pytest.fixture(scope="module")
def promoted(tmp_path_factory: pytest.TempPathFactory):
    """(stack, settings file, settings, run, digits folder, host URL) with digits promoted."""
    from local.host.http_server import start_http_server
    from local.sample_data import export_digits
    from shared.pipeline.store import RunStore
    from shared.settings import Settings

    tmp = tmp_path_factory.mktemp("predict")
    digits = _digits_with_mislabelled_test_images(export_digits(tmp / "all", size=32, limit_per_label=48), tmp / "digits")
    settings_file = tmp / "local.settings.json"
    with host_less_stack(
        tmp / "stack", emulator=FAST_CLOCK, settings=PIPELINE_SETTINGS, settings_file=settings_file
    ) as stack:
        settings = Settings.model_validate(stack.settings)
        assert main(["push", str(digits), "--dataset", "digits", "--settings", str(settings_file)]) == 0
        stack.host.run_until_idle(timeout=120)
        [run] = RunStore.from_settings(settings).list("digits")
        deadline = time.monotonic() + 150
        while not (run.terminal and run.report_written_for == run.state.value):
            assert time.monotonic() < deadline, run.transitions
            assert stack.host.tick("advance_runs").succeeded
            time.sleep(0.1)
            run = RunStore.from_settings(settings).get("digits", run.version)
        assert run.state.value == "promoted", [t.detail for t in run.transitions]
        server = start_http_server(stack.host, 0)
        try:
            yield stack, settings_file, settings, run, digits, f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()


MISLABELLED = "mislabelled-"


def _digits_with_mislabelled_test_images(exported: Path, out: Path) -> Path:
    """Given splits: per label 24 train, 4 validation, 8 test images; plus 12 more images of a 0 filed
    as test images of 6 (named ``mislabelled-*``): the review queue must find some of them."""
    import shutil

    for label_dir in sorted(exported.iterdir()):
        files = sorted(label_dir.iterdir())
        for split, chunk in (("train", files[:24]), ("validation", files[24:28]), ("test", files[28:36])):
            (out / split / label_dir.name).mkdir(parents=True, exist_ok=True)
            for f in chunk:
                shutil.copy(f, out / split / label_dir.name / f.name)
    (out / "test" / "6").mkdir(parents=True, exist_ok=True)
    for f in sorted((exported / "0").iterdir())[36:48]:
        shutil.copy(f, out / "test" / "6" / f"{MISLABELLED}{f.name}")
    return out


def _test_files(settings, run, digits: Path) -> list[Path]:
    from shared.pipeline.context import Pipeline

    manifest = Pipeline(settings).manifest("digits", run.version)
    return [digits / path for path in manifest.splits["test"].files]


def _post(url: str, body: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/octet-stream"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_predict_classifies_held_out_images_with_the_production_model(promoted, capsys) -> None:
    stack, settings_file, settings, run, digits, _ = promoted
    files = [f for f in _test_files(settings, run, digits) if not f.name.startswith(MISLABELLED)]
    assert len(files) >= 10
    assert main(["predict", *map(str, files), "--dataset", "digits", "--settings", str(settings_file), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["source"] for r in rows] == [str(f) for f in files]
    correct = sum(r["label"] == Path(r["source"]).parent.name for r in rows)
    assert correct / len(rows) >= 0.8, rows
    production = json.loads(stack.host.tick("status").response.get_body())["datasets"][0]["production"]
    for row in rows:
        assert row["version"] == run.version and row["deployment"] == production["deployment"]
        assert row["latency_ms"] > 0 and row["error"] is None
        assert 0 < row["confidence"] <= 1  # from the deployment's logprobs
        assert row["image"]["source_size"] == [32, 32] and row["image"]["sent_size"] == [32, 32]


def test_predict_on_a_folder_prints_a_table_and_reports_bad_files_without_losing_the_rest(
    promoted, capsys, tmp_path: Path
) -> None:
    _, settings_file, settings, run, digits, _ = promoted
    folder = tmp_path / "mixed"
    folder.mkdir()
    for source in [f for f in _test_files(settings, run, digits) if not f.name.startswith(MISLABELLED)][:3]:
        (folder / f"{source.parent.name}-{source.name}").write_bytes(source.read_bytes())
    (folder / "notes.png").write_text("not an image at all")
    code = main(["predict", str(folder), "--dataset", "digits", "--settings", str(settings_file)])
    out, err = capsys.readouterr()
    assert code == 1 and "1 of 4 image(s) could not be classified" in err
    lines = out.splitlines()
    assert lines[0].startswith(f"# digits {run.version} (production: ")
    assert sum(1 for line in lines[1:] if line.endswith(" ms")) == 3
    assert any("notes.png\terror\tnot an image file" in line for line in lines)


def test_predict_by_version_and_clear_errors(promoted, capsys) -> None:
    _, settings_file, settings, run, digits, _ = promoted
    image = str([f for f in _test_files(settings, run, digits) if not f.name.startswith(MISLABELLED)][0])
    assert main(["predict", image, "--dataset", "digits", "--version", run.version[:6], "--settings", str(settings_file)]) == 0
    assert f"# digits {run.version}" in capsys.readouterr().out
    assert main(["predict", image, "--dataset", "cats", "--settings", str(settings_file)]) == 2
    assert "dataset 'cats' has no production model yet" in capsys.readouterr().err
    assert main(["predict", image, "--dataset", "digits", "--version", "ffff", "--settings", str(settings_file)]) == 2
    assert "has no version 'ffff'" in capsys.readouterr().err


def test_classify_endpoint_through_the_local_host(promoted) -> None:
    from PIL import Image

    _, _, settings, run, digits, url = promoted
    source = _test_files(settings, run, digits)[0]
    status, body = _post(f"{url}/api/classify/digits", source.read_bytes())
    assert status == 200, body
    assert body["label"] in [str(d) for d in range(10)] and body["version"] == run.version
    assert body["latency_ms"] > 0

    # Same image as a camera stores it (rotated pixels + EXIF orientation): the same answer.
    from bench.prediction_bench import camera_style

    status, rotated = _post(f"{url}/api/classify/digits", camera_style(source.read_bytes()))
    assert status == 200 and rotated["label"] == body["label"]
    assert rotated["image"]["source_size"] == [32, 32]

    png = io.BytesIO()
    Image.open(source).convert("RGBA").save(png, "PNG")
    status, body = _post(f"{url}/api/classify/digits?version={run.version}", png.getvalue())
    assert status == 200 and body["version"] == run.version

    status, body = _post(f"{url}/api/classify/digits", b"hello, not an image")
    assert status == 415 and body["error"]["code"] == "not_an_image"
    status, body = _post(f"{url}/api/classify/digits", b"")
    assert status == 400 and body["error"]["code"] == "empty"
    status, body = _post(f"{url}/api/classify/digits", b"\0" * (20 * 1024 * 1024 + 1))
    assert status == 413 and body["error"]["code"] == "too_large"
    status, body = _post(f"{url}/api/classify/nothing-here", source.read_bytes())
    assert status == 404 and body["error"]["code"] == "no_production_model"
    status, body = _post(f"{url}/api/classify/digits?version=0000", source.read_bytes())
    assert status == 404 and body["error"]["code"] == "no_such_version"


def test_wrong_preprocessing_costs_accuracy(promoted) -> None:
    """The measurement of the bench, on this small promoted model: rotating the camera files' pixels
    (no EXIF transpose) must cost accuracy; the right preprocessing of the same files must not."""
    from bench.prediction_bench import VARIANTS, held_out_images, measure
    from shared.pipeline.context import Pipeline
    from shared.prediction import resolve_target

    _, _, settings, run, digits, _ = promoted
    pipeline = Pipeline(settings)
    target = resolve_target(pipeline, "digits")
    manifest = pipeline.manifest("digits", run.version)
    test = manifest.splits["test"]
    test.files = [f for f in test.files if MISLABELLED not in f]
    images = held_out_images(digits, manifest)
    wanted = {"right", "right (camera files, EXIF applied)", "no EXIF transpose (camera files)"}
    results = measure(pipeline.openai, target, images, [v for v in VARIANTS if v.name in wanted])
    assert results["right"]["accuracy"] >= 0.8
    assert abs(results["right (camera files, EXIF applied)"]["accuracy"] - results["right"]["accuracy"]) <= 0.1
    assert results["no EXIF transpose (camera files)"]["accuracy"] <= results["right"]["accuracy"] - 0.2


def test_the_run_published_its_events_and_visiontune_events_lists_them(promoted, capsys) -> None:
    _, settings_file, _, run, _, _ = promoted
    assert main(["events", "digits", "--settings", str(settings_file), "--json"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    types = [e["type"] for e in events if e["subject"] == f"digits/{run.version}"]
    assert types == ["visiontune.run.converted", "visiontune.run.training_started", "visiontune.run.promoted"]
    assert events[-1]["data"]["scores"]["candidate"] == run.scores["candidate"]
    assert main(["events", "--settings", str(settings_file)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and "run.promoted" in lines[-1] and f"digits/{run.version}" in lines[-1]


def test_the_report_has_a_review_queue_of_suspect_labels(promoted, tmp_path: Path, capsys) -> None:
    _, settings_file, _, run, _, _ = promoted
    assert main(["report", "digits", "--settings", str(settings_file), "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "digits" / run.version / "report.json").read_text())
    suspects = report["suspects"]
    assert suspects, "no suspect labels, though 12 images of a 0 are labelled 6"
    for suspect in suspects:
        assert suspect["answer"] != suspect["label"] and suspect["other_role"] == "base"
        assert suspect["source_path"].startswith("test/") and suspect["thumbnail"].startswith("data:image/jpeg;base64,")
    assert any(MISLABELLED in s["source_path"] and s["answer"] == "0" for s in suspects)
    confidences = [s["confidence"] for s in suspects]
    assert all(c is not None for c in confidences) and confidences == sorted(confidences, reverse=True)
    html = (tmp_path / "digits" / run.version / "report.html").read_text()
    assert 'id="suspects"' in html and suspects[0]["thumbnail"] in html
    assert "## Suspect labels" in (tmp_path / "digits" / run.version / "report.md").read_text()
    capsys.readouterr()
    assert main(["report", "digits", "--suspects", "--settings", str(settings_file)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"{len(suspects)} suspect label(s)" in lines[0] and len(lines) == len(suspects) + 1
    assert lines[1].startswith(suspects[0]["source_path"] + "\tlabelled ")
