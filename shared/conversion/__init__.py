"""Image folder (or zip) -> Azure OpenAI vision fine-tuning JSONL. Public entry: ``convert_dataset``."""

from shared.conversion.converter import ConversionResult, convert_dataset
from shared.conversion.options import ConvertOptions, DatasetError
from shared.conversion.sinks import ArtifactSink, FolderSink
from shared.conversion.sources import DatasetSource, FolderSource, SourceEntry, ZipSource, open_source

__all__ = [
    "ArtifactSink",
    "ConversionResult",
    "ConvertOptions",
    "DatasetError",
    "DatasetSource",
    "FolderSink",
    "FolderSource",
    "SourceEntry",
    "ZipSource",
    "convert_dataset",
    "open_source",
]
