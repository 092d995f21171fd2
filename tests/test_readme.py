"""The READMEs serve someone who has only the repository: every relative link and every repository path they
name exists, and they (and the shipped config comments) cite no document that is not in the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
READMES = ("README.md", "README.zh-CN.md")
#: Top-level entries of the repository a path named in a README may start with.
TOP = ("config/", "monitor/", "tests/", "bench/", ".ci/")
ROOT_FILES = ("Makefile", "pyproject.toml", "LICENSE", "README.md", "README.zh-CN.md")
#: Paths the READMEs name on purpose although they are not in the repository: the files a new gateway kind
#: (the example kind ``foo`` of "Adding a gateway kind") would add.
EXAMPLE = re.compile(r"(^|[/_])foo([/_.]|$)")

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
CODE = re.compile(r"`([^`\s]+)`")
OUTSIDE = re.compile(r"\bSPEC\b|STYLE\.md|protocols\.md|§")


def text(name: str) -> str:
    return (ROOT / name).read_text(encoding="utf-8")


def exists(path: str) -> bool:
    path = path.split("#", 1)[0].rstrip("/")
    if any(ch in path for ch in "*?["):
        return any(ROOT.glob(path))
    return (ROOT / path).exists()


@pytest.mark.parametrize("readme", READMES)
def test_every_relative_link_exists(readme: str) -> None:
    targets = [t for t in LINK.findall(text(readme)) if not re.match(r"[a-z][a-z0-9+.-]*:|#", t)]
    assert targets, "the READMEs link each other at least"
    assert [t for t in targets if not exists(t)] == []


@pytest.mark.parametrize("readme", READMES)
def test_every_repository_path_named_exists(readme: str) -> None:
    body = text(readme)
    named = {m.rstrip(".,:;)") for m in CODE.findall(body)} | set(re.findall(r"^(?:\.ci|config|monitor|tests|bench)"
                                                                               r"/[\w./*-]*", body, re.M))
    paths = {p.split(":", 1)[0] for p in named if p.startswith(TOP) or p in ROOT_FILES}
    assert len(paths) > 5, paths
    assert sorted(p for p in paths if not EXAMPLE.search(p) and not exists(p)) == []


CONFIGS = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "config").rglob("*.yaml"))]


@pytest.mark.parametrize("name", [*READMES, *CONFIGS])
def test_no_document_outside_the_repository_is_cited(name: str) -> None:
    body = text(name)
    assert [line for line in body.splitlines() if OUTSIDE.search(line)] == []
    for doc in set(re.findall(r"[\w./-]+\.md\b", body)):
        assert exists(doc), f"{name} names {doc}, which is not in the repository"


def test_the_license_matches_the_package_metadata() -> None:
    assert 'license = "MIT"' in text("pyproject.toml")
    assert text("LICENSE").startswith("MIT License\n")
