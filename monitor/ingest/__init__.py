"""Ingestion: one file per source ``kind``, registered here with one line each."""

from monitor.ingest.jsonl import JsonlSource

#: Source classes by ``sources[].kind``.
SOURCES: dict[str, type] = {
    "jsonl": JsonlSource,
}

__all__ = ["SOURCES", "JsonlSource"]
