"""The supervisors' wallboard (`/console/wallboard`): who may open it, the page as served,
its logic against a hand-fed stream (duplicates, a `lagged` hole caught up in order, a
reconnect from since=0, calls that end while the page is away), and two real calls at
once (the payment call with a recording that pauses, the support call with category
alerts) replayed against a real server, in headless Chromium."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from pipeline.cli.replay import load_call_audio, replay_call

from .conftest import FIXTURES, Server, start_server, wait_for
from .fake_acs import FakeAcs
from .test_console import (
    CHROMIUM,
    WAIT_MS,
    assert_no_external_urls,
    padded,
    parse,
    register_recording,
)
from .test_security import bearer, request

ADMIN = "admin-" + secrets.token_urlsafe(18)
SUPERVISOR = "supervisor-" + secrets.token_urlsafe(18)
AGENT = "agent-" + secrets.token_urlsafe(18)
AGENT_ID = "8:acs:agent"  # the replay's agent (right channel)
PAY, SUP = "wb-a-payment", "wb-b-support"  # alphabetical order is not alert order
# Rules that match what the local recognizer hears in the support call ("hi my internet is
# not working", "it has been down since this morning"), at any replay speed.
CATEGORIES = """
[[rule]]
name = "service-down"
category = "outage"
severity = "high"
role = "customer"
phrases = ["not working"]

[[rule]]
name = "since-when"
category = "timing"
severity = "medium"
role = "customer"
phrases = ["this morning"]
"""
SPEED = 3.0  # both calls: a payment window of ~9 s, the support call's alerts within ~5 s


@pytest.fixture
def chromium_path() -> str:
    if not os.path.exists(CHROMIUM):
        pytest.skip(
            "chromium is not installed (bash install.sh --test installs it; no browser is downloaded)"
        )
    return CHROMIUM


@pytest.fixture(scope="module")
def fake_acs() -> Iterator[FakeAcs]:
    with FakeAcs() as fake:
        yield fake


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, fake_acs: FakeAcs) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("wallboard")
    (tmp / "categories.toml").write_text(CATEGORIES)
    (tmp / "access.toml").write_text(
        f'[[token]]\ntoken = "{SUPERVISOR}"\nrole = "supervisor"\nname = "sup one"\n\n'
        f'[[token]]\ntoken = "{AGENT}"\nrole = "agent"\nname = "agent one"\n'
        f'participants = ["{AGENT_ID}"]\n'
    )
    s = start_server(
        tmp, CALLSTREAM_STT="local",
        CALLSTREAM_ACS_ENDPOINT=fake_acs.endpoint, CALLSTREAM_ACS_KEY=fake_acs.access_key,
        CALLSTREAM_MEDIA_AUTH="off",  # the replay carries no ACS token (tests/test_security.py does)
        CALLSTREAM_API_TOKENS=ADMIN, CALLSTREAM_ACCESS_FILE=str(tmp / "access.toml"),
        CALLSTREAM_CATEGORIES_FILE=str(tmp / "categories.toml"),
        CALLSTREAM_ANALYTICS_INTERVAL_S="1",  # the trend moves within the short replay
    )  # fmt: skip
    s.token = ADMIN
    yield s
    s.stop()


# ---------------------------------------------------------------- who may open it; as served


def test_a_supervisor_opens_the_wallboard_and_an_agent_may_not(server: Server) -> None:
    status, headers, body = request(server, "GET", "/console/wallboard", bearer(SUPERVISOR))
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert request(server, "GET", "/console/wallboard", bearer(ADMIN))[0] == 200
    assert request(server, "GET", "/console/wallboard", bearer(AGENT))[0] == 403
    assert request(server, "GET", "/console/wallboard")[0] == 401
    # The console's cookie: ?token= sets it and leaves the address; the cookie then opens it.
    status, headers, _ = request(server, "GET", f"/console/wallboard?token={SUPERVISOR}")
    assert status == 303 and headers["location"] == "/console/wallboard"
    cookie = headers["set-cookie"].split(";", 1)[0]
    assert request(server, "GET", "/console/wallboard", {"Cookie": cookie})[0] == 200
    # What the page reads: the firehose is a supervisor's, the analytics too.
    assert request(server, "GET", "/calls", bearer(SUPERVISOR))[0] == 200

    page = parse(body)
    assert page.find("html", lang="en")
    for landmark in ("header", "nav", "main", "footer"):
        assert page.find(landmark), landmark
    assert page.find("script", src="/console/static/wallboard.js")
    assert page.find("link", href="/console/static/wallboard.css")
    assert page.find("table", id="live") and page.find("table", id="recent")
    assert len(page.find("th", scope="col")) >= 9
    assert page.find("input", id="filter", type="search")
    assert page.find("input", id="alerting-only", type="checkbox")
    assert page.find("input", id="in-payment", type="checkbox")
    assert page.find("p", id="connection", role="status")
    assert_no_external_urls(page)
    assert "'unsafe-inline'" not in headers.get("content-security-policy", "")
    assert not any(a.get("style") is not None for _, a in page.tags), "no inline style"
    assert "<style" not in body.decode() and "onclick" not in body.decode()

    for name, media in (("wallboard.js", "text/javascript"), ("wallboard.css", "text/css")):
        status, headers, text = request(server, "GET", f"/console/static/{name}")
        assert status == 200 and headers["content-type"].startswith(media), name
        assert "default-src 'none'" in headers["content-security-policy"]
        source = text.decode()
        assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", source), name
        assert "@import" not in source and "url(" not in source, name
    script = request(server, "GET", "/console/static/wallboard.js")[2].decode()
    for bad in (
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "eval(",
        "document.write",
        "new Function",
    ):
        assert bad not in script, bad


# ---------------------------------------------------------------- helpers for the browser


def watch_problems(page) -> list[str]:
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on(
        "console",
        lambda msg: (
            problems.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None
        ),
    )
    return problems


async def open_wallboard(browser, server: Server, **context):
    page = await browser.new_page(viewport={"width": 1600, "height": 1000}, **context)
    problems = watch_problems(page)
    await page.add_init_script(OBSERVER)
    await page.goto(f"{server.http}/console/wallboard?token={SUPERVISOR}")
    assert page.url == f"{server.http}/console/wallboard", "the token left the address bar"
    return page, problems


# Every change of a row's state, payment, recording and alert count, as it happened (a
# state may last less than a poll of `expect`).
OBSERVER = """
window.__changes = [];
new MutationObserver((records) => {
  for (const r of records) {
    const t = r.target;
    if (t.tagName === "TR" && t.dataset.callId) window.__changes.push([t.dataset.callId, r.attributeName, t.getAttribute(r.attributeName)]);
  }
}).observe(document, {subtree: true, attributes: true, attributeFilter: ["data-state", "data-payment", "data-recording", "data-alerts"]});
"""


async def changes(page, call_id: str, attribute: str) -> list[str]:
    seen = [
        v for c, a, v in await page.evaluate("window.__changes") if c == call_id and a == attribute
    ]
    return [v for i, v in enumerate(seen) if i == 0 or v != seen[i - 1]]


async def order(page) -> list[str]:
    return await page.locator("#live-body tr:not([hidden])").evaluate_all(
        "rows => rows.map((r) => r.dataset.callId)"
    )


def iso(seconds_ago: float = 0.0) -> str:
    t = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds_ago)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ---------------------------------------------------------------- a hand-fed stream


def fed_call(call_id: str, agent: str, started_ago: float) -> list[dict]:
    """One call's events, seq 1.. (what a store would hold)."""
    customer = "4:~customer-" + call_id
    body = [
        {"type": "call.started", "mode": "unmixed", "sampleRate": 16000, "time": iso(started_ago)},
        {"type": "participant.joined", "participant": agent, "role": "agent"},
        {"type": "participant.joined", "participant": customer, "role": "customer"},
    ]
    if call_id == "hf-1":
        body += [
            {"type": "sentiment", "participant": customer, "utteranceId": "u1", "label": "negative", "score": -0.5, "rollingScore": -0.4},
            {"type": "alert", "rule": "wants-to-cancel", "category": "churn-risk", "severity": "high", "participant": customer, "utteranceId": "u1"},
            {"type": "payment.started", "trigger": "intent", "startMs": 3000},  # 6
            {"type": "recording.paused", "recordingId": "r1", "latencyMs": 120, "attempt": 1, "error": None},
            {"type": "analytics", "durationMs": 30000, "talkMs": {"agent": 1, "customer": 1}, "silenceMs": 0, "overlapMs": 0,
             "interruptions": {"agent": 0, "customer": 0}, "longestMonologueMs": {"agent": 1, "customer": 1},
             "wordsPerMinute": {"agent": 100, "customer": 100},
             "sentimentTrend": {"agent": [0.3, 0.3, None, None], "customer": [0.1, -0.2, None, None]},
             "final": False, "categories": {"churn-risk": 1}, "unavailable": []},
            {"type": "alert", "rule": "supervisor-word", "category": "escalation", "severity": "low", "participant": customer, "utteranceId": "u2"},  # 9
            {"type": "payment.ended", "trigger": "phrase", "startMs": 3000},  # 10
            {"type": "recording.resumed", "recordingId": "r1", "latencyMs": 90, "attempt": 1, "error": None},  # 11
            {"type": "call.ended", "reason": "hangup"},  # 12
        ]  # fmt: skip
    else:
        body += [
            {"type": "sentiment", "participant": customer, "utteranceId": "v1", "label": "positive", "score": 0.6, "rollingScore": 0.5},
        ]  # fmt: skip
    events = []
    for seq, ev in enumerate(body, 1):
        events.append({"callId": call_id, "seq": seq, "time": ev.pop("time", iso()), **ev})
    return events


async def test_the_page_against_a_hand_fed_stream(
    chromium_path, server: Server, tmp_path: Path
) -> None:
    """Duplicates are skipped; a `lagged` hole is fetched again (the call's analytics and
    its own stream from the last seq applied) and applied in seq order before what the
    firehose brought meanwhile; a reconnect asks for since=0 and skips what was applied;
    a call that ended while the page was away moves to the recent calls; sorting by
    sentiment and duration; a refused stream says so."""
    from playwright.async_api import async_playwright, expect

    one, two = fed_call("hf-1", "8:acs:alice", 65), fed_call("hf-2", "8:acs:bob", 5)
    firehoses: list = []
    catchups: list = []
    calls_list: list[dict] = []
    analytics_asked: list[str] = []
    two_ended: list[bool] = []  # (hf-2's analytics are final once it has ended)
    final_one = {**one[7], "final": True, "categories": {"churn-risk": 1, "escalation": 1}}

    async def firehose(ws) -> None:
        firehoses.append(ws)

    async def catchup(ws) -> None:
        catchups.append(ws)

    async def list_calls(route) -> None:
        await route.fulfill(json={"calls": calls_list})

    async def analytics(route) -> None:
        call_id = route.request.url.split("/calls/", 1)[1].split("/", 1)[0]
        analytics_asked.append(call_id)
        doc = (
            final_one
            if any(c["callId"] == call_id and c["endedAt"] for c in calls_list)
            else one[7]
        )
        await route.fulfill(json=doc if call_id == "hf-1" else {**two[0], "type": "analytics", "durationMs": 1000,
                            "sentimentTrend": {"agent": [None] * 4, "customer": [0.5, None, None, None]},
                            "final": bool(two_ended), "categories": {}})  # fmt: skip

    def send(ws, events: list[dict]) -> None:
        for ev in events:
            ws.send(json.dumps(ev))

    def summary(call_id: str, ended: bool, started_ago: float) -> dict:
        return {"callId": call_id, "startedAt": iso(started_ago), "endedAt": iso() if ended else None,
                "endReason": "hangup" if ended else None, "mode": "unmixed", "sampleRate": 16000,
                "lastSeq": 0, "live": not ended}  # fmt: skip

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=chromium_path, args=["--no-sandbox"], headless=True
        )
        try:
            context = await browser.new_context(viewport={"width": 1600, "height": 1000})
            page = await context.new_page()
            problems = watch_problems(page)
            await page.add_init_script(OBSERVER)
            await page.route_web_socket(re.compile(r"//[^/]+/events\?"), firehose)
            await page.route_web_socket(re.compile(r"/calls/[^/]+/events\?"), catchup)
            await page.route(re.compile(r"/calls\?limit="), list_calls)
            await page.route(re.compile(r"/calls/[^/?]+/analytics$"), analytics)
            await page.goto(f"{server.http}/console/wallboard?token={SUPERVISOR}")
            await expect(page.locator("#connection")).to_have_attribute(
                "data-state", "live", timeout=WAIT_MS
            )
            await expect(page.locator("#live-empty")).to_have_text("No live calls.")
            await expect(page.locator("#recent-status")).to_have_text("No ended calls yet.")
            assert firehoses[0].url.endswith("/events?since=0")

            # 1..5 of one (the alert twice), 1..4 of two, then a hole in one: 6..9 missed.
            send(firehoses[0], one[:5] + [one[4]] + two)
            row1 = page.locator('#live-body tr[data-call-id="hf-1"]')
            row2 = page.locator('#live-body tr[data-call-id="hf-2"]')
            await expect(row1).to_have_attribute("data-alerts", "1", timeout=WAIT_MS)
            await expect(row2.locator('.score[data-role="customer"]')).to_have_attribute(
                "data-score", "+0.50"
            )
            await expect(row1.locator(".col-agent")).to_have_text("8:acs:alice")
            await expect(row1.locator(".col-duration")).to_have_text(re.compile(r"^1:0\d$"))
            await expect(row1.locator(".latest .pill.severity")).to_have_text("high")
            await expect(row1).to_have_attribute("data-severity", "high")
            await expect(row1.locator("a.call-link")).to_have_attribute("href", "/console/hf-1")
            lagged = {
                "type": "lagged",
                "callId": "hf-1",
                "seq": 9,
                "time": iso(),
                "missedFrom": 6,
                "missedTo": 9,
            }
            firehoses[0].send(json.dumps(lagged))
            await wait_for(lambda: catchups, 10, "the page to fetch the hole again")
            assert catchups[0].url.endswith("/calls/hf-1/events?since=5"), catchups[0].url
            send(firehoses[0], [one[9]])  # seq 10, payment.ended: held back until 6..9 are in
            await wait_for(lambda: "hf-1" in analytics_asked, 10, "the analytics to be refetched")
            await expect(row1).to_have_attribute("data-payment", "closed")
            send(catchups[0], one[5:9])
            await expect(row1).to_have_attribute("data-alerts", "2", timeout=WAIT_MS)
            await expect(row1).to_have_attribute("data-payment", "closed")
            await expect(row1).to_have_attribute("data-recording", "paused")
            await expect(row1.locator(".trend")).to_have_attribute(
                "data-customer", "+0.10 −0.20 – –"
            )
            await expect(row1.locator(".latest .category")).to_have_text("escalation")
            await expect(row1).to_have_attribute("data-severity", "high")  # the worst one stays
            # (6..10 are applied at once, in order: the row never showed the window open)
            assert await changes(page, "hf-1", "data-payment") == []
            assert await changes(page, "hf-1", "data-alerts") == ["2"]

            # Sorting: alerts first by default; sentiment (worst first, then best); duration.
            assert await order(page) == ["hf-1", "hf-2"]
            await page.get_by_role("button", name="Sentiment").click()
            await expect(page.locator('th[data-sort="sentiment"]')).to_have_attribute(
                "aria-sort", "ascending"
            )
            assert await order(page) == ["hf-1", "hf-2"]
            await page.get_by_role("button", name="Sentiment").click()
            await expect(page.locator('th[data-sort="sentiment"]')).to_have_attribute(
                "aria-sort", "descending"
            )
            assert await order(page) == ["hf-2", "hf-1"]
            await page.get_by_role("button", name="Duration").click()
            await expect(page.locator('th[data-sort="duration"]')).to_have_attribute(
                "aria-sort", "descending"
            )
            assert await order(page) == ["hf-1", "hf-2"]
            assert "sort=duration-descending" in page.url
            # A narrow screen: each call is a card, still readable.
            await page.set_viewport_size({"width": 600, "height": 1000})
            await expect(row1.locator(".col-duration")).to_be_visible()
            await page.screenshot(path=str(tmp_path / "wallboard-narrow.png"), full_page=True)
            await page.set_viewport_size({"width": 1600, "height": 1000})

            # The stream drops: a new one from since=0; what was applied is skipped.
            await firehoses[0].close(code=1001, reason="gone")
            await wait_for(lambda: len(firehoses) == 2, 10, "the page to reconnect")
            assert firehoses[1].url.endswith("/events?since=0")
            send(firehoses[1], one[:11] + two)
            await expect(row1).to_have_attribute("data-recording", "active", timeout=WAIT_MS)
            await expect(row1).to_have_attribute("data-alerts", "2")
            await expect(page.locator("#connection")).to_have_attribute("data-state", "live")

            # The call ends: it moves to the recent calls with its final categories.
            calls_list[:] = [summary("hf-1", True, 65), summary("hf-2", False, 5)]
            send(firehoses[1], [one[11]])
            recent1 = page.locator('#recent-body tr[data-call-id="hf-1"]')
            await expect(recent1).to_have_attribute(
                "data-categories", "churn-risk,escalation", timeout=WAIT_MS
            )
            await expect(recent1).to_have_attribute("data-alerts", "2")
            await expect(recent1).to_have_attribute("data-state", "ended")
            await expect(row1).to_have_count(0)
            await expect(recent1.locator(".pill.category")).to_have_count(2)

            # Two ends while the page is away, and is not among the calls GET /calls lists
            # (the newest 100): its final analytics say it has ended.
            calls_list[:] = [summary("hf-1", True, 65)]
            two_ended.append(True)
            await firehoses[1].close(code=1001, reason="gone")
            await expect(page.locator('#recent-body tr[data-call-id="hf-2"]')).to_be_visible(
                timeout=WAIT_MS
            )
            await expect(row2).to_have_count(0)
            await expect(page.locator("#live-empty")).to_have_text("No live calls.")
            await wait_for(lambda: len(firehoses) == 3, 10, "the page to reconnect")
            await expect(page.locator("#connection")).to_have_attribute("data-state", "live")

            # A refused stream: no retry loop, a plain message.
            await firehoses[2].close(code=1008, reason="unauthorized")
            await expect(page.locator("#connection")).to_have_attribute(
                "data-state", "unauthorized"
            )
            assert len(firehoses) == 3
            assert not problems, problems
        finally:
            await browser.close()


# ---------------------------------------------------------------- two real calls at once


async def test_two_live_calls_on_the_wallboard(
    chromium_path, server: Server, fake_acs: FakeAcs, tmp_path: Path
) -> None:
    from playwright.async_api import async_playwright, expect

    t_start = time.monotonic()
    register_recording(server, fake_acs, PAY)
    payment = padded(load_call_audio(FIXTURES / "payment_call.wav"), 15.0)  # the resume lands live
    support = padded(load_call_audio(FIXTURES / "support_call.wav"), 24.0)  # live while we sort

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=chromium_path, args=["--no-sandbox"], headless=True
        )
        replays: list[asyncio.Task] = []
        stream: asyncio.Task | None = None
        try:
            page, problems = await open_wallboard(browser, server)
            await expect(page.locator("#connection")).to_have_attribute(
                "data-state", "live", timeout=WAIT_MS
            )

            # What the stream says, to compare with the page at the end.
            events: list[dict] = []
            stream = asyncio.create_task(firehose_until_ended(server, {PAY, SUP}, events))
            replays = [
                asyncio.create_task(replay_call(f"{server.ws}/media", payment, PAY, speed=SPEED)),
                asyncio.create_task(replay_call(f"{server.ws}/media", support, SUP, speed=SPEED)),
            ]
            pay = page.locator(f'#live-body tr[data-call-id="{PAY}"]')
            sup = page.locator(f'#live-body tr[data-call-id="{SUP}"]')
            await expect(pay).to_be_visible(timeout=WAIT_MS)
            await expect(sup).to_be_visible(timeout=WAIT_MS)
            await expect(pay.locator("a.call-link")).to_have_attribute("href", f"/console/{PAY}")
            await expect(pay.locator(".col-agent")).to_have_text(AGENT_ID, timeout=WAIT_MS)
            await expect(sup.locator(".col-agent")).to_have_text(AGENT_ID, timeout=WAIT_MS)
            await expect(page.locator("#total-live")).to_have_text("2")

            # The payment call: the window opens and ACS pauses the recording.
            await expect(pay).to_have_attribute("data-payment", "open", timeout=WAIT_MS)
            await expect(pay).to_have_attribute("data-state", "payment")
            await expect(pay).to_have_attribute("data-recording", "paused", timeout=WAIT_MS)
            await page.screenshot(path=str(tmp_path / "wallboard-payment.png"), full_page=True)
            # (the window lasts seconds: a filter's effect, not its timing, is asserted)
            await page.get_by_label("In payment").check()
            await expect(sup).to_be_hidden()
            await page.get_by_label("In payment").uncheck()
            await expect(sup).to_be_visible()
            assert "open" in await changes(page, PAY, "data-payment")

            # The support call: the customer's phrases raise alerts.
            await expect(sup).to_have_attribute("data-alerts", "2", timeout=WAIT_MS)
            await expect(sup.locator(".latest .category")).to_have_text("timing")
            await expect(sup.locator(".latest .pill.severity")).to_have_text("medium")
            await expect(sup).to_have_attribute("data-severity", "high")
            await expect(pay).to_have_attribute("data-alerts", "0")
            await expect(page.locator("#total-alerting")).to_have_text("1")

            # Sorting (alerts, worst first, is the default) and filtering.
            assert await order(page) == [SUP, PAY]
            call_header = page.locator('th[data-sort="call"]')
            await call_header.get_by_role("button").click()
            await expect(call_header).to_have_attribute("aria-sort", "ascending")
            assert await order(page) == [PAY, SUP]
            await call_header.get_by_role("button").click()
            await expect(call_header).to_have_attribute("aria-sort", "descending")
            assert await order(page) == [SUP, PAY]
            await call_header.get_by_role("button").click()
            await page.get_by_role("button", name="Alerts").click()
            await expect(page.locator('th[data-sort="alerts"]')).to_have_attribute(
                "aria-sort", "descending"
            )
            assert await order(page) == [SUP, PAY]
            await page.get_by_label("Alerting only").check()
            await expect(pay).to_be_hidden()
            await expect(sup).to_be_visible()
            await expect(page.locator("#live-status")).to_have_text("2 live calls, 1 shown.")
            await page.get_by_label("Alerting only").uncheck()
            await expect(pay).to_be_visible()
            await page.get_by_role("searchbox", name="Filter").fill("outage")
            await expect(pay).to_be_hidden()
            await expect(sup).to_be_visible()
            await page.get_by_role("searchbox", name="Filter").fill(PAY)
            await expect(sup).to_be_hidden()
            await expect(pay).to_be_visible()
            await page.get_by_role("searchbox", name="Filter").fill("")
            await expect(sup).to_be_visible()

            # Sentiment now, the trend (analytics every second), the duration ticking.
            for row in (pay, sup):
                await expect(row.locator('.score[data-role="agent"]')).to_have_attribute(
                    "data-score", re.compile(r"^[+−]\d\.\d\d$"), timeout=WAIT_MS
                )
            await expect(sup.locator(".trend")).to_have_attribute(
                "data-customer", re.compile(r"[+−]\d\.\d\d"), timeout=WAIT_MS
            )
            shown = await sup.locator(".col-duration").text_content()
            await expect(sup.locator(".col-duration")).not_to_have_text(shown or "", timeout=5000)
            await page.screenshot(path=str(tmp_path / "wallboard.png"), full_page=True)

            # The payment closes and the recording resumes; then the calls end.
            await expect(pay).to_have_attribute("data-payment", "closed", timeout=WAIT_MS)
            await expect(pay).to_have_attribute("data-recording", "active", timeout=WAIT_MS)
            # (in that order; a pause ACS has not confirmed yet may show in between)
            payments = await changes(page, PAY, "data-payment")
            assert payments[0] == "open" and payments[-1] == "closed", payments
            recording = await changes(page, PAY, "data-recording")
            assert recording.index("paused") < len(recording) - 1 and recording[-1] == "active", (
                recording
            )
            await asyncio.gather(*replays)
            await asyncio.wait_for(stream, 60)

            recent_pay = page.locator(f'#recent-body tr[data-call-id="{PAY}"]')
            recent_sup = page.locator(f'#recent-body tr[data-call-id="{SUP}"]')
            await expect(recent_sup).to_have_attribute("data-final", "true", timeout=WAIT_MS)
            await expect(recent_pay).to_have_attribute("data-final", "true", timeout=WAIT_MS)
            await expect(page.locator("#live-body tr")).to_have_count(0)
            await expect(page.locator("#live-empty")).to_be_visible()
            await page.screenshot(path=str(tmp_path / "wallboard-ended.png"), full_page=True)

            # The page shows what the stream said.
            final = {e["callId"]: e for e in events if e["type"] == "analytics" and e.get("final")}
            alerts = [e for e in events if e["type"] == "alert" and e["callId"] == SUP]
            assert [(a["category"], a["severity"]) for a in alerts] == [
                ("outage", "high"),
                ("timing", "medium"),
            ], alerts
            assert not [e for e in events if e["type"] == "alert" and e["callId"] == PAY]
            assert final[SUP]["categories"] == {"outage": 1, "timing": 1}
            for call_id, row in ((PAY, recent_pay), (SUP, recent_sup)):
                names = sorted(
                    final[call_id]["categories"],
                    key=lambda n: (-final[call_id]["categories"][n], n),
                )
                await expect(row).to_have_attribute("data-categories", ",".join(names))
            await expect(recent_sup).to_have_attribute("data-alerts", str(len(alerts)))
            await expect(recent_sup.locator(".pill.category")).to_have_count(2)
            assert not problems, problems
        finally:
            for task in [*replays, stream]:
                if task is not None:
                    task.cancel()
            await browser.close()
    print(f"wallboard browser test: {time.monotonic() - t_start:.1f} s; screenshots in {tmp_path}")


async def firehose_until_ended(server: Server, call_ids: set[str], into: list[dict]) -> None:
    """`WS /events?since=0` (an admin's) until every call in ``call_ids`` has ended."""
    waiting = set(call_ids)
    async with connect(
        f"{server.ws}/events?since=0", additional_headers=bearer(ADMIN), max_size=None
    ) as ws:
        async for raw in ws:
            ev = json.loads(raw)
            if ev["callId"] in call_ids:
                into.append(ev)
                if ev["type"] == "call.ended":
                    waiting.discard(ev["callId"])
                    if not waiting:
                        return
