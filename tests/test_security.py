"""Security, through real `callstream serve` processes and real websockets.

- ``/media`` takes only ACS's RS256 JWT (issuer, audience, expiry, key from a local JWKS);
  anything else is closed with 1008, and counted.
- ``CALLSTREAM_API_TOKENS`` guards the event stream and the read/control API (401 with
  ``WWW-Authenticate: Bearer``, or 1008), not health, metrics or the console's static files;
  the console gets its token as an HttpOnly cookie, in a real browser too.
- ``/acs/*`` needs the callback secret, which callstream puts into the URLs it hands to ACS;
  with an audience, ``/acs/callbacks`` also needs ACS's signed JWT (tests/test_callback_auth.py).
- No token, secret or key reaches the server's log.

The module's tests share one server and run in file order; the last one reads its log.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
import wave
from collections.abc import Iterator

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from pipeline.cli.replay import audio_message, metadata_message

from .conftest import (
    KeptDemo,
    Server,
    collect_call_events,
    start_server,
    start_subscribers,
    wait_for,
    wait_subscribed,
)
from .fake_acs import (
    FakeAcs,
    cloud_event,
    event_grid_validation,
    post_cloud_events,
    post_event_grid,
)
from .fake_jwks import ACS_AUDIENCE, FakeJwks, new_rsa_key
from .test_e2e_media import _transcription

API_TOKEN = "api-" + secrets.token_urlsafe(24)
OTHER_API_TOKEN = "api-" + secrets.token_urlsafe(24)
CALLBACK_SECRET = "cb-" + secrets.token_urlsafe(24)
AGENT = "8:acs:agent-7"
CUSTOMER = "4:+15551234"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

USED_CREDENTIALS: list[str] = []  # every token and secret sent to the server, for the log check


@pytest.fixture(scope="module")
def jwks() -> Iterator[FakeJwks]:
    with FakeJwks() as fake:
        yield fake


@pytest.fixture(scope="module")
def fake_acs(jwks: FakeJwks) -> Iterator[FakeAcs]:
    # Signs its callbacks with the keys the server checks media tokens against (ACS's).
    with FakeAcs(jwks=jwks) as fake:
        yield fake


def acs_env(fake: FakeAcs, jwks: FakeJwks) -> dict[str, str]:
    return {
        "CALLSTREAM_STT": "acs",
        "CALLSTREAM_ACS_ENDPOINT": fake.endpoint,
        "CALLSTREAM_ACS_KEY": fake.access_key,
        "CALLSTREAM_ACS_AUDIENCE": ACS_AUDIENCE,
        "CALLSTREAM_ACS_JWKS_URL": jwks.url,
    }


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, fake_acs: FakeAcs, jwks: FakeJwks
) -> Iterator[Server]:
    # ACS is configured and CALLSTREAM_MEDIA_AUTH is unset: acs-jwt by default.
    s = start_server(
        tmp_path_factory.mktemp("security"),
        CALLSTREAM_API_TOKENS=f"{OTHER_API_TOKEN}, {API_TOKEN}",
        CALLSTREAM_CALLBACK_SECRET=CALLBACK_SECRET,
        **acs_env(fake_acs, jwks),
    )
    USED_CREDENTIALS.extend([API_TOKEN, OTHER_API_TOKEN, CALLBACK_SECRET, fake_acs.access_key])
    yield s
    s.stop()


def request(
    server: Server,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
):
    """(status, lower-cased headers, body) without following redirects."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def closed_with(url: str, headers: dict[str, str] | None = None) -> tuple[int | None, str]:
    """Open a websocket and wait for the server to close it: (code, reason) the client saw."""
    async with connect(url, additional_headers=headers or {}, open_timeout=10) as ws:
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 10)
    rcvd = info.value.rcvd
    return (rcvd.code, rcvd.reason) if rcvd else (None, "")


async def stays_open(ws, seconds: float = 0.7) -> bool:
    try:
        await asyncio.wait_for(ws.recv(), seconds)
    except TimeoutError:
        return True
    except ConnectionClosed:
        return False
    return True  # it sent something: open


def media_headers(call_id: str, token: str | None) -> dict[str, str]:
    headers = {"x-ms-call-connection-id": call_id}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
        USED_CREDENTIALS.append(token)
    return headers


async def short_call(server: Server, call_id: str, token: str) -> None:
    """ACS frames over /media: metadata, a second of audio, two transcription finals."""
    async with connect(
        f"{server.ws}/media", additional_headers=media_headers(call_id, token)
    ) as ws:
        await ws.send(metadata_message(16000).decode())
        for i in range(50):
            ts = f"2026-01-01T00:00:{i // 50:02d}.{(i % 50) * 20:03d}Z"
            await ws.send(audio_message(b"\x01\x00" * 320, AGENT, ts).decode())
        await ws.send(_transcription("thanks for calling how can I help", "Final", AGENT, 0))
        await ws.send(_transcription("I have a question about my bill", "Final", CUSTOMER, 2000))


def refused_count(server: Server) -> float:
    server.token = API_TOKEN
    metrics = server.get_bytes("/metrics").decode()
    match = re.search(r"^callstream_media_auth_refused(?:_total)? (\S+)$", metrics, re.M)
    assert match, "the refusal counter is exported"
    return float(match.group(1))


# ---------------------------------------------------------------- /media: the ACS JWT


async def test_media_with_a_valid_acs_token_is_accepted_and_the_call_starts(
    server: Server, jwks: FakeJwks
) -> None:
    call_id = "jwt-good-call"
    [collector] = await start_subscribers(
        server, collect_call_events(server.ws, call_id, token=API_TOKEN, timeout=60)
    )
    await short_call(server, call_id, jwks.token())
    events = await collector
    kinds = [e["type"] for e in events]
    assert kinds[0] == "call.started" and kinds[-1] == "call.ended", kinds
    assert [e["text"] for e in events if e["type"] == "transcript.final"] == [
        "thanks for calling how can I help", "I have a question about my bill",
    ]  # fmt: skip
    assert jwks.fetches >= 1


def _bad_tokens(jwks: FakeJwks) -> dict[str, str | None]:
    return {
        "missing": None,
        "expired": jwks.token(expires_in=-600),
        "wrong audience": jwks.token(audience="11111111-2222-3333-4444-555555555555"),
        "wrong issuer": jwks.token(issuer="https://evil.example.com"),
        "no expiry": jwks.token(expires_in=None),
        "unsigned (alg none)": jwks.unsigned_token(),
        "HS256": jwks.token(algorithm="HS256", key="a-shared-secret-that-is-long-enough-for-hs256"),
        "another key, same kid": jwks.token(key=new_rsa_key()),
        "another key, unknown kid": jwks.token(kid="rogue-key", key=new_rsa_key()),
        "not a JWT": "not-a-jwt",
    }


async def test_media_refuses_every_bad_token_with_1008(server: Server, jwks: FakeJwks) -> None:
    before = refused_count(server)
    bad = _bad_tokens(jwks)
    seen: dict[str, tuple[int | None, str]] = {}
    for what, token in bad.items():
        call_id = "jwt-bad-" + re.sub(r"\W+", "-", what)
        seen[what] = await closed_with(f"{server.ws}/media", media_headers(call_id, token))
    assert {w: code for w, (code, _) in seen.items()} == dict.fromkeys(bad, 1008), seen
    reasons = {w: r for w, (_, r) in seen.items()}
    assert reasons["expired"] == "token expired" and reasons["wrong audience"] == "wrong audience"
    assert (
        reasons["wrong issuer"] == "wrong issuer" and reasons["missing"] == "missing bearer token"
    )
    assert reasons["unsigned (alg none)"] == reasons["HS256"] == "unsupported token algorithm"
    assert reasons["another key, same kid"] == "bad signature"
    # No refused connection became a call, and each was counted.
    server.token = API_TOKEN
    status, doc = server.get_json("/calls")
    assert status == 200 and not [c for c in doc["calls"] if c["callId"].startswith("jwt-bad-")]
    assert refused_count(server) - before == len(bad)


async def test_media_auth_off_with_acs_configured_warns_at_start(
    tmp_path, fake_acs: FakeAcs, jwks: FakeJwks
) -> None:
    s = start_server(tmp_path, CALLSTREAM_MEDIA_AUTH="off", **acs_env(fake_acs, jwks))
    try:
        async with connect(
            f"{s.ws}/media", additional_headers={"x-ms-call-connection-id": "no-auth"}
        ) as ws:
            assert await stays_open(ws)  # accepted without a token
    finally:
        s.stop()
    assert "WARNING: media auth is OFF (CALLSTREAM_MEDIA_AUTH=off)" in s.logs()


def test_acs_jwt_without_an_audience_refuses_to_start(tmp_path, fake_acs: FakeAcs) -> None:
    env = {**os.environ, "CALLSTREAM_DATA_DIR": str(tmp_path), "CALLSTREAM_ACS_ENDPOINT": fake_acs.endpoint,
           "CALLSTREAM_ACS_KEY": fake_acs.access_key}  # fmt: skip
    env.pop("CALLSTREAM_ACS_AUDIENCE", None)
    env.pop("CALLSTREAM_MEDIA_AUTH", None)
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli.commands", "serve", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "CALLSTREAM_ACS_AUDIENCE" in done.stderr, done.stderr


def test_replay_sends_its_token_and_reports_a_refusal(
    server: Server, jwks: FakeJwks, tmp_path
) -> None:
    wav = tmp_path / "tone.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
        w.writeframes(b"\x10\x00" * 16000)

    def replay(*extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        args = [
            sys.executable,
            "-m",
            "pipeline.cli.commands",
            "replay",
            str(wav),
            "--url",
            f"{server.ws}/media",
            "--speed",
            "1",
            *extra,
        ]
        return subprocess.run(
            args, capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})}
        )

    good = jwks.token()
    USED_CREDENTIALS.append(good)
    ok = replay("--call-id", "replay-with-token", "--token", good)
    assert ok.returncode == 0, ok.stderr
    by_env = replay("--call-id", "replay-token-from-env", env={"CALLSTREAM_REPLAY_TOKEN": good})
    assert by_env.returncode == 0, by_env.stderr
    refused = replay("--call-id", "replay-without-token")
    assert refused.returncode == 1 and "code 1008" in refused.stderr, refused.stderr


# ---------------------------------------------------------------- the API and the event stream

PROTECTED = [
    ("GET", "/calls"),
    ("GET", "/calls/jwt-good-call/transcript"),
    ("GET", "/calls/jwt-good-call/audit"),
    ("GET", "/calls/jwt-good-call/manifest"),
    ("GET", "/calls/_retention/audit"),
    ("POST", "/calls/jwt-good-call/known-entities"),
    ("POST", "/calls/jwt-good-call/recording"),
    ("POST", "/calls/jwt-good-call/recording/pause"),
    ("POST", "/calls/jwt-good-call/recording/resume"),
    ("POST", "/calls/jwt-good-call/hold"),
]


def test_api_needs_a_token(server: Server) -> None:
    for method, path in PROTECTED:
        body = b"{}" if method == "POST" else None
        status, headers, _ = request(server, method, path, body=body)
        assert status == 401 and headers["www-authenticate"].startswith("Bearer"), (
            method,
            path,
            status,
        )
        status, headers, _ = request(server, method, path, bearer("wrong-" + API_TOKEN), body)
        assert status == 401 and 'error="invalid_token"' in headers["www-authenticate"], (
            method,
            path,
        )
        for token in (API_TOKEN, OTHER_API_TOKEN):
            status, _, _ = request(server, method, path, bearer(token), body)
            assert status != 401, (method, path)
    status, _, body = request(server, "GET", "/calls", bearer(API_TOKEN))
    assert status == 200 and "jwt-good-call" in body.decode()
    status, _, body = request(server, "GET", "/calls/jwt-good-call/transcript", bearer(API_TOKEN))
    assert status == 200 and b"call.started" in body
    # Health, readiness, metrics and the console's static files stay open.
    for path in (
        "/healthz",
        "/readyz",
        "/metrics",
        "/console/static/console.js",
        "/console/static/console.css",
    ):
        assert request(server, "GET", path)[0] == 200, path


async def test_event_streams_need_a_token(server: Server, jwks: FakeJwks) -> None:
    for path in ("/events", "/calls/jwt-good-call/events?since=0"):
        assert (await closed_with(f"{server.ws}{path}"))[0] == 1008, path
        sep = "&" if "?" in path else "?"
        assert (await closed_with(f"{server.ws}{path}{sep}access_token=wrong"))[0] == 1008, path
        assert (await closed_with(f"{server.ws}{path}", bearer("wrong")))[0] == 1008, path

    # ?access_token= (what a browser can send) replays a stored call; `since` still applies.
    events = []
    async with connect(
        f"{server.ws}/calls/jwt-good-call/events?since=2&access_token={API_TOKEN}"
    ) as ws:
        async for raw in ws:
            events.append(json.loads(raw))
    assert events and events[0]["seq"] == 3 and events[-1]["type"] == "call.ended"

    # The firehose with the header sees a new call live.
    before = await asyncio.to_thread(server.subscribers)
    async with connect(f"{server.ws}/events", additional_headers=bearer(API_TOKEN)) as ws:
        await wait_subscribed(server, before + 1)
        await short_call(server, "firehose-call", jwks.token())
        async with asyncio.timeout(30):
            while (ev := json.loads(await ws.recv()))["type"] != "call.started":
                pass
    assert ev["callId"] == "firehose-call"


async def test_console_token_becomes_an_httponly_cookie(server: Server) -> None:
    assert request(server, "GET", "/console")[0] == 401
    assert request(server, "GET", "/console/jwt-good-call")[0] == 401
    assert request(server, "GET", "/console?token=wrong")[0] == 401
    status, headers, _ = request(
        server, "GET", f"/console/jwt-good-call?token={urllib.parse.quote(API_TOKEN)}&x=1"
    )
    assert status == 303 and headers["location"] == "/console/jwt-good-call?x=1"
    cookie = headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    jar = {"Cookie": cookie.split(";", 1)[0]}
    status, headers, body = request(server, "GET", "/console/jwt-good-call", jar)
    assert status == 200 and b'id="transcript"' in body
    assert "script-src 'self'" in headers["content-security-policy"]
    assert request(server, "GET", "/calls", jar)[0] == 200
    # A cross-site request with the cookie is refused (CSRF, cross-site websocket hijacking).
    origin = f"http://127.0.0.1:{server.port}"
    assert (
        request(
            server,
            "POST",
            "/calls/jwt-good-call/hold",
            {**jar, "Origin": "http://evil.example"},
            b"{}",
        )[0]
        == 401
    )
    assert (
        request(server, "POST", "/calls/no-such/hold", {**jar, "Origin": origin}, b"{}")[0] == 404
    )
    assert (await closed_with(f"{server.ws}/events", {**jar, "Origin": "http://evil.example"}))[
        0
    ] == 1008
    async with connect(
        f"{server.ws}/calls/jwt-good-call/events?since=0",
        additional_headers={**jar, "Origin": origin},
    ) as ws:
        first = json.loads(await ws.recv())
    assert first["type"] == "call.started"


@pytest.fixture
def chromium_path() -> str:
    if not os.path.exists(CHROMIUM):
        pytest.skip("chromium is not installed (bash install.sh --test installs it)")
    return CHROMIUM


async def test_console_with_a_token_in_a_browser(
    server: Server, jwks: FakeJwks, chromium_path: str
) -> None:
    from playwright.async_api import async_playwright, expect

    call_id = "browser-token-call"
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=chromium_path, args=["--no-sandbox"], headless=True
        )
        try:
            page = await browser.new_page()
            problems: list[str] = []
            page.on("pageerror", lambda exc: problems.append(str(exc)))
            await page.goto(f"{server.http}/console?token={urllib.parse.quote(API_TOKEN)}")
            assert page.url == f"{server.http}/console"  # the token left the address bar
            await expect(page.locator("#calls-body tr").first).to_be_visible(timeout=20_000)
            await expect(
                page.locator('#calls-body tr[data-call-id="jwt-good-call"]')
            ).to_have_count(1)
            assert await page.evaluate("document.cookie") == ""  # HttpOnly: no script reads it
            await page.goto(f"{server.http}/console/{call_id}")
            await expect(page.locator("#connection")).to_have_attribute(
                "data-state", re.compile("live|waiting"), timeout=20_000
            )
            # No wait for the page's subscription: the console asks for ?since=<last seq>
            # (0 here) and reconnects when closed, so it gets the call whenever it attaches.
            await short_call(server, call_id, jwks.token())
            final = page.locator('#transcript li.bubble[data-role="customer"][data-state="final"]')
            await expect(final).to_have_text(re.compile("question about my bill"), timeout=20_000)
            await expect(page.locator("#connection")).to_have_attribute(
                "data-state", "ended", timeout=20_000
            )
            assert not problems, problems
        finally:
            await browser.close()


def test_api_accepts_jwts_from_the_configured_issuer(tmp_path, jwks: FakeJwks) -> None:
    issuer, audience = "https://login.example.com/tenant/v2.0", "api://callstream"
    s = start_server(
        tmp_path, CALLSTREAM_STT="acs", CALLSTREAM_API_JWT_ISSUER=issuer,
        CALLSTREAM_API_JWT_AUDIENCE=audience, CALLSTREAM_API_JWKS_URL=jwks.url,
    )  # fmt: skip
    try:
        good = jwks.token(issuer=issuer, audience=audience, roles=["Callstream.Supervisor"])
        no_role = jwks.token(issuer=issuer, audience=audience)  # valid, but may do nothing
        bad = {
            "no token": None,
            "ACS's audience": jwks.token(issuer=issuer),
            "another issuer": jwks.token(issuer="https://evil.example.com", audience=audience),
            "expired": jwks.token(issuer=issuer, audience=audience, expires_in=-600),
            "HS256": jwks.token(issuer=issuer, audience=audience, algorithm="HS256", key="x" * 32),
            "unsigned": jwks.unsigned_token(),
        }
        USED_CREDENTIALS.extend([good, no_role, *(t for t in bad.values() if t)])
        assert request(s, "GET", "/calls", bearer(good))[0] == 200
        assert request(s, "GET", "/calls", bearer(no_role))[0] == 403
        for what, token in bad.items():
            assert request(s, "GET", "/calls", bearer(token) if token else {})[0] == 401, what
        with pytest.raises(ConnectionClosed) as refused:
            asyncio.run(closed_with_raise(f"{s.ws}/events?access_token={bad['expired']}"))
        assert refused.value.rcvd.code == 1008
    finally:
        s.stop()
    leaked = [t[:12] for t in [good, *bad.values()] if t and t in s.logs()]
    assert not leaked


async def closed_with_raise(url: str) -> None:
    async with connect(url) as ws:
        await asyncio.wait_for(ws.recv(), 10)


def test_demo_with_api_tokens_prints_a_console_url_that_works(tmp_path, fake_acs: FakeAcs) -> None:
    wav = tmp_path / "short.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
        w.writeframes(b"\x10\x00" * 32000)
    env = {
        **os.environ, "CALLSTREAM_API_TOKENS": API_TOKEN, "CALLSTREAM_STT": "acs",
        # ACS configured: media auth would default to acs-jwt, which the demo's replay cannot pass.
        "CALLSTREAM_ACS_ENDPOINT": fake_acs.endpoint, "CALLSTREAM_ACS_KEY": fake_acs.access_key,
    }  # fmt: skip
    with KeptDemo(wav, tmp_path / "demo", env, timeout=120) as demo:
        url = demo.read_until("console: http://").split("console: ", 1)[1].strip()
        assert re.fullmatch(
            r"http://127\.0\.0\.1:\d+/console/demo-short-[0-9a-f]{6}\?token=\S+", url
        ), url
        call_id = url.split("/console/", 1)[1].split("?", 1)[0]  # each demo run is a new call
        demo.read_until("press Ctrl-C")
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
        with opener.open(url, timeout=10) as r:  # the token becomes a cookie, then the page
            assert r.status == 200 and b'id="transcript"' in r.read() and "token=" not in r.url
        base = url.split("/console/", 1)[0]
        with opener.open(base + "/calls", timeout=10) as r:
            assert [c["callId"] for c in json.loads(r.read())["calls"]] == [call_id]
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(base + "/calls", timeout=10)
        assert refused.value.code == 401
        output = demo.stop()
    assert demo.proc.returncode == 0, output
    assert f"● call {call_id} started" in output and "Traceback" not in output


# ---------------------------------------------------------------- /acs/*: the callback secret


def test_acs_endpoints_need_the_callback_secret(server: Server, fake_acs: FakeAcs) -> None:
    disconnected = [
        cloud_event("CallDisconnected", {"callConnectionId": "unknown-call", "serverCallId": "s"})
    ]
    for path in ("/acs/callbacks", "/acs/events"):
        for query in ("", "?secret=", "?secret=wrong", f"?secret={CALLBACK_SECRET}x"):
            status, _ = post_event_grid(f"{server.http}{path}{query}", disconnected)
            assert status == 401, (path, query)
        # An API token is not the callback secret.
        status, _, _ = request(
            server, "POST", path, bearer(API_TOKEN), json.dumps(disconnected).encode()
        )
        assert status == 401
    # The secret and ACS's token (an audience is set): accepted, and ignored (an unknown call).
    signed = bearer(fake_acs.callback_token())
    USED_CREDENTIALS.append(signed["Authorization"].split()[1])
    url = f"{server.http}/acs/callbacks?secret={CALLBACK_SECRET}"
    assert post_cloud_events(url, disconnected, headers=signed) == 200
    # Event Grid validates the subscription through the URL the deployer gave it, secret included.
    assert post_event_grid(f"{server.http}/acs/events", event_grid_validation("code-1"))[0] == 401
    status, body = post_event_grid(
        f"{server.http}/acs/events?secret={CALLBACK_SECRET}", event_grid_validation("code-2")
    )
    assert (status, body) == (200, {"validationResponse": "code-2"})


async def test_the_callback_urls_handed_to_acs_carry_the_secret(
    server: Server, fake_acs: FakeAcs
) -> None:
    fake_acs.next_call_connection_id = "answered-call"
    status, _ = post_event_grid(
        f"{server.http}/acs/events?secret={CALLBACK_SECRET}", fake_acs.incoming_call()
    )
    assert status == 200
    await wait_for(lambda: fake_acs.of("start_recording"), 20, "the recording to start")
    assert fake_acs.wait_callbacks(5)
    expected = f"http://127.0.0.1:{server.port}/acs/callbacks?secret={CALLBACK_SECRET}"
    [answer] = fake_acs.answers
    assert answer["callbackUri"] == expected
    [start] = fake_acs.of("start_recording")
    assert start.body["recordingStateCallbackUri"] == expected
    # ACS's callbacks (CallConnected, MediaStreamingStarted, RecordingStateChanged) went to
    # exactly those URLs and were accepted.
    assert fake_acs.callbacks_sent and not fake_acs.callback_errors
    assert {(url, status) for url, _, status in fake_acs.callbacks_sent} == {(expected, 200)}


# ---------------------------------------------------------------- the log (keep this test last)


def test_no_token_secret_or_key_reaches_the_log(server: Server) -> None:
    logs = server.logs()
    assert "refused: token expired" in logs and "refused: missing or wrong callback secret" in logs
    assert USED_CREDENTIALS
    leaked = [c[:12] + "..." for c in set(USED_CREDENTIALS) if c and c in logs]
    assert not leaked, f"credentials in the server log: {leaked}"
    assert "BEGIN" not in logs and "PRIVATE KEY" not in logs
