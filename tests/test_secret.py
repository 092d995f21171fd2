"""Secrets print as *** everywhere, and the redactor scrubs raw and URL-encoded values from any text."""

from __future__ import annotations

import io
import logging
import pickle

import pytest

from monitor.secret import MASK, RedactingFilter, Redactor, Secret

VALUE = "s3cr3t/key+with spaces"


def test_secret_hides_its_value() -> None:
    s = Secret(VALUE)
    for text in (str(s), repr(s), f"{s}", f"{s!r}", "%s" % (s,), str([s]), str({"k": s})):  # noqa: UP031
        assert VALUE not in text
    assert s.reveal() == VALUE and s == Secret(VALUE) and s != Secret("other") and bool(s)
    assert hash(s) == hash(Secret(VALUE))
    with pytest.raises(TypeError):
        pickle.dumps(s)


def test_redactor_masks_raw_and_encoded_forms() -> None:
    r = Redactor([Secret(VALUE), "abc"])  # too short values are ignored
    text = f"GET /api.php?key={VALUE} q=s3cr3t%2Fkey%2Bwith%20spaces p=s3cr3t%2Fkey%2Bwith+spaces abc"
    assert r(text) == f"GET /api.php?key={MASK} q={MASK} p={MASK} abc"
    assert len(Redactor()) == 0 and Redactor()("as is") == "as is"


def test_logging_filter_scrubs_messages_args_and_tracebacks() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter(Redactor([VALUE])))
    logger = logging.getLogger("test.secret")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("key is %s", VALUE)
        try:
            raise ValueError(f"bad key {VALUE}")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    out = stream.getvalue()
    assert VALUE not in out
    assert out.count(MASK) == 2 and "ValueError" in out
