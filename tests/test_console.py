"""The agent console (`/console`, `/console/{callId}`): the pages as served, and the live
page in a real browser (Debian's chromium, headless, driven by Playwright) while the
payment call is replayed in real time against a real server and a fake of ACS."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import time
import tomllib
import urllib.request
import wave
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path

import pytest
from azure.communication.callautomation import CallAutomationClient
from azure.core.credentials import AzureKeyCredential

from models.settings import load_settings
from pipeline.api import console_routes
from pipeline.api.app import create_app
from pipeline.cli.replay import CallAudio, load_call_audio, replay_call
from pipeline.service import Service

from .conftest import FIXTURES, KeptDemo, collect_call_events, start_server, wait_for
from .fake_acs import FakeAcs
from .fake_openai import FakeOpenAI

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
WAIT_MS = 30_000  # one Playwright wait; generous for a loaded 2-core machine

# ---------------------------------------------------------------- the pages, without a browser


async def asgi_get(app, path: str) -> tuple[int, dict[str, str], bytes]:
    """One GET through the ASGI app, in process (no lifespan needed for static pages)."""
    sent: list[dict] = []
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "headers": [(b"host", b"127.0.0.1")], "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }  # fmt: skip

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    headers = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], headers, body


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def find(self, tag: str, **want: str) -> list[dict[str, str | None]]:
        return [
            a
            for t, a in self.tags
            if t == tag and all(a.get(k.replace("_", "-")) == v for k, v in want.items())
        ]


def parse(body: bytes) -> _Page:
    page = _Page()
    page.feed(body.decode())
    return page


def assert_no_external_urls(page: _Page) -> None:
    for tag, attrs in page.tags:
        for name in ("src", "href", "action", "srcset", "poster", "data"):
            value = attrs.get(name)
            if value is None:
                continue
            assert "http" not in value.lower() and not value.startswith("//"), (tag, name, value)
            assert value.startswith(("/", "#")), (
                f"{tag} {name}={value!r} is not a path on this service"
            )


async def test_console_pages_are_served_with_landmarks_and_nothing_external(tmp_path) -> None:
    app = create_app(Service(load_settings(overrides={"data_dir": str(tmp_path)})))

    status, headers, body = await asgi_get(app, "/console")
    assert status == 200 and headers["content-type"].startswith("text/html")
    index = parse(body)
    assert index.find("html", lang="en")
    for landmark in ("header", "nav", "main", "footer"):
        assert index.find(landmark), landmark
    assert index.find("button", type="button", id="refresh")
    assert index.find("table", id="calls") and index.find("th", scope="col")
    assert_no_external_urls(index)
    csp = headers["content-security-policy"]
    assert (
        "default-src 'none'" in csp and "script-src 'self'" in csp and "connect-src 'self'" in csp
    )

    # The call id is read by the script from the address: nothing of the request is in the page.
    status, headers, body = await asgi_get(app, "/console/%3Cscript%3Ealert(1)%3C%2Fscript%3E")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b"alert" not in body
    call = parse(body)
    assert call.find("html", lang="en")
    for landmark in ("header", "nav", "main", "aside", "footer"):
        assert call.find(landmark), landmark
    [transcript] = call.find("ol", id="transcript")
    assert transcript["aria-live"] == "polite" and transcript.get("aria-label")
    assert call.find("button", type="button", id="pause") and call.find(
        "button", type="button", id="resume"
    )
    assert "Pause recording" in body.decode() and "Resume recording" in body.decode()
    [banner] = call.find("section", id="banner")
    assert banner["aria-labelledby"] == "banner-heading"
    assert call.find("p", id="banner-text", role="status")
    assert call.find("p", id="connection", role="status")
    assert call.find("script", src="/console/static/console.js", defer="") or call.find(
        "script", src="/console/static/console.js"
    )
    assert_no_external_urls(call)

    for name, media in (
        ("console.js", "text/javascript"),
        ("console.css", "text/css"),
        ("icon.svg", "image/svg+xml"),
    ):
        status, headers, body = await asgi_get(app, f"/console/static/{name}")
        assert status == 200 and headers["content-type"].startswith(media), name
        assert headers["x-content-type-options"] == "nosniff"
        text = body.decode()
        if name != "icon.svg":  # (an SVG names its XML namespace, which is never fetched)
            assert not re.search(r"https?://", text), f"{name} refers to another site"
    script = (await asgi_get(app, "/console/static/console.js"))[2].decode()
    assert (
        "innerHTML" not in script
        and "outerHTML" not in script
        and "insertAdjacentHTML" not in script
    )
    assert "eval(" not in script and "document.write" not in script
    assert "@import" not in (await asgi_get(app, "/console/static/console.css"))[2].decode()

    for bad in (
        "/console/static/nope.js",
        "/console/static/..%2Fapp.py",
        "/console/static/call.html",
    ):
        assert (await asgi_get(app, bad))[0] == 404, bad


def test_console_files_ship_as_package_data() -> None:
    folder = resources.files("pipeline.api") / "console"
    for name in ("index.html", "call.html", "console.css", "console.js", *console_routes.STATIC):
        assert (folder / name).is_file(), name
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "console/*" in config["tool"]["setuptools"]["package-data"]["pipeline.api"]
    assert any(
        d.startswith("playwright") for d in config["project"]["optional-dependencies"]["test"]
    )


# ---------------------------------------------------------------- `callstream demo --keep`


def test_demo_prints_the_console_url_and_keeps_serving_until_ctrl_c(tmp_path) -> None:
    with wave.open(str(FIXTURES / "support_call.wav"), "rb") as src:
        head = src.readframes(src.getframerate() * 3)  # the first 3 s: a short call
        params = src.getparams()
    short = tmp_path / "short_call.wav"
    with wave.open(str(short), "wb") as out:
        out.setparams(params)
        out.writeframes(head)
    with KeptDemo(short, tmp_path / "demo", dict(os.environ), timeout=180) as demo:
        url = demo.read_until("console: http://").split("console: ", 1)[1].strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/console/demo-short-call-[0-9a-f]{6}", url), (
            url
        )
        call_id = url.rsplit("/", 1)[1]  # each demo run is a new call
        with urllib.request.urlopen(url, timeout=10) as r:
            assert r.status == 200 and b'id="transcript"' in r.read()
        demo.read_until("press Ctrl-C")
        base = url.rsplit("/console/", 1)[0]
        with urllib.request.urlopen(base + "/calls", timeout=10) as r:
            calls = json.loads(r.read())["calls"]
        assert [c["callId"] for c in calls] == [call_id] and calls[0]["endedAt"]
        time.sleep(0.5)  # a negative check: a demo that did not keep serving would have exited
        assert demo.proc.poll() is None, "the demo exited after the replay"
        with urllib.request.urlopen(base + "/console", timeout=10) as r:
            assert r.status == 200  # still serving after the replay
        output = demo.stop()
    assert demo.proc.returncode == 0, output
    assert "verify: OK" in output and "Traceback" not in output


# ---------------------------------------------------------------- the live page in a browser

# Records every data-state change of a transcript bubble, on the element itself: a partial
# replaced by its final is the same element going from "partial" to "final".
OBSERVER = """
window.__stateChanges = [];
new MutationObserver((records) => {
  for (const r of records) {
    window.__stateChanges.push({id: r.target.dataset.utteranceId, from: r.oldValue, to: r.target.dataset.state});
  }
}).observe(document, {subtree: true, attributes: true, attributeFilter: ["data-state"], attributeOldValue: true});
"""

BUBBLES = """() => [...document.querySelectorAll('#transcript li.bubble')].map((li) => ({
  id: li.dataset.utteranceId, role: li.dataset.role, state: li.dataset.state,
  text: li.querySelector('.text').textContent, sentiment: li.dataset.sentiment || null,
  translations: [...li.querySelectorAll('.translations li')].map((t) => [t.dataset.language, t.querySelector('.translated').textContent]),
}))"""

GAUGES = """() => Object.fromEntries([...document.querySelectorAll('.gauge')].map((g) => [g.dataset.participant, [g.dataset.role, g.dataset.score]]))"""


def register_recording(server, fake: FakeAcs, call_id: str) -> str:
    """A recording started elsewhere, through the real SDK, registered for the call."""
    client = CallAutomationClient(fake.endpoint, AzureKeyCredential(fake.access_key), retry_total=0)
    recording_id = client.start_recording(server_call_id=f"server-{call_id}").recording_id
    assert server.post_json(f"/calls/{call_id}/recording", {"recordingId": recording_id})[0] == 200
    return recording_id


def padded(audio: CallAudio, seconds: float) -> CallAudio:
    """The call with silence after it: the call stays live a while after the payment ends."""
    pad = b"\0" * (int(audio.rate * seconds) * 2)
    return CallAudio(audio.rate, [(pid, pcm + pad) for pid, pcm in audio.tracks])


def shown(score: float) -> str:
    return f"{'+' if score >= 0 else '-'}{abs(score):.2f}"


@pytest.fixture
def chromium_path() -> str:
    if not os.path.exists(CHROMIUM):
        pytest.skip(
            "chromium is not installed (bash install.sh --test installs it; no browser is downloaded)"
        )
    return CHROMIUM


async def test_live_console_in_a_browser_during_the_payment_call(chromium_path, tmp_path) -> None:
    from playwright.async_api import async_playwright, expect

    t_start = time.monotonic()
    call_id = "console-payment-call"
    with FakeAcs() as fake, FakeOpenAI() as llm:
        server = start_server(
            tmp_path, CALLSTREAM_STT="local",
            CALLSTREAM_ACS_ENDPOINT=fake.endpoint, CALLSTREAM_ACS_KEY=fake.access_key,
            CALLSTREAM_MEDIA_AUTH="off",  # the replay carries no ACS token (tests/test_security.py does)
            OPENAI_API_KEY=llm.api_key, OPENAI_BASE_URL=llm.base_url,
            CALLSTREAM_TRANSLATOR="openai", CALLSTREAM_TRANSLATE_TO="de",
        )  # fmt: skip
        try:
            register_recording(server, fake, call_id)
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(
                    executable_path=chromium_path, args=["--no-sandbox"], headless=True
                )
                try:
                    await run_browser_checks(browser, expect, server, fake, call_id, tmp_path)
                finally:
                    await browser.close()
        finally:
            server.stop()
    print(f"console browser test: {time.monotonic() - t_start:.1f} s")


async def run_browser_checks(
    browser, expect, server, fake: FakeAcs, call_id: str, tmp_path: Path
) -> None:
    page = await browser.new_page(viewport={"width": 1280, "height": 1000})
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on(
        "console",
        lambda msg: (
            problems.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None
        ),
    )
    await page.add_init_script(OBSERVER)

    # The page is open before the call starts; it waits, then follows the call live.
    await page.goto(f"{server.http}/console/{call_id}")
    await expect(page.locator("#call-id")).to_have_text(call_id)
    await expect(page.locator("#connection")).to_have_attribute(
        "data-state", re.compile("live|waiting"), timeout=WAIT_MS
    )
    await expect(page.locator("#banner-text")).to_have_text("No payment in progress")

    audio = padded(load_call_audio(FIXTURES / "payment_call.wav"), 20.0)
    replay = asyncio.create_task(replay_call(f"{server.ws}/media", audio, call_id, speed=2.0))
    collector: asyncio.Task | None = None
    try:
        # The whole call as the stream tells it, to compare with the page: ?since=0 replays
        # from seq 1 whenever it attaches, so no wait for the subscription. Opened once the
        # call is live (a stream of a call that has not started is closed after 2 s idle).
        await wait_for(
            lambda: any(c["callId"] == call_id and c["live"] for c in server.get_json("/calls")[1]["calls"]),
            30, "the call to start",
        )  # fmt: skip
        collector = asyncio.create_task(collect_call_events(server.ws, call_id, since=0))
        # Both roles speak; the agent's intent phrase opens the payment window and ACS pauses.
        await expect(page.locator('#transcript li.bubble[data-role="agent"]').first).to_be_visible(
            timeout=WAIT_MS
        )
        banner = page.locator("#banner")
        await expect(page.locator("#banner-text")).to_have_text(
            "Payment in progress — recording paused", timeout=WAIT_MS
        )
        await expect(banner).to_have_attribute("data-payment", "open")
        await expect(banner).to_have_attribute("data-recording", "paused")
        await expect(
            page.locator('#transcript li.bubble[data-role="customer"][data-state="final"]').first
        ).to_be_visible(timeout=WAIT_MS)
        await page.screenshot(path=str(tmp_path / "console-payment.png"), full_page=True)

        # The closing phrase ends the window and the recording resumes.
        await expect(banner).to_have_attribute("data-payment", "closed", timeout=WAIT_MS)
        await expect(banner).to_have_attribute("data-recording", "active", timeout=WAIT_MS)
        await expect(page.locator("#banner-text")).to_have_text(
            "No payment in progress — recording on"
        )

        # Once the closing line is final (its final would close a window opened before it)
        # and while the call is still live (silence after the script), the agent pauses by
        # hand, with the keyboard.
        closing = page.locator('#transcript li.bubble[data-role="agent"][data-state="final"]').last
        await expect(closing).to_have_attribute(
            "data-start-ms", re.compile(r"^(29|3\d)\d{3}$"), timeout=WAIT_MS
        )
        await expect(page.locator('#transcript li.bubble[data-state="partial"]')).to_have_count(
            0, timeout=WAIT_MS
        )
        pauses_before = len(fake.of("pause"))
        pause = page.get_by_role("button", name="Pause recording")
        await expect(pause).to_be_enabled()
        await pause.focus()
        await page.keyboard.press("Enter")
        await wait_for(
            lambda: len(fake.of("pause")) > pauses_before, 15, "the console's pause to reach ACS"
        )
        await expect(page.locator("#control-status")).to_have_attribute(
            "data-result", "changed", timeout=WAIT_MS
        )
        await expect(banner).to_have_attribute("data-payment", "open", timeout=WAIT_MS)
        await expect(page.locator("#banner-detail")).to_contain_text("Opened by the agent")
        await expect(page.locator("#banner-text")).to_have_text(
            "Payment in progress — recording paused", timeout=WAIT_MS
        )

        await replay
        events = await asyncio.wait_for(collector, 60)
    finally:
        replay.cancel()
        if collector is not None:
            collector.cancel()
    await expect(page.locator("#connection")).to_have_attribute(
        "data-state", "ended", timeout=WAIT_MS
    )
    await expect(pause).to_be_disabled()
    await expect(page.locator("#banner-text")).to_have_text(re.compile("^Call ended"))
    await page.screenshot(path=str(tmp_path / "console.png"), full_page=True)
    print(f"console screenshots: {tmp_path / 'console-payment.png'} and {tmp_path / 'console.png'}")

    # What the page shows is exactly what the stream said.
    finals = {e["utteranceId"]: e for e in events if e["type"] == "transcript.final"}
    partial_ids = {e["utteranceId"] for e in events if e["type"] == "transcript.partial"}
    bubbles = await page.evaluate(BUBBLES)
    assert [b["id"] for b in bubbles] == sorted(finals, key=lambda u: finals[u]["startMs"]), (
        "one bubble per utterance, in order"
    )
    for b in bubbles:
        ev = finals[b["id"]]
        assert (b["role"], b["state"], b["text"]) == (ev["role"], "final", ev["text"])
    assert {b["role"] for b in bubbles} == {"agent", "customer"}
    assert all(b["text"].strip() for b in bubbles)
    assert any("[" in b["text"] for b in bubbles if b["role"] == "customer"), (
        "the card number shows redacted"
    )
    assert "1111" not in await page.locator("#transcript").inner_text()

    # Partials were shown and replaced in place by their finals.
    changes = await page.evaluate("window.__stateChanges")
    replaced = {c["id"] for c in changes if c["from"] == "partial" and c["to"] == "final"}
    assert replaced and replaced <= partial_ids, changes
    assert await page.locator('#transcript li.bubble[data-replaced-partial="true"]').count() == len(
        replaced
    )

    # Sentiment on each line, a rolling gauge per participant, translations under the lines.
    sentiments = {e["utteranceId"]: e for e in events if e["type"] == "sentiment"}
    for b in bubbles:
        if b["id"] in sentiments:
            assert b["sentiment"] == sentiments[b["id"]]["label"]
    rolling = {e["participant"]: e["rollingScore"] for e in events if e["type"] == "sentiment"}
    roles = {e["participant"]: e["role"] for e in events if e["type"] == "participant.joined"}
    gauges = await page.evaluate(GAUGES)
    assert gauges == {p: [roles[p], shown(score)] for p, score in rolling.items()}
    assert {role for role, _ in gauges.values()} == {"agent", "customer"}
    translations: dict[str, list[list[str]]] = {}
    for e in events:
        if e["type"] == "translation":
            translations.setdefault(e["utteranceId"], []).append([e["language"], e["text"]])
    assert translations, "the fake model translates every final"
    for b in bubbles:
        assert b["translations"] == translations.get(b["id"], [])
    await expect(
        page.locator('.translations li[data-language="de"] .translated[lang="de"]').first
    ).to_be_visible()
    await expect(page.locator("#summary")).to_have_text(
        next(e["text"] for e in events if e["type"] == "summary")
    )
    last_seq = events[-1]["seq"]
    assert await page.evaluate("document.body.dataset.lastSeq") == str(last_seq)
    assert not problems, problems

    await check_list_and_resume(browser, expect, server, call_id, bubbles, gauges, last_seq)


async def check_list_and_resume(
    browser, expect, server, call_id: str, bubbles: list, gauges: dict, last_seq: int
) -> None:
    """The call list links to the call; a page that loses its stream, is sent a duplicate and
    a `lagged` notice, ends up showing exactly the same call, asking each time from the last
    seq it applied."""
    page = await browser.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    urls: list[str] = []

    async def route(ws) -> None:
        n = len(urls)
        urls.append(ws.url)
        upstream = ws.connect_to_server()
        count = 0

        async def from_server(message: str) -> None:
            nonlocal count
            count += 1
            if n == 0:  # ten events (the fifth twice), then a lagged notice; the rest is dropped
                if count <= 10:
                    ws.send(message)
                    if count == 5:
                        ws.send(message)
                elif count == 11:
                    ws.send(
                        json.dumps(
                            {
                                "type": "lagged",
                                "callId": call_id,
                                "seq": 40,
                                "time": "",
                                "missedFrom": 11,
                                "missedTo": 40,
                            }
                        )
                    )
            elif n == 1:  # ten more, then the connection drops
                if count <= 10:
                    ws.send(message)
                elif count == 11:
                    await ws.close(code=1001, reason="gone")
            else:
                ws.send(message)

        upstream.on_message(from_server)

    await page.route_web_socket(re.compile(r"/calls/.+/events"), route)
    await page.goto(f"{server.http}/console")
    link = page.get_by_role("link", name=call_id)
    await expect(link).to_be_visible(timeout=WAIT_MS)
    await expect(page.locator(f'tr[data-call-id="{call_id}"]')).to_contain_text("Ended")
    await link.click()
    await expect(page).to_have_url(f"{server.http}/console/{call_id}")
    await expect(page.locator("#connection")).to_have_attribute(
        "data-state", "ended", timeout=WAIT_MS
    )
    assert [u.rsplit("?", 1)[1] for u in urls] == ["since=0", "since=10", "since=20"], urls
    assert await page.evaluate(BUBBLES) == bubbles
    assert await page.evaluate(GAUGES) == gauges
    assert await page.evaluate("document.body.dataset.lastSeq") == str(last_seq)
    await expect(page.get_by_role("button", name="Pause recording")).to_be_disabled()
    assert not problems, problems
    await page.close()
