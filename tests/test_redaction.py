"""The privacy boundary, with real Presidio (no mocks of the recognizers).

One Redactor per module: construction takes about half a second.
"""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.privacy.log_scrubber import ScrubbingFilter, install_log_scrubber, scrub
from pipeline.privacy.redaction import (
    FAILED_PLACEHOLDER,
    RedactionResult,
    Redactor,
    get_redactor,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def redactor() -> Redactor:
    return get_redactor()


def assert_spans_consistent(text: str, result: RedactionResult) -> None:
    """Output spans point exactly at their tags; input spans at the original values."""
    assert len(result.redactions) == len(result.entities)
    for r, e in zip(result.redactions, result.entities, strict=True):
        assert result.text[r.start : r.end] == f"[{r.type}]"
        assert r.type == e.type
        assert 0 <= e.start < e.end <= len(text)
    starts = [r.start for r in result.redactions]
    assert starts == sorted(starts)


@pytest.mark.parametrize(
    ("text", "value", "entity"),
    [
        (
            "you can email me at jane.roe@example.com thanks",
            "jane.roe@example.com",
            "EMAIL_ADDRESS",
        ),
        ("my card is 4111 1111 1111 1111 expiry soon", "4111 1111 1111 1111", "CREDIT_CARD"),
        ("the card number is 4111-1111-1111-1111 ok", "4111-1111-1111-1111", "CREDIT_CARD"),
        ("the long number 4111111111111111 is on the front", "4111111111111111", "CREDIT_CARD"),
        ("call me back on (212) 555-0123 please", "(212) 555-0123", "PHONE_NUMBER"),
        ("my phone number is 212 555 0123", "212 555 0123", "PHONE_NUMBER"),
        ("my social security number is 536-22-8726", "536-22-8726", "US_SSN"),
        (
            "my IBAN is GB82 WEST 1234 5698 7654 32 thanks",
            "GB82 WEST 1234 5698 7654 32",
            "IBAN_CODE",
        ),
        ("the server was 192.168.10.24 I think", "192.168.10.24", "IP_ADDRESS"),
        ("go to www.example.com and log in", "www.example.com", "URL"),
    ],
)
def test_entities_are_replaced_by_square_bracket_tags(
    redactor: Redactor, text: str, value: str, entity: str
) -> None:
    result = redactor.redact(text)

    assert value not in result.text
    assert f"[{entity}]" in result.text
    assert "<" not in result.text and ">" not in result.text
    assert_spans_consistent(text, result)
    [e] = [e for e in result.entities if e.type == entity]
    assert text[e.start : e.end] == value
    assert e.score >= 0.4
    # Everything outside the entity is untouched.
    assert result.text == text.replace(value, f"[{entity}]")


def test_several_entities_in_one_utterance(redactor: Redactor) -> None:
    text = (
        "Hi, it's 4111-1111-1111-1111, email john.doe@example.com, "
        "phone +44 20 7946 0958, and SSN 536-22-8726."
    )
    result = redactor.redact(text)

    assert result.text == (
        "Hi, it's [CREDIT_CARD], email [EMAIL_ADDRESS], phone [PHONE_NUMBER], and SSN [US_SSN]."
    )
    assert [r.type for r in result.redactions] == [
        "CREDIT_CARD",
        "EMAIL_ADDRESS",
        "PHONE_NUMBER",
        "US_SSN",
    ]
    assert_spans_consistent(text, result)


@pytest.mark.parametrize(
    "text",
    [
        "I'd like to book an appointment at 3 pm for 2 people",
        "okay so. i'll call you back tomorrow at nine. thanks.bye",
        "order 12345678 shipped on 2024-05-01 and arrives in 3 to 5 days",
        "yes that's right, the balance was 250 dollars and 40 cents",
        "",
    ],
)
def test_ordinary_text_is_unchanged(redactor: Redactor, text: str) -> None:
    result = redactor.redact(text)

    assert result == RedactionResult(text, [], [])


def test_overlapping_entities_are_redacted_as_their_union(redactor: Redactor) -> None:
    # The stock URL pattern also matches inside e-mail addresses ("john.do" has the .do
    # TLD); nothing of the address may survive.
    text = "write to john.doe@example.do today"
    result = redactor.redact(text)

    assert result.text == "write to [EMAIL_ADDRESS] today"
    assert_spans_consistent(text, result)


def test_partial_overlaps_merge_into_the_best_scoring_union() -> None:
    from presidio_analyzer import RecognizerResult

    from pipeline.privacy.redaction import _merge_overlaps

    merged = _merge_overlaps(
        [
            RecognizerResult("URL", 5, 12, 0.5),
            RecognizerResult("EMAIL_ADDRESS", 0, 10, 1.0),
            RecognizerResult("PHONE_NUMBER", 20, 30, 0.4),
        ]
    )
    assert [(r.entity_type, r.start, r.end, r.score) for r in merged] == [
        ("EMAIL_ADDRESS", 0, 12, 1.0),
        ("PHONE_NUMBER", 20, 30, 0.4),
    ]


def test_redact_safe_returns_placeholder_when_analyzer_raises(
    redactor: Redactor, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "my card is 4111 1111 1111 1111"

    def boom(*args: object, **kwargs: object) -> list[object]:
        raise ValueError(f"analyzer exploded on {secret!r}")

    monkeypatch.setattr(redactor._analyzer, "analyze", boom)
    with caplog.at_level(logging.DEBUG):
        result = redactor.redact_safe(secret)

    assert result.text == FAILED_PLACEHOLDER
    assert result.entities == []
    [r] = result.redactions
    assert (r.type, r.start, r.end) == ("REDACTION_FAILED", 0, 18)
    assert result.text[r.start : r.end] == "[REDACTION_FAILED]"
    assert "ValueError" in caplog.text
    assert "4111" not in caplog.text and "exploded" not in caplog.text
    assert all(rec.exc_info is None for rec in caplog.records)


def test_redact_safe_survives_non_string_input(redactor: Redactor) -> None:
    assert redactor.redact_safe(None).text == FAILED_PLACEHOLDER  # type: ignore[arg-type]


def test_redact_safe_passes_through_a_normal_result(redactor: Redactor) -> None:
    text = "email me at jane.roe@example.com"
    assert redactor.redact_safe(text) == redactor.redact(text)


def test_get_redactor_is_cached() -> None:
    assert get_redactor() is get_redactor()


def test_presidio_does_not_log_analyzed_text(
    redactor: Redactor, caplog: pytest.LogCaptureFixture
) -> None:
    # Presidio's IBAN recognizer logs "Failed to validate text %s" with the candidate.
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("presidio-analyzer").error("Failed to validate text %s", "GB82WEST1234")
        redactor.redact("IBAN GB82WEST12345698765433 is wrong")

    assert "Failed to validate text" in caplog.text
    assert "GB82WEST" not in caplog.text
    # The per-call INFO line ("Fetching all recognizers") is silenced.
    assert not [r for r in caplog.records if r.levelno < logging.WARNING]


# A fresh interpreter, so that nothing (tldextract's cache, an already loaded PSL,
# imported modules) is left over from other tests: block DNS and connect *before*
# importing the module, construct, redact text that exercises the e-mail/URL
# recognizers, and count attempts. The last step proves the guard itself works:
# tldextract's default extractor does reach for the network.
_OFFLINE_SCRIPT = textwrap.dedent(
    """
    import json, socket

    attempts = []

    def refuse(name):
        def blocked(*args, **kwargs):
            attempts.append(name)
            raise OSError("network disabled by test")
        return blocked

    socket.socket.connect = refuse("connect")
    socket.socket.connect_ex = refuse("connect_ex")
    socket.create_connection = refuse("create_connection")
    socket.getaddrinfo = refuse("getaddrinfo")

    from pipeline.privacy.redaction import Redactor

    r = Redactor()
    after_construction = list(attempts)
    out = r.redact("mail jane.roe@example.com or visit https://shop.example.co.uk/x today")
    after_redact = list(attempts)

    import tldextract
    tldextract.TLDExtract(cache_dir=None)("jane.roe@example.com")
    print(json.dumps({
        "construction": after_construction,
        "redact": after_redact,
        "text": out.text,
        "default_tldextract": attempts[len(after_redact):],
    }))
    """
)


def test_construction_and_redaction_make_no_network_attempt(tmp_path: Path) -> None:
    env = {
        **os.environ,
        # An empty cache so a previously downloaded suffix list cannot hide a fetch.
        "XDG_CACHE_HOME": str(tmp_path),
        "TLDEXTRACT_CACHE": str(tmp_path / "tld"),
        "PYTHONPATH": str(REPO),
    }
    proc = subprocess.run(
        [sys.executable, "-c", _OFFLINE_SCRIPT],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])

    assert report["construction"] == []
    assert report["redact"] == []
    assert report["text"] == "mail [EMAIL_ADDRESS] or visit [URL] today"
    assert report["default_tldextract"], "the network guard did not see tldextract's fetch"


# --------------------------------------------------------------------- log scrubber

CARD = "4111 1111 1111 1111"


@pytest.fixture
def scrubbed_logger() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    log = logging.getLogger("callstream.test.scrubber")
    log.propagate = False
    log.setLevel(logging.DEBUG)
    log.addHandler(handler)
    install_log_scrubber(log)
    yield log, stream
    log.removeHandler(handler)


def test_scrub_masks_cards_and_long_digit_runs_only() -> None:
    assert scrub(f"card {CARD} end") == "card #### #### #### #### end"
    assert scrub("card 4111-1111-1111-1111") == "card ####-####-####-####"
    assert scrub("acct 123456789 ok") == "acct ######### ok"
    assert scrub("3 pm for 2 people, order 12345678, 2024-05-01") == (
        "3 pm for 2 people, order 12345678, 2024-05-01"
    )
    spoken = "text was 'four one one one, one one one one um one one one one one one one one' ok"
    assert scrub(spoken) == "text was '[spoken digits withheld]' ok"
    assert (
        scrub("one or two of the three items, at nine") == "one or two of the three items, at nine"
    )


def test_scrubber_masks_message_args_and_exception_text(
    scrubbed_logger: tuple[logging.Logger, io.StringIO],
) -> None:
    log, stream = scrubbed_logger
    log.info("card in message 4111-1111-1111-1111")
    log.info("card in args %s and %d", CARD, 4111111111111111)
    log.info("card in mapping %(pan)s", {"pan": CARD})
    try:
        raise ValueError(f"could not charge {CARD}")
    except ValueError:
        log.exception("payment failed for %s", "4111111111111111")

    out = stream.getvalue()
    assert "4111" not in out
    assert "####-####-####-####" in out
    assert "card in args #### #### #### #### and ################" in out
    assert "ValueError: could not charge #### #### #### ####" in out
    assert "Traceback (most recent call last)" in out


def test_scrubber_survives_odd_records(
    scrubbed_logger: tuple[logging.Logger, io.StringIO],
) -> None:
    log, stream = scrubbed_logger

    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no")

    log.info({"pan": "4111111111111111"})  # non-str msg
    log.info("too few args %s %s", CARD)  # bad format args
    log.info("unprintable %s", Unprintable())
    log.info(12345678901234)  # int msg
    log.warning("plain message without digits")

    out = stream.getvalue()
    assert "4111" not in out and "12345678901234" not in out
    assert "{'pan': '################'}" in out
    assert "plain message without digits" in out


def test_scrubber_leaves_clean_records_structured() -> None:
    record = logging.LogRecord(
        "x", logging.INFO, __file__, 1, "call %s took %d ms", ("c1", 42), None
    )
    assert ScrubbingFilter().filter(record) is True
    assert record.args == ("c1", 42) and record.msg == "call %s took %d ms"


def test_install_on_root_covers_propagated_records_and_is_idempotent() -> None:
    root = logging.getLogger()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root.addHandler(handler)
    try:
        install_log_scrubber()
        install_log_scrubber()
        assert sum(isinstance(f, ScrubbingFilter) for f in handler.filters) == 1
        logging.getLogger("pipeline.some.child").warning("leaked %s", CARD)
        assert "4111" not in stream.getvalue()
        assert "#### #### #### ####" in stream.getvalue()
    finally:
        root.removeHandler(handler)
        for h in [*root.handlers, logging.lastResort]:
            if h is None:
                continue
            for f in [f for f in h.filters if isinstance(f, ScrubbingFilter)]:
                h.removeFilter(f)
