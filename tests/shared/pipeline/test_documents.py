"""The pipeline's documents as models: a manifest the converter writes gives back its exact bytes, and
documents stored in today's shape (production.json, scheduled evaluations, intake receipts) still parse;
a malformed one is refused with the blob's name."""

from __future__ import annotations

import json

import pytest

from shared.conversion import ConvertOptions, FolderSink, FolderSource, convert_dataset
from shared.pipeline.documents import (
    IntakeReceipt,
    Manifest,
    ProductionRecord,
    ScheduledEvaluation,
    manifest_bytes,
    manifest_from,
)
from shared.pipeline.stored import DocumentError, parse_document
from tests.shared.conversion import image_cases as cases


def _convert(tmp_path, files, **options):
    root = cases.write(tmp_path / "src", files)
    out = tmp_path / "out"
    result = convert_dataset(FolderSource(root), FolderSink(out), ConvertOptions(workers=1, **options))
    return result, (out / "manifest.json").read_bytes()


@pytest.mark.parametrize(
    "files, options",
    [
        (cases.good_set(("cat", "dog"), per_label=8), {}),
        (  # given splits, a non-ASCII label, other options: every optional shape of the manifest
            {
                **cases.good_set(("katze", "hund"), per_label=4, prefix="train/"),
                **cases.good_set(("katze", "hund"), per_label=2, prefix="validation/", start=10),
                **cases.good_set(("katze", "hund"), per_label=2, prefix="test/", start=20),
                "train/ä/0.jpg": cases.photo_jpeg(seed=900),
                "train/ä/1.jpg": cases.photo_jpeg(seed=901),
                "validation/ä/0.jpg": cases.photo_jpeg(seed=902),
                "test/ä/0.jpg": cases.photo_jpeg(seed=903),
                ".DS_Store": b"\0\0\0\1Bud1",
            },
            {"max_side": 256, "quality": 70, "prompt": "Which animal? {categories}", "epochs": 2},
        ),
    ],
)
def test_a_converted_manifest_gives_back_its_exact_bytes(tmp_path, files, options):
    result, written = _convert(tmp_path, files, **options)
    manifest = parse_document(Manifest, written, "manifest.json")
    assert manifest_bytes(manifest) == written  # key set, key order and every value's JSON as written
    assert manifest.model_dump(mode="json") == result.manifest
    assert list(manifest.model_dump()) == list(json.loads(written))
    assert manifest_from(result.manifest, "x") == manifest
    assert manifest.version == result.version


def test_a_manifest_with_a_missing_or_unknown_key_is_refused_with_its_name(tmp_path):
    _, written = _convert(tmp_path, cases.good_set(("cat", "dog"), per_label=8))
    data = json.loads(written)
    missing = {k: v for k, v in data.items() if k != "estimate"}
    with pytest.raises(DocumentError, match=r"training/digits/v1/manifest.json is not a valid Manifest: estimate"):
        parse_document(Manifest, json.dumps(missing), "training/digits/v1/manifest.json")
    with pytest.raises(DocumentError, match="extra"):
        manifest_from({**data, "surprise": 1}, "training/digits/v1/manifest.json")
    with pytest.raises(DocumentError, match="not a valid Manifest"):
        parse_document(Manifest, b"{not json", "training/digits/v1/manifest.json")


# production.json exactly as record_promotion / retire_early / a scheduled evaluation wrote it before the
# document had a model (json.dumps(indent=2, default=str), timestamps from datetime.isoformat()).
TODAYS_PRODUCTION = {
    "dataset": "digits",
    "version": "b" * 16,
    "model": "gpt-4o-2024-08-06.ft-2",
    "deployment": "vt-digits-bbbb",
    "sku": "Standard",
    "promoted_at": "2026-11-29T10:00:00.123456+00:00",
    "accuracy": 0.92,
    "baseline_role": "incumbent",
    "baseline_accuracy": 0.9,
    "reason": "candidate 92.0% vs incumbent 90.0%",
    "previous_version": "a" * 16,
    "retired": [
        {
            "version": "a" * 16,
            "model": "gpt-4o-2024-08-06.ft-1",
            "deployment": "vt-digits-aaaa",
            "retired_at": "2026-11-29T10:00:00.123456+00:00",
            "delete_after": "2026-11-30T10:00:00.123456+00:00",
            "deleted_at": "2026-11-29T11:00:00+00:00",
            "retired_early": "a deployment slot was needed",
        },
        {
            "version": None,
            "model": None,
            "deployment": None,
            "retired_at": "2026-11-28T10:00:00+00:00",
            "delete_after": "2026-11-29T10:00:00+00:00",
            "deleted_at": None,
        },
    ],
    "history": [
        {
            "at": "2026-11-29T10:00:00.123456Z",
            "version": "b" * 16,
            "model": "gpt-4o-2024-08-06.ft-2",
            "accuracy": 0.92,
            "source": "run",
            "regression": False,
            "test_set_version": "b" * 16,
        },
        {  # a point written before test_set_version existed
            "at": "2026-11-29T12:00:00Z",
            "version": "b" * 16,
            "model": "gpt-4o-2024-08-06.ft-2",
            "accuracy": 0.5,
            "source": "scheduled",
            "regression": True,
        },
    ],
}


def test_production_json_of_todays_shape_parses_and_keeps_its_values():
    record = parse_document(ProductionRecord, json.dumps(TODAYS_PRODUCTION, indent=2), "reports/digits/production.json")
    assert record.version == "b" * 16 and record.retired[0].retired_early == "a deployment slot was needed"
    assert record.retired[1].deleted_at is None and record.history[1].test_set_version is None
    again = json.loads(record.model_dump_json())
    assert list(again) == list(TODAYS_PRODUCTION)
    assert again["history"][1]["regression"] is True
    assert parse_document(ProductionRecord, record.model_dump_json(), "again") == record


def test_a_malformed_production_json_names_the_blob():
    broken = {**TODAYS_PRODUCTION, "accuracy": "high"}
    del broken["deployment"]
    with pytest.raises(DocumentError) as caught:
        parse_document(ProductionRecord, json.dumps(broken), "reports/digits/production.json")
    message = str(caught.value)
    assert message.startswith("reports/digits/production.json is not a valid ProductionRecord")
    assert "deployment: Field required" in message and "accuracy" in message


def _role(role, **extra):
    return {
        "role": role, "model": "m", "deployment": "d", "method": "realtime", "total": 40, "scored": 12,
        "done": False, "retried_errors": False, "batch_input_file": None, "batch_id": None, "batch_status": None,
        "note": None, "remote_files": [], "batch_parts": [], "incumbent_version": None, **extra,
    }  # fmt: skip


def test_a_scheduled_evaluation_of_todays_shape_parses():
    # as evaluate_production wrote it (json.dumps(indent=1, default=str)), then after a failed step
    stored = {
        "id": "20261129T100000Z",
        "dataset": "digits",
        "created_at": "2026-11-29T10:00:00.5+00:00",
        "test_set_version": "b" * 16,
        "production_version": "b" * 16,
        "roles": {"incumbent": _role("incumbent", incumbent_version="b" * 16), "base": _role("base")},
        "done": False,
        "report": None,
        "lease": {"owner": "host-12-abcdef", "until": "2026-11-29T10:12:00+00:00"},
        "last_error": "boom",
        "errors": 1,
    }
    doc = parse_document(ScheduledEvaluation, json.dumps(stored, indent=1), "runs/digits/_scheduled/x.json")
    assert doc.roles["base"].scored == 12 and doc.errors == 1 and doc.failed is None
    assert doc.lease is not None and doc.lease.owner == "host-12-abcdef"
    assert doc.document_name == "digits/_scheduled/20261129T100000Z.json"
    fresh = {k: v for k, v in stored.items() if k not in ("last_error", "errors")} | {"lease": None}
    assert parse_document(ScheduledEvaluation, json.dumps(fresh), "x").errors == 0


def test_an_intake_receipt_of_todays_shape_parses():
    receipt = parse_document(
        IntakeReceipt, json.dumps({"version": "c" * 16, "examples": 48, "at": "2026-11-29T10:00:00.1+00:00"}), "r"
    )
    assert receipt.version == "c" * 16 and receipt.examples == 48
    with pytest.raises(DocumentError, match="runs/digits/_intake/f.json is not a valid IntakeReceipt: version"):
        parse_document(IntakeReceipt, b'{"examples": 1, "at": "2026-11-29T10:00:00Z"}', "runs/digits/_intake/f.json")
