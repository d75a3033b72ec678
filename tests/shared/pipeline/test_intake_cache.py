"""Intake with the converted-image cache on the local stack (Azurite): a grown drop converts only its new
images, its files are byte-identical to a conversion without the cache, the run's timeline says what was
converted, reused and rejected, and cache entries no published version uses are collected."""

from __future__ import annotations

import shutil
from pathlib import Path

from shared.layout import cache_prefix

SPLIT_FILES = ("train.jsonl", "validation.jsonl", "test.jsonl", "rejected.json", "manifest.json")


def version_files(env, dataset: str, version: str) -> dict[str, bytes]:
    training = env.service.get_container_client("training")
    return {name: training.download_blob(f"{dataset}/{version}/{name}").readall() for name in SPLIT_FILES}


def cache_blobs(env, dataset: str, folder: str) -> list[str]:
    training = env.service.get_container_client("training")
    return sorted(b.name for b in training.list_blobs(name_starts_with=f"{cache_prefix(dataset)}{folder}"))


def grow(digits_dir: Path, target: Path, extra: int) -> Path:
    shutil.copytree(digits_dir, target)
    (target / "0" / "broken.png").write_bytes(b"not a png")
    sources = sorted((digits_dir / "1").iterdir())
    for i in range(extra):  # new images: existing scans mirrored, so their bytes differ
        from PIL import Image, ImageOps

        with Image.open(sources[i]) as image:
            ImageOps.mirror(image).save(target / "1" / f"new-{i}.png")
    return target


def test_a_grown_drop_reuses_the_cache_and_writes_what_a_fresh_conversion_writes(pipeline_env, digits_dir, tmp_path):
    env = pipeline_env
    first = env.drop(digits_dir, "digits")
    run1 = env.run("digits", first.version)
    total = sum(1 for p in digits_dir.rglob("*.png"))
    assert run1.intake["images_converted"] == total and run1.intake["images_reused"] == 0
    assert f"{total} images converted, 0 reused from the cache, 0 files rejected; intake took" in env.timeline(run1)
    assert len(cache_blobs(env, "digits", "packs/")) == 1 and len(cache_blobs(env, "digits", "index/")) == 1

    grown = grow(digits_dir, tmp_path / "grown", extra=3)
    second = env.drop(grown, "digits")
    run2 = env.run("digits", second.version)
    assert second.version != first.version
    assert run2.intake["images_converted"] == 3 and run2.intake["images_reused"] == total
    assert run2.intake["files_rejected"] == 1
    assert f"3 images converted, {total} reused from the cache, 1 files rejected" in env.timeline(run2)

    # the same drop without the cache, under another name: the same version, byte for byte
    plain = env.drop(grown, "digits-plain", settings=env.with_settings(convert_cache=False))
    assert plain.version == second.version
    assert version_files(env, "digits-plain", plain.version) == version_files(env, "digits", second.version)
    assert cache_blobs(env, "digits-plain", "") == []


def test_cache_entries_of_versions_no_longer_published_are_collected(pipeline_env, digits_dir, tmp_path):
    env = pipeline_env
    settings = env.with_settings(convert_cache_grace_seconds=0)
    first = env.drop(digits_dir, "digits", settings=settings)
    # a second version that shares nothing with the first: every label folder replaced
    other = tmp_path / "other"
    for folder in digits_dir.iterdir():
        from PIL import Image, ImageOps

        (other / folder.name).mkdir(parents=True)
        for path in sorted(folder.iterdir()):
            with Image.open(path) as image:
                ImageOps.flip(image).save(other / folder.name / path.name)
    training = env.service.get_container_client("training")
    # the first version is removed (as a retention clean-up would): nothing keeps its entries
    for blob in list(training.list_blobs(name_starts_with=f"digits/{first.version}/")):
        training.delete_blob(blob.name)
    datasets = env.service.get_container_client("datasets")
    for blob in list(datasets.list_blobs(name_starts_with="digits/")):
        datasets.delete_blob(blob.name)
    second = env.drop(other, "digits", settings=settings)
    assert env.run("digits", second.version).intake["images_reused"] == 0
    assert cache_blobs(env, "digits", "refs/") == [f"{cache_prefix('digits')}refs/{second.version}.json"]
    assert len(cache_blobs(env, "digits", "packs/")) == 1 and len(cache_blobs(env, "digits", "index/")) == 1
    # and the survivor still serves the version it belongs to
    for blob in list(datasets.list_blobs(name_starts_with="digits/")):
        datasets.delete_blob(blob.name)
    for blob in list(training.list_blobs(name_starts_with=f"digits/{second.version}/")):
        training.delete_blob(blob.name)
    packs = cache_blobs(env, "digits", "packs/")
    again = env.drop(other, "digits", settings=settings)
    assert again.version == second.version and again.published
    assert cache_blobs(env, "digits", "packs/") == packs  # nothing new was converted, so no new pack
