"""Unicode at the privacy boundary (issue 18, item 2): invisible and look-alike characters
must not carry a secret past the Redactor or the payment guard.

The findings of the security review, each as a test: zero-width and format characters,
combining marks and variation selectors between digits hid cards, SSNs and spoken digits;
fullwidth phone numbers, IBANs and "＠" passed; superscript and circled digits escaped a
payment window's ``[DIGITS]``. Then properties, under hypothesis: random insertions of
those characters between the digits of real secrets (written in several digit scripts)
and inside e-mail addresses never leave the secret visible, and every span the Redactor
returns is exact, on the published text and on the input; the normalizer's offset map
round-trips. Last, ACS transcription text with U+200B between a card's digits, through a
real in-process service, is stored redacted.
"""

from __future__ import annotations

import re
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.settings import load_settings
from pipeline.pci.payment_guard import GuardPolicy, PaymentGuard
from pipeline.privacy.partials import StickyValues, hold_back_unfinished
from pipeline.privacy.redaction import RedactionPolicy, RedactionResult, get_redactor

from .test_e2e_media import _transcription
from .test_fuzz import fuzz_settings
from .test_redaction_session import CUSTOMER, feed, in_process_service, texts

ZWSP, ZWNJ, ZWJ, WJ, SHY = "\u200b", "\u200c", "\u200d", "\u2060", "\u00ad"
ACUTE, VS16 = "\u0301", "\ufe0f"
CARD = "4111111111111111"

#: What the review inserted, and more of the same kinds: format characters (Cf),
#: combining marks (Mn, Me), variation selectors, default-ignorable fillers.
JUNK = (
    ZWSP, ZWNJ, ZWJ, WJ, SHY, "\ufeff", "\u200e", "\u200f", "\u202e", "\u2066", "\u2062",
    "\u180e", "\U000e0031", ACUTE, "\u0323", "\u034f", "\u20e3", "\u20dd", VS16, "\ufe00",
    "\U000e0100", "\u3164",
)  # fmt: skip


def digits_in(text: str) -> str:
    """Every digit a reader sees in ``text`` (any script), as ASCII; nothing else."""
    return "".join(str(d) for c in text if (d := unicodedata.digit(c, None)) is not None)


def invisible_in(text: str) -> list[str]:
    """Format characters and combining marks left in ``text`` (ASCII around them)."""
    return [c for c in text if unicodedata.category(c) in ("Cf", "Mn", "Me") or c == "\u3164"]


def leaks(published: str, secret_digits: str, window: int = 4) -> list[str]:
    """Runs of ``window`` consecutive digits of the secret that a reader can still find."""
    seen = digits_in(published)
    return [
        secret_digits[i : i + window]
        for i in range(len(secret_digits) - window + 1)
        if secret_digits[i : i + window] in seen
    ]


def assert_exact(text: str, result: RedactionResult) -> None:
    """Redactions point at their tags in the published text, entities into the input."""
    assert len(result.redactions) == len(result.entities)
    for r, e in zip(result.redactions, result.entities, strict=True):
        assert result.text[r.start : r.end] == f"[{r.type}]"
        assert 0 <= e.start < e.end <= len(text) and e.type == r.type


def between(value: str, junk: str) -> str:
    """``junk`` between every two characters of ``value``."""
    return junk.join(value)


@pytest.fixture(scope="module")
def redactor():
    return get_redactor()


# ------------------------------------------------------------------ findings of the review


@pytest.mark.parametrize("junk", [ZWSP, ZWJ, WJ, SHY, ACUTE, VS16, ZWSP + ACUTE + VS16])
def test_invisible_characters_between_digits_do_not_hide_a_card(redactor, junk: str) -> None:
    for text in (
        f"my card number is {between(CARD, junk)} thanks",
        f"my card number is {between('4111 1111 1111 1111', junk)} thanks",
    ):
        result = redactor.redact(text)
        assert result.text == "my card number is [CREDIT_CARD] thanks", repr(result.text)
        assert_exact(text, result)


@pytest.mark.parametrize("junk", [ZWSP, ZWJ, WJ, SHY, ACUTE, VS16])
def test_invisible_characters_between_digits_do_not_hide_an_ssn(redactor, junk: str) -> None:
    text = f"my social security number is {between('536-22-8726', junk)}"
    result = redactor.redact(text)
    assert result.text == "my social security number is [US_SSN]", repr(result.text)
    assert_exact(text, result)


@pytest.mark.parametrize("junk", [ZWSP, ZWJ, WJ, SHY, ACUTE, VS16])
def test_invisible_characters_do_not_hide_spoken_digits(redactor, junk: str) -> None:
    words = ["four"] + ["one"] * 15
    # After each word, and inside the first: "fo<junk>ur<junk> one<junk> one ..."
    spoken = " ".join(w + junk for w in words)
    spoken = spoken[:2] + junk + spoken[2:]
    text = f"my card number is {spoken}"
    result = redactor.redact(text)
    assert result.text == "my card number is [CREDIT_CARD]", repr(result.text)
    assert_exact(text, result)


@pytest.mark.parametrize(
    "text",
    [
        "my phone number is ５５５−０１００",
        "call me back on (２１２) ５５５−０１２３ please",
        "call me back on ２１２－５５５－０１２３ please",
    ],
)
def test_fullwidth_phone_numbers_are_redacted(redactor, text: str) -> None:
    result = redactor.redact(text)
    assert "[PHONE_NUMBER]" in result.text and not digits_in(result.text), repr(result.text)
    assert_exact(text, result)


def test_a_fullwidth_iban_is_redacted(redactor) -> None:
    text = "my IBAN is ＧＢ８２ ＷＥＳＴ １２３４ ５６９８ ７６５４ ３２ thanks"
    result = redactor.redact(text)
    assert result.text == "my IBAN is [IBAN_CODE] thanks", repr(result.text)
    assert_exact(text, result)


@pytest.mark.parametrize("at", ["＠", "﹫"])
def test_a_fullwidth_at_sign_does_not_leave_the_local_part_visible(redactor, at: str) -> None:
    for address in (f"john.smith{at}example.com", f"ｊｏｈｎ.ｓｍｉｔｈ{at}ｅｘａｍｐｌｅ.ｃｏｍ"):
        text = f"my email is {address} thanks"
        result = redactor.redact(text)
        assert result.text == "my email is [EMAIL_ADDRESS] thanks", repr(result.text)
        assert_exact(text, result)


@pytest.mark.parametrize(
    ("text", "written_in_ascii"),
    [
        ("it's ¹²³ or ①②③", "it's 123 or 123"),
        ("the code is ⁴⁵⁶ or ₇₈₉", "the code is 456 or 789"),
        ("it's ❶❷❸ or ⓵⓶", "it's 123 or 12"),
        ("it's ٤١١١ or ४१११ or 𝟒𝟏𝟏𝟏", "it's 4111 or 4111 or 4111"),
        (f"expiry 1{ZWSP}2{ACUTE}/2{VS16}8", "expiry 12/28"),
    ],
)
def test_every_digit_is_a_digit_in_a_payment_window(
    redactor, text: str, written_in_ascii: str
) -> None:
    """In a payment window every digit goes, in any script: as if written in ASCII."""
    policy = RedactionPolicy(all_digits=True)
    result = redactor.redact(text, policy)
    assert "[DIGITS]" in result.text and not digits_in(result.text), repr(result.text)
    assert result.text == redactor.redact(written_in_ascii, policy).text
    assert_exact(text, result)


def test_cards_in_other_digit_scripts_are_cards(redactor) -> None:
    for card in (
        "٤١١١ ١١١١ ١١١١ ١١١١",
        "４１１１ １１１１ １１１１ １１１１",
        "⁴¹¹¹ ¹¹¹¹ ¹¹¹¹ ¹¹¹¹",
    ):
        text = f"my card number is {card}"
        result = redactor.redact(text)
        assert result.text == "my card number is [CREDIT_CARD]", repr(result.text)
        assert_exact(text, result)


# ------------------------------------------------------------------ the payment guard


def guard() -> PaymentGuard:
    return PaymentGuard(GuardPolicy.from_settings(load_settings(environ={})))


@pytest.mark.parametrize(
    "card",
    [
        between(CARD, ZWSP),
        between("4111 1111 1111 1111", SHY + ACUTE),
        "⁴¹¹¹ ¹¹¹¹ ¹¹¹¹ ¹¹¹¹",
        "④①①① ①①①① ①①①①",
        "❹❶❶❶ ❶❶❶❶ ❶❶❶❶",
        "٤١١١ ١١١١ ١١١١ ١١١١",
        " ".join(w + WJ for w in ["four"] + ["one"] * 11),
    ],
)
def test_the_payment_guard_sees_digits_in_any_form(card: str) -> None:
    g = guard()
    d = g.on_text(f"it's {card}", "customer", 1000, 1500)
    assert d is not None and (d.action, d.trigger) == ("open", "digits")
    # Inside the window, such digits keep it from going quiet.
    g.on_text(f"and {card[:12]}", "customer", 9000, 9500)
    assert g.window.last_digit_ms == 9500


@pytest.mark.parametrize(
    "phrase",
    [
        "card\u200b number",  # a zero-width space before the space
        "ca\u00adrd num\u200dber",  # a soft hyphen and a joiner inside the words
        "ｃａｒｄ ｎｕｍｂｅｒ",  # fullwidth
        "card\u2060 number",  # a word joiner
    ],
)
def test_the_payment_guard_sees_an_intent_phrase_in_any_form(phrase: str) -> None:
    d = guard().on_text(f"may I have the {phrase} please", "agent", 1000, 1500)
    assert d is not None and (d.action, d.trigger) == ("open", "intent")


@pytest.mark.parametrize("junk", ["\u200b", "\u2060", "\u00ad", "\ufe0f"])
def test_the_log_scrubber_sees_a_card_split_by_invisible_characters(junk: str) -> None:
    from pipeline.privacy.log_scrubber import scrub

    line = "decoded: " + junk.join("4111111111111111") + " end"
    scrubbed = scrub(line)
    assert "1111" not in scrubbed.replace(junk, "") and "4" not in scrubbed.split(":")[1]
    fullwidth = scrub("card ４１１１ １１１１ １１１１ １１１１")
    assert not any(ch.isdigit() for ch in fullwidth)


def test_partials_hold_back_digits_in_any_form_and_sticky_values_match_them(redactor) -> None:
    # A partial's trailing digits are held back until they can be judged, in any form
    # (or redacted already, if a recognizer can judge them).
    for partial in ("so it's ❹❶❶❶ ❶❶❶❶", "call me on ٥٥٥−٠١", f"it's 4{ZWSP}1{ZWSP}1"):
        held = hold_back_unfinished(redactor.redact(partial)).text
        assert not digits_in(held) and held.startswith(partial.split()[0]), held
    # A later revision shows fifteen of the card's digits: what the partial redacted, in
    # whatever form it was written, stays redacted.
    final = "it's eh " + " ".join(["one"] * 15)
    assert "one one one" in redactor.redact(final).text
    for partial in (
        f"it's {between('4111 1111 1111 1111', ZWSP)}",
        "it's ４１１１ １１１１ １１１１ １１１１",
        "it's ٤١١١ ١١١١ ١١١١ ١١١١",
    ):
        sticky = StickyValues()
        sticky.remember(partial, redactor.redact(partial))
        later = redactor.redact(final, RedactionPolicy(sticky=sticky.recognizer))
        assert later.text == "it's eh [CREDIT_CARD]", (partial, later.text)


# ------------------------------------------------------------------ properties

CARDS = ("4111111111111111", "5500005555555559", "378282246310005", "6011111111111117")
SSNS = ("536-22-8726", "219-09-9999")
PHONES = ("(212) 555-0123", "212 555 0123", "+44 20 7946 0958")
EMAILS = ("john.smith@example.com", "marta.kowalski@contoso.org", "pat_lee@mail.example.co.uk")
DASHES = ("-", "\u2212", "\u2010", "\uff0d", "\u2013")

_SUPERSCRIPT = "⁰¹²³⁴⁵⁶⁷⁸⁹"
_CIRCLED = "⓪①②③④⑤⑥⑦⑧⑨"
_DINGBAT = "⓿❶❷❸❹❺❻❼❽❾"
DIGIT_SCRIPTS = {
    "ascii": "0123456789",
    "fullwidth": "".join(chr(0xFF10 + d) for d in range(10)),
    "arabic-indic": "".join(chr(0x0660 + d) for d in range(10)),
    "devanagari": "".join(chr(0x0966 + d) for d in range(10)),
    "math-bold": "".join(chr(0x1D7CE + d) for d in range(10)),
    "superscript": _SUPERSCRIPT,
    "circled": _CIRCLED,
    "dingbat": _DINGBAT,
}
CASES = {
    "CREDIT_CARD": ("my card number is ", CARDS, " thanks"),
    "US_SSN": ("my social security number is ", SSNS, " ok"),
    "PHONE_NUMBER": ("call me back on ", PHONES, " please"),
    "EMAIL_ADDRESS": ("you can email me at ", EMAILS, " thanks"),
}


@st.composite
def secrets_with_junk(draw):
    """(entity, value, text before, the value with junk between its characters, after)."""
    entity = draw(st.sampled_from(sorted(CASES)))
    before, values, after = CASES[entity]
    value = draw(st.sampled_from(values))
    if entity != "EMAIL_ADDRESS":
        script = DIGIT_SCRIPTS[draw(st.sampled_from(sorted(DIGIT_SCRIPTS)))]
        dash = draw(st.sampled_from(DASHES))
        value = "".join(script[int(c)] if c.isdigit() else dash if c == "-" else c for c in value)
    gaps = draw(
        st.lists(
            st.lists(st.sampled_from(JUNK), max_size=3),
            min_size=len(value) - 1,
            max_size=len(value) - 1,
        )
    )
    junky = value[0] + "".join("".join(g) + c for g, c in zip(gaps, value[1:], strict=True))
    return entity, value, before, junky, after


@fuzz_settings(1.0)
@given(secrets_with_junk())
def test_inserted_invisible_characters_never_let_a_secret_through(case) -> None:
    entity, value, before, junky, after = case
    text = before + junky + after
    result = get_redactor().redact(text)
    assert_exact(text, result)
    assert not invisible_in(result.text), repr(result.text)
    if entity == "EMAIL_ADDRESS":
        local = re.sub(r"[^a-z]", "", value.split("@")[0])
        assert local not in re.sub(r"[^a-z]", "", result.text.lower()), repr(result.text)
    else:
        secret = "".join(
            str(unicodedata.digit(c)) for c in value if unicodedata.digit(c, None) is not None
        )
        assert not leaks(result.text, secret), repr(result.text)
    # The span is exact: the entity covers the secret as written, junk inside it included.
    start, end = len(before), len(before) + len(junky)
    assert [(e.type, e.start, e.end) for e in result.entities] == [(entity, start, end)], (
        repr(text),
        result,
    )
    assert result.text == f"{before}[{entity}]{after}"


# Text of many kinds: ASCII, digits of several scripts, fullwidth, marks, format characters,
# emoji sequences, Arabic and Devanagari, Hangul jamo, ligatures, half-width kana.
_ALPHABET = (
    "ab z019 .@-()" + "".join(JUNK) + "ｊ＠５１－−" + "٤४𝟒¹①❶⑩½ﬁé" + "👩\u200d💻❤"
    + "سلام" + "कि" + "\u1100\u1161\u11a8" + "ｶﾞ" + "\u0308"
)  # fmt: skip


@fuzz_settings(2.0)
@given(st.text(alphabet=_ALPHABET, max_size=40))
def test_the_offset_map_round_trips(text: str) -> None:
    from pipeline.privacy.normalize import normalize_text  # new in issue 18

    n = normalize_text(text)
    assert len(n.analysis) == len(n.text)
    assert normalize_text(n.text).text == n.text  # normalizing twice changes nothing more
    if not n.changed:  # published as it came: the map is the identity
        assert n.text == text and n.to_original(0, len(text)) == (0, len(text))
        return
    spans = [n.to_original(k, k + 1) for k in range(len(n.text))]
    covered = set()
    prev = (0, 0)
    for s, e in spans:
        assert 0 <= s < e <= len(text)
        assert (s, e) >= prev and (s == prev[0] or s >= prev[1])  # in order, never overlapping
        prev = (s, e)
        covered.update(range(s, e))
    # Whatever the map skips is invisible: format characters, marks, fillers.
    for i, c in enumerate(text):
        if i not in covered:
            assert unicodedata.category(c) in ("Cf", "Mn", "Me", "Mc") or c == "\u3164", (
                repr(text),
                i,
            )
    # Each stretch of output made from one piece of input is that piece, normalized alone
    # (a joiner kept between two letters of a script depends on its neighbours: skipped).
    k = 0
    while k < len(n.text):
        j = k
        while j < len(n.text) and spans[j] == spans[k]:
            j += 1
        s, e = spans[k]
        if text[s] not in (ZWJ, ZWNJ):
            assert normalize_text(text[s:e]).text == n.text[k:j], (repr(text), s, e)
        k = j
    # A span of the output maps to the input from its first character's piece to its last's.
    for a in range(len(n.text)):
        for b in range(a + 1, len(n.text) + 1):
            assert n.to_original(a, b) == (spans[a][0], spans[b - 1][1])


# ------------------------------------------------------------------ end to end


async def test_acs_transcription_with_zero_width_spaces_is_stored_redacted(tmp_path) -> None:
    """The finding as it happened: ACS text with U+200B between a card's digits was stored."""
    card = between("4111 1111 1111 1111", ZWSP)
    async with in_process_service(tmp_path, payment_intent_phrases="") as service:
        events = await feed(
            service,
            "zwsp-call",
            [
                _transcription(f"my card is {card}", "Intermediate", CUSTOMER, 1000),
                _transcription(f"my card is {card} thanks", "Final", CUSTOMER, 1000),
            ],
        )
    finals = texts(events, "transcript.final")
    assert len(finals) == 1 and re.fullmatch(r"my card is \[[A-Z_]+\] thanks", finals[0]), finals
    for e in events:
        assert ZWSP not in repr(e) and "\\u200b" not in repr(e)
    for text in texts(events):
        assert not leaks(text, CARD), text
