"""The YAML weight sink changes only the weight's line: a diff of the file before and after proves it."""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest

from monitor.errors import SinkError
from monitor.routing.yaml_file import YamlWeightSink

SAMPLE = """\
# Routing weights are read by the shop. paymon lowers a degraded channel's weight and restores it.
channels:
  - id: epay-main            # slug, unique
    name: "易支付主通道"
    kind: epay
    weight: 60               # routing weight (integer >= 0)
    credentials: {pid: "1001", key: "${EPAY_MAIN_KEY}"}
    probes:
      query:      {every: 30s, timeout: 5s}

  # the backup keeps 40
  - {id: epay-backup, kind: epay, weight: '40', name: 'backup'}
  - id: alipay
    weight: 100
"""


def diff(a: str, b: str) -> list[str]:
    return [line for line in difflib.unified_diff(a.splitlines(), b.splitlines(), lineterm="", n=0)
            if line.startswith(("+", "-")) and not line.startswith(("+++", "---"))]


@pytest.fixture
def sink(tmp_path: Path) -> YamlWeightSink:
    p = tmp_path / "channels.yaml"
    p.write_text(SAMPLE, encoding="utf-8")
    return YamlWeightSink(p)


def test_read(sink: YamlWeightSink) -> None:
    assert sink.read() == {"epay-main": 60, "epay-backup": 40, "alipay": 100}


def test_rewrite_changes_only_the_weight_lines(sink: YamlWeightSink) -> None:
    assert sink.write({"epay-main": 0, "epay-backup": 7, "alipay": 100}) == {"epay-main": (60, 0),
                                                                              "epay-backup": (40, 7)}
    after = sink.path.read_text(encoding="utf-8")
    assert diff(SAMPLE, after) == [
        "-    weight: 60               # routing weight (integer >= 0)",
        "+    weight: 0                # routing weight (integer >= 0)",
        "-  - {id: epay-backup, kind: epay, weight: '40', name: 'backup'}",
        "+  - {id: epay-backup, kind: epay, weight: '7', name: 'backup'}",
    ]
    assert sink.write({"epay-main": 60, "epay-backup": 40}) and sink.path.read_text(encoding="utf-8") == SAMPLE


def test_unchanged_weights_do_not_touch_the_file(sink: YamlWeightSink) -> None:
    before = os.stat(sink.path).st_ino
    assert sink.write({"epay-main": 60}) == {}
    assert os.stat(sink.path).st_ino == before


def test_replace_is_atomic_and_keeps_mode(sink: YamlWeightSink) -> None:
    os.chmod(sink.path, 0o640)
    inode = os.stat(sink.path).st_ino
    sink.write({"alipay": 5})
    assert os.stat(sink.path).st_ino != inode  # a new file was renamed over the old one
    assert os.stat(sink.path).st_mode & 0o777 == 0o640
    assert [p.name for p in sink.path.parent.iterdir()] == ["channels.yaml"]  # no temp file left


@pytest.mark.parametrize(
    ("weights", "message"),
    [({"nope": 1}, "no weight for channel"), ({"alipay": -1}, "negative")],
)
def test_bad_requests_fail_without_touching_the_file(sink: YamlWeightSink, weights: dict[str, int],
                                                      message: str) -> None:
    with pytest.raises(SinkError, match=message):
        sink.write(weights)
    assert sink.path.read_text(encoding="utf-8") == SAMPLE


def test_unreadable_or_broken_file_is_a_retryable_error(tmp_path: Path) -> None:
    missing = YamlWeightSink(tmp_path / "missing.yaml")
    with pytest.raises(SinkError) as exc:
        missing.read()
    assert exc.value.retryable
    broken = tmp_path / "broken.yaml"
    broken.write_text("channels: [\n", encoding="utf-8")
    with pytest.raises(SinkError, match="cannot parse"):
        YamlWeightSink(broken).read()


def test_crlf_line_endings_survive_a_rewrite(tmp_path: Path) -> None:
    crlf = SAMPLE.replace("\n", "\r\n").encode()
    p = tmp_path / "channels.yaml"
    p.write_bytes(crlf)
    sink = YamlWeightSink(p)
    assert sink.write({"epay-main": 0}) == {"epay-main": (60, 0)}
    after = p.read_bytes()
    assert after.count(b"\r\n") == crlf.count(b"\r\n") and b"\n" not in after.replace(b"\r\n", b"")
    assert after == crlf.replace(b"weight: 60               #", b"weight: 0                #")
    assert sink.read()["epay-main"] == 0


def test_a_missing_file_is_seeded_from_the_example_which_stays_untouched(tmp_path: Path) -> None:
    example = tmp_path / "config" / "channels.yaml"
    example.parent.mkdir()
    example.write_text(SAMPLE, encoding="utf-8")
    sink = YamlWeightSink(tmp_path / "var" / "channels.yaml", seed=example)
    assert sink.read() == {"epay-main": 60, "epay-backup": 40, "alipay": 100}  # seeded, folder created
    assert sink.path.read_text(encoding="utf-8") == SAMPLE
    sink.write({"epay-main": 0})
    assert sink.read()["epay-main"] == 0
    assert YamlWeightSink(sink.path, seed=example).read()["epay-main"] == 0  # an existing copy is never re-seeded
    assert example.read_text(encoding="utf-8") == SAMPLE
    assert sorted(p.name for p in sink.path.parent.iterdir()) == ["channels.yaml"]  # no temp file left


def test_a_missing_seed_is_a_retryable_error(tmp_path: Path) -> None:
    sink = YamlWeightSink(tmp_path / "var" / "channels.yaml", seed=tmp_path / "nope.yaml")
    with pytest.raises(SinkError, match="cannot seed") as exc:
        sink.read()
    assert exc.value.retryable
