"""Ingestion: one file per source ``kind`` (jsonl, nginx, dujiaoka). The CLI builds them from ``sources:``."""

from typing import Protocol

from monitor.ingest.dujiaoka import DujiaokaSource
from monitor.ingest.jsonl import JsonlSource
from monitor.ingest.nginx import NginxSource
from monitor.models import IngestResult


class Source(Protocol):
    """What the pipeline needs of a source: an id for its checkpoint and metrics, a poll, and a close."""

    source_id: str

    def poll(self) -> IngestResult: ...

    def close(self) -> None: ...


__all__ = ["DujiaokaSource", "JsonlSource", "NginxSource", "Source"]
