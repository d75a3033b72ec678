"""``convert_dataset`` end to end on real folders and zips: junk, broken files, duplicates, splits,
unicode, determinism, and the independent validator on the output."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import subprocess
import sys
import unicodedata
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from shared.conversion import (
    ConvertOptions,
    DatasetError,
    FolderSink,
    FolderSource,
    ZipSource,
    convert_dataset,
)
from shared.conversion.examples import DEFAULT_PROMPT_TEMPLATE
from shared.validation import validate_file
from tests.fixtures.conversion import convert_to_folder
from tests.shared.conversion import image_cases as cases

ARTIFACTS = ("train.jsonl", "validation.jsonl", "test.jsonl", "rejected.json", "manifest.json")


def read_jsonl(path: Path) -> list[dict]:
    raw = path.read_bytes()
    assert not raw.startswith(b"\xef\xbb\xbf")
    return [json.loads(line) for line in raw.decode("utf-8").splitlines()]


def messy_dataset(root: Path) -> Path:
    files = cases.good_set(("cat", "dog"), per_label=12)
    files.update(
        {
            "cat/phone.jpg": cases.marked_photo(1600, 1200, 6),
            "cat/cmyk.jpg": cases.cmyk_jpeg(),
            "cat/grey16.png": cases.grey16_png(),
            "dog/palette.png": cases.palette_transparent_png(),
            "dog/la.png": cases.la_png(),
            "dog/rgba.png": cases.rgba_png(),
            "dog/anim.gif": cases.animated_gif(),
            "dog/truncated.jpg": cases.truncated_jpeg(),
            "dog/empty.jpg": b"",
            "dog/notes.jpg": b"my notes about dogs\n",
            "dog/bomb.png": cases.png_bomb(),
            "cat/.DS_Store": b"\0\0\0\1Bud1",
            "Thumbs.db": b"\xd0\xcf\x11\xe0",
            "cat/.hidden.jpg": cases.photo_jpeg(seed=500),
            ".git/config": b"[core]\n",
            "__MACOSX/cat/._000.jpg": b"\0\5\26\7",
            "cat/copy-of-000.jpg": files["cat/000.jpg"],  # exact duplicate, same label
            "cat/both.jpg": cases.photo_jpeg(seed=777),  # same image under two labels
            "dog/both.jpg": cases.photo_jpeg(seed=777),
            "README.txt": b"a dataset\n",  # outside the layout
        }
    )
    return cases.write(root, files)


@pytest.fixture(scope="module")
def messy(tmp_path_factory):
    root = messy_dataset(tmp_path_factory.mktemp("messy") / "src")
    out = tmp_path_factory.mktemp("messy-out") / "out"
    return root, out, convert_to_folder(FolderSource(root), out)


def test_every_artifact_is_written_and_output_passes_the_independent_validator(messy):
    _root, out, result = messy
    assert sorted(p.name for p in out.iterdir()) == sorted(ARTIFACTS)
    report = validate_file(out / "train.jsonl")
    assert report.ok, report.as_dict()
    for split in ("validation", "test"):
        assert validate_file(out / f"{split}.jsonl", min_examples=0).ok
    assert json.loads((out / "manifest.json").read_text("utf-8")) == result.manifest
    assert json.loads((out / "rejected.json").read_text("utf-8")) == result.rejected
    assert not list(out.parent.glob(".out.partial-*"))  # staging folder cleaned up


def test_broken_files_are_rejected_with_specific_codes(messy):
    _root, _out, result = messy
    codes = {item["path"]: item["code"] for item in result.rejected}
    assert codes == {
        "dog/truncated.jpg": "truncated",
        "dog/empty.jpg": "empty",
        "dog/notes.jpg": "not_an_image",
        "dog/bomb.png": "decompression_bomb",
        "cat/copy-of-000.jpg": "duplicate",
        "cat/both.jpg": "ambiguous_label",
        "dog/both.jpg": "ambiguous_label",
        "README.txt": "outside_layout",
    }
    reasons = {item["path"]: item["reason"] for item in result.rejected}
    assert "cat/000.jpg" in reasons["cat/copy-of-000.jpg"]
    assert "'cat' (cat/both.jpg)" in reasons["dog/both.jpg"] and "'dog' (dog/both.jpg)" in reasons["dog/both.jpg"]
    assert "bytes not processed" in reasons["dog/truncated.jpg"]
    assert all(set(item) == {"path", "code", "reason"} for item in result.rejected)


def test_junk_is_ignored_not_rejected(messy):
    _root, _out, result = messy
    assert result.manifest["ignored"] == sorted(
        [".git/config", "Thumbs.db", "__MACOSX/cat/._000.jpg", "cat/.DS_Store", "cat/.hidden.jpg"]
    )


def test_every_good_image_is_used_once_upright_and_small(messy):
    _root, out, result = messy
    manifest = result.manifest
    used = [f for split in manifest["splits"].values() for f in split["files"]]
    assert len(used) == len(set(used)) == 12 * 2 + 7
    assert "cat/000.jpg" in used and "cat/phone.jpg" in used and "dog/anim.gif" in used
    by_path = {}
    for split in ("train", "validation", "test"):
        lines = read_jsonl(out / f"{split}.jsonl")
        files = manifest["splits"][split]["files"]
        assert len(lines) == len(files) == manifest["splits"][split]["examples"]
        for path, example in zip(files, lines, strict=True):
            by_path[path] = example
    for path, example in by_path.items():
        system, user, assistant = example["messages"]
        assert assistant == {"role": "assistant", "content": path.split("/")[0]}
        part = user["content"][0]
        assert part["image_url"]["detail"] == "low"
        url = part["image_url"]["url"]
        assert url.startswith("data:image/jpeg;base64,")
        image = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
        assert image.format == "JPEG" and image.mode == "RGB" and max(image.size) <= 512
    phone_url = by_path["cat/phone.jpg"]["messages"][1]["content"][0]["image_url"]["url"]
    phone = Image.open(io.BytesIO(base64.b64decode(phone_url.split(",", 1)[1])))
    assert phone.size == (384, 512)  # stored 1600x1200 with orientation 6: upright portrait


def test_manifest_has_the_contract_fields(messy):
    root, out, result = messy
    manifest = result.manifest
    assert manifest["version"] == result.version and len(result.version) == 16
    assert manifest["labels"] == ["cat", "dog"]
    assert manifest["prompt"] == DEFAULT_PROMPT_TEMPLATE.replace("{categories}", "- cat\n- dog")
    assert manifest["prompt"].endswith("Categories:\n- cat\n- dog")
    assert manifest["image"]["max_side"] == 512 and manifest["image"]["quality"] == 85
    for split in ("train", "validation", "test"):
        info = manifest["splits"][split]
        assert set(info) >= {"examples", "per_label", "files", "bytes"}
        assert info["bytes"] == (out / f"{split}.jsonl").stat().st_size
        assert sum(info["per_label"].values()) == info["examples"]
    assert manifest["rejected"] == len(result.rejected) == 8
    assert manifest["source"]["files"] == len([p for p in root.rglob("*") if p.is_file()])
    assert len(manifest["source"]["digest"]) == 64
    estimate = manifest["estimate"]
    assert set(estimate) >= {
        "text_tokens", "image_tokens", "tokens_per_epoch", "epochs", "training_tokens", "cost_usd", "price_per_1m", "model"
    }
    assert estimate["image_tokens"] == 85 * manifest["splits"]["train"]["examples"]
    assert estimate["training_tokens"] == estimate["tokens_per_epoch"] * 2
    assert estimate["cost_usd"] == pytest.approx(estimate["training_tokens"] * 25 / 1e6, abs=1e-4)
    assert isinstance(manifest["warnings"], list)


def test_text_tokens_match_tiktoken_on_the_written_messages(messy):
    import tiktoken

    from shared.tokens import get_encoding

    _root, out, result = messy
    encoding: tiktoken.Encoding = get_encoding("o200k_base")
    total = 0
    for example in read_jsonl(out / "train.jsonl"):
        total += 3  # reply primer
        for message in example["messages"]:
            total += 3 + len(encoding.encode(message["role"]))
            if isinstance(message["content"], str):
                total += len(encoding.encode(message["content"]))
    assert result.manifest["estimate"]["text_tokens"] == total


def test_two_runs_are_byte_identical_whatever_the_worker_count(tmp_path, messy):
    root, out, first = messy
    second = convert_to_folder(FolderSource(root), tmp_path / "again", workers=2)
    assert second.version == first.version
    for name in ARTIFACTS:
        assert (tmp_path / "again" / name).read_bytes() == (out / name).read_bytes(), name
    assert second.stats["workers"] == 2


def test_options_change_the_version(tmp_path, messy):
    root, _out, first = messy
    other = convert_to_folder(FolderSource(root), tmp_path / "q", quality=70)
    assert other.version != first.version


def test_zip_input_with_a_single_top_folder_gives_the_same_dataset(tmp_path, messy):
    root, out, first = messy
    archive = tmp_path / "set.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            zf.write(path, "my-dataset/" + path.relative_to(root).as_posix())
        zf.writestr("__MACOSX/my-dataset/._cat", b"\0")
    with ZipSource(archive) as source:
        result = convert_to_folder(source, tmp_path / "zip-out")
    assert result.version == first.version
    assert (tmp_path / "zip-out" / "train.jsonl").read_bytes() == (out / "train.jsonl").read_bytes()
    assert "__MACOSX/my-dataset/._cat" in result.manifest["ignored"]


def test_zip_from_any_seekable_file_object(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for path, data in cases.good_set(per_label=8).items():
            zf.writestr(path.replace("/", "\\"), data)  # a Windows tool's backslashes
    buffer.seek(0)
    result = convert_to_folder(ZipSource(buffer), tmp_path / "out")
    assert result.manifest["labels"] == ["cat", "dog"]
    assert result.manifest["examples"] == 16


def test_given_splits_are_kept(tmp_path):
    files = {}
    files.update(cases.good_set(per_label=6, prefix="train/"))
    files.update(cases.good_set(per_label=2, prefix="validation/", start=100))
    files.update(cases.good_set(per_label=3, prefix="test/", start=200))
    files["stray.jpg"] = cases.photo_jpeg(seed=5000)
    files["extra/cat/1.jpg"] = cases.photo_jpeg(seed=5001)
    result = convert_to_folder(FolderSource(cases.write(tmp_path / "src", files)), tmp_path / "out")
    splits = result.manifest["splits"]
    assert result.manifest["split"]["given"] is True
    assert {s: splits[s]["examples"] for s in splits} == {"train": 12, "validation": 4, "test": 6}
    assert all(f.startswith(f"{s}/") for s in splits for f in splits[s]["files"])
    assert splits["train"]["per_label"] == {"cat": 6, "dog": 6}
    assert {r["path"]: r["code"] for r in result.rejected} == {"stray.jpg": "outside_layout", "extra/cat/1.jpg": "outside_layout"}


def test_duplicate_across_given_splits_keeps_the_training_copy(tmp_path):
    files = cases.good_set(per_label=6, prefix="train/")
    files["test/cat/leak.jpg"] = files["train/cat/000.jpg"]
    result = convert_to_folder(FolderSource(cases.write(tmp_path / "src", files)), tmp_path / "out")
    assert result.rejected == [
        {
            "path": "test/cat/leak.jpg",
            "code": "duplicate",
            "reason": "exact duplicate (identical bytes) of train/cat/000.jpg, which is used instead",
        }
    ]
    assert "train/cat/000.jpg" in result.manifest["splits"]["train"]["files"]


def test_hash_split_is_stable_when_images_are_added(tmp_path):
    small = cases.good_set(per_label=30)
    added = {f"{path[:-4]}-new.jpg": data for path, data in cases.good_set(per_label=40, start=500).items()}
    big = {**small, **added}
    first = convert_to_folder(FolderSource(cases.write(tmp_path / "v1", small)), tmp_path / "o1").manifest
    second = convert_to_folder(FolderSource(cases.write(tmp_path / "v2", big)), tmp_path / "o2").manifest
    for split in ("train", "validation", "test"):
        assert set(first["splits"][split]["files"]) <= set(second["splits"][split]["files"])
    counts = {s: second["splits"][s]["examples"] for s in ("train", "validation", "test")}
    assert counts["train"] > counts["validation"] and counts["train"] > counts["test"]
    assert sum(counts.values()) == 140


def test_unicode_labels_and_file_names(tmp_path):
    nfd_cafe = unicodedata.normalize("NFD", "café")
    files = {}
    for n in range(8):
        files[f"{nfd_cafe}/ü-{n}.jpg"] = cases.photo_jpeg(seed=n)
        files[f"猫/写真 {n} 😀.jpg"] = cases.photo_jpeg(seed=100 + n)
    result = convert_to_folder(FolderSource(cases.write(tmp_path / "src", files)), tmp_path / "out")
    assert result.manifest["labels"] == ["café", "猫"]  # NFC labels
    raw = (tmp_path / "out" / "train.jsonl").read_bytes()
    answers = {json.loads(line)["messages"][2]["content"] for line in raw.splitlines()}
    assert answers == {"café", "猫"}
    assert "猫".encode() in raw  # UTF-8, not \u escapes
    files_listed = [f for s in result.manifest["splits"].values() for f in s["files"]]
    assert "猫/写真 0 😀.jpg" in files_listed


def test_custom_prompt_gets_the_categories(tmp_path):
    root = cases.write(tmp_path / "src", cases.good_set(per_label=8))
    prompt = "Which animal?\nCategories:\n{categories}\nAnswer with one."
    result = convert_to_folder(FolderSource(root), tmp_path / "out", prompt=prompt)
    assert result.manifest["prompt"] == "Which animal?\nCategories:\n- cat\n- dog\nAnswer with one."


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (cases.good_set(("cat",), per_label=12), "at least 2 labels"),
        (cases.good_set(per_label=3), "at least 10 training examples"),
        ({}, "found 0 label folder(s)"),
    ],
    ids=["one-label", "too-few", "empty"],
)
def test_dataset_level_errors_are_clear_and_leave_no_output(tmp_path, files, message):
    root = cases.write(tmp_path / "src", files)
    root.mkdir(exist_ok=True)
    with pytest.raises(DatasetError, match=message.replace("(", r"\(").replace(")", r"\)")):
        convert_to_folder(FolderSource(root), tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out.partial-*"))


def test_too_few_usable_examples_after_rejections(tmp_path):
    files = cases.good_set(per_label=4)
    files.update({f"cat/bad{n}.jpg": b"" for n in range(6)})
    with pytest.raises(DatasetError, match="only 8 usable training example"):
        convert_to_folder(FolderSource(cases.write(tmp_path / "src", files)), tmp_path / "out", split=(1, 0, 0))


def test_a_label_with_no_training_examples_is_an_error(tmp_path):
    files = cases.good_set(per_label=8, prefix="train/")
    files["test/bird/1.jpg"] = cases.photo_jpeg(seed=9000)
    files["train/fish/broken.jpg"] = cases.truncated_jpeg()
    with pytest.raises(DatasetError) as caught:
        convert_to_folder(FolderSource(cases.write(tmp_path / "src", files)), tmp_path / "out")
    text = str(caught.value)
    assert "'bird' (1 in test)" in text
    assert "'fish' (rejected: 1 truncated)" in text


def test_too_large_source_files_are_not_read(tmp_path):
    files = cases.good_set(per_label=8)
    files["cat/huge.png"] = cases.encode(cases.pattern(600, 600, seed=3), "PNG")
    limit = len(files["cat/huge.png"]) - 1
    assert all(len(v) <= limit for k, v in files.items() if k != "cat/huge.png")
    result = convert_to_folder(FolderSource(cases.write(tmp_path / "src", files)), tmp_path / "out", max_file_bytes=limit)
    assert [(r["path"], r["code"]) for r in result.rejected] == [("cat/huge.png", "too_large")]


def test_empty_validation_split_is_allowed_and_reported(tmp_path):
    root = cases.write(tmp_path / "src", cases.good_set(per_label=8))
    result = convert_to_folder(FolderSource(root), tmp_path / "out", split=(90, 0, 10))
    assert result.manifest["splits"]["validation"]["examples"] == 0
    assert (tmp_path / "out" / "validation.jsonl").read_bytes() == b""
    assert any("validation.jsonl is empty" in w for w in result.manifest["warnings"])


def test_rerun_replaces_an_earlier_output(tmp_path):
    root = cases.write(tmp_path / "src", cases.good_set(per_label=8))
    convert_to_folder(FolderSource(root), tmp_path / "out", quality=50)
    result = convert_to_folder(FolderSource(root), tmp_path / "out", quality=80)
    assert json.loads((tmp_path / "out" / "manifest.json").read_bytes())["version"] == result.version


def test_progress_reports_every_file(tmp_path):
    root = cases.write(tmp_path / "src", {**cases.good_set(per_label=10), "cat/empty.jpg": b""})
    calls = []
    convert_dataset(
        FolderSource(root), FolderSink(tmp_path / "out"), ConvertOptions(workers=2), progress=lambda d, t: calls.append((d, t))
    )
    assert calls[0] == (0, 21) and calls[-1] == (21, 21)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


class MemorySink:
    """A sink that keeps artifacts in memory and records the call order (the pipeline's blob sink
    behaves the same way)."""

    def __init__(self):
        self.order: list[str] = []
        self.data: dict[str, bytes] = {}
        self.committed: str | None = None

    def open(self, name):
        import contextlib

        @contextlib.contextmanager
        def writer():
            buffer = io.BytesIO()
            yield buffer
            assert self.committed is None
            self.data[name] = buffer.getvalue()
            self.order.append(name)

        return writer()

    def commit(self, version):
        self.committed = version


class MemorySource:
    """A non-local source (no ``local_path``): the converter reads the bytes itself."""

    def __init__(self, files):
        self.files = files

    def entries(self):
        from shared.conversion import SourceEntry

        return [SourceEntry(p, len(d)) for p, d in reversed(list(self.files.items()))]

    def read(self, path):
        if path.endswith("locked.jpg"):
            raise PermissionError("access denied")
        return self.files[path]


def test_custom_sink_and_source_get_the_artifacts_in_order_manifest_last(tmp_path):
    files = {**cases.good_set(per_label=8), "dog/locked.jpg": cases.photo_jpeg(seed=4242)}
    sink = MemorySink()
    result = convert_dataset(MemorySource(files), sink, ConvertOptions(workers=2))
    assert sink.order == list(ARTIFACTS)
    assert sink.committed == result.version
    assert json.loads(sink.data["manifest.json"]) == result.manifest
    assert {(r["path"], r["code"]) for r in result.rejected} == {("dog/locked.jpg", "unreadable")}
    # the same files on disk give the same version: sources are interchangeable
    readable = {k: v for k, v in files.items() if "locked" not in k}
    folder = convert_to_folder(FolderSource(cases.write(tmp_path / "src", readable)), tmp_path / "out")
    written = (tmp_path / "out" / "train.jsonl").read_bytes()
    assert hashlib.sha256(sink.data["train.jsonl"]).digest() == hashlib.sha256(written).digest()
    assert folder.version != result.version  # the unreadable file is part of the source listing


def test_workers_start_even_when_main_is_read_from_stdin(tmp_path):
    # Worker start methods that re-import __main__ by path break for `python -`; the converter copes.

    root = cases.write(tmp_path / "src", cases.good_set(per_label=10))
    script = (
        "from pathlib import Path\n"
        "from shared.conversion import ConvertOptions, FolderSink, FolderSource, convert_dataset\n"
        f"source, sink = FolderSource(Path({str(root)!r})), FolderSink(Path({str(tmp_path / 'out')!r}))\n"
        "r = convert_dataset(source, sink, ConvertOptions(workers=2))\n"
        "print(r.stats['workers'], r.manifest['examples'])\n"
    )
    repo = Path(__file__).resolve().parents[3]
    done = subprocess.run([sys.executable, "-"], input=script, text=True, capture_output=True, cwd=repo, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2", "20"]
