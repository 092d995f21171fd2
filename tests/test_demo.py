"""``paymon demo`` tells the whole story by itself: alert, drain in channels.yaml, resolve, stepwise restore."""

from __future__ import annotations

import io
import re

from monitor.demo import run_demo


def test_demo_tells_the_whole_story() -> None:
    out = io.StringIO()
    assert run_demo(duration=90, out=out) == 0, out.getvalue()
    text = out.getvalue()
    assert re.search(r"ALERT channel_down fired on epay-main, \d+\.\ds after the fault", text)
    assert re.search(r"WEIGHT epay-main 60 → 0 \(rule channel_down: drain\); now channels\.yaml:\d+: weight: 0 ", text)
    assert re.search(r"RESOLVED channel_down on epay-main, \d+\.\ds after the repair", text)
    assert "weight restored step by step:       0 → 15 → 30 → 60" in text
    assert "result: the whole story happened" in text
    assert "demo-epay-main-md5-key" not in text
