"""epay V1 ``submit.php``, the browser flow: HTML pages for success and errors, EP-old's client filter."""

from __future__ import annotations

import httpx
import pytest

from monitor.protocols.epay import sign_md5
from monitor.sim.server import SimServer

KEY = "submit-test-key-123456"
BROWSER = {"User-Agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120.0", "Accept": "text/html"}


def signed(**extra: str) -> dict[str, str]:
    params = {"pid": "1001", "type": "alipay", "out_trade_no": "SUB1", "notify_url": "http://127.0.0.1:9/n",
              "return_url": "http://127.0.0.1:9/r", "name": "VIP会员", "money": "1.00", **extra}
    params["sign"] = sign_md5(params, KEY)
    params["sign_type"] = "MD5"
    return params


@pytest.mark.parametrize("flavour", ["new", "old"])
async def test_submit_creates_the_order_and_sends_the_browser_on(flavour: str) -> None:
    async with SimServer() as sim, httpx.AsyncClient(headers=BROWSER) as client:
        sim.gateway.add_channel("main", 1001, KEY, flavour=flavour)
        page = await client.get(sim.endpoint("main") + "submit.php", params=signed())
        assert page.status_code == 200 and "正在为您跳转到支付页面" in page.text
        [order] = sim.ground_truth()
        assert order.out_trade_no == "SUB1" and f"/main/pay/submit/{order.trade_no}/" in page.text
        posted = await client.post(sim.endpoint("main") + "submit.php", data=signed(out_trade_no="SUB2"))
        assert posted.status_code == 200 and len(sim.ground_truth()) == 2


@pytest.mark.parametrize(("flavour", "message"), [("new", "MD5签名校验失败"), ("old", "签名校验失败，请返回重试！")])
async def test_errors_are_200_html_pages(flavour: str, message: str) -> None:
    async with SimServer() as sim, httpx.AsyncClient(headers=BROWSER) as client:
        sim.gateway.add_channel("main", 1001, KEY, flavour=flavour)
        bad = await client.get(sim.endpoint("main") + "submit.php", params={**signed(), "sign": "0" * 32})
        assert bad.status_code == 200 and "<h3>站点提示信息</h3>" in bad.text and message in bad.text
        nopid = await client.get(sim.endpoint("main") + "submit.php", params={**signed(), "pid": "9"})
        assert "商户不存在！" in nopid.text
        badno = await client.get(sim.endpoint("main") + "submit.php", params=signed(out_trade_no="a b"))
        assert "订单号(out_trade_no)格式不正确" in badno.text
        assert sim.ground_truth() == []


@pytest.mark.parametrize(
    ("headers", "blocked"),
    [
        ({"User-Agent": "python-httpx/0.28", "Accept": "*/*"}, True),
        ({"User-Agent": "curl/8.0 libcurl/8.0", "Accept": "*/*"}, True),
        ({"User-Agent": "Mozilla/5.0 (Windows NT 6.1)", "Accept": "*/*"}, True),
        ({"User-Agent": "Python-urllib/3.11", "Accept": "*/*"}, False),  # only lowercase "python" is matched
        (BROWSER, False),
    ],
)
async def test_old_flavour_turns_scripts_away(headers: dict[str, str], blocked: bool) -> None:
    async with SimServer() as sim, httpx.AsyncClient() as client:
        sim.gateway.add_channel("old", 1001, KEY, flavour="old")
        sim.gateway.add_channel("new", 1001, KEY)
        old = await client.get(sim.endpoint("old") + "submit.php", params=signed(), headers=headers)
        assert (old.status_code, old.content == b"") == ((404, True) if blocked else (200, False))
        new = await client.get(sim.endpoint("new") + "submit.php", params=signed(), headers=headers)
        assert new.status_code == 200
