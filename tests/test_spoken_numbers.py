"""The spoken-number normalizer, and the property that matters: no card number survives.

The property test renders Luhn-valid card numbers the way callers say them and speech
recognizers write them (digit words, numerals, "oh", "double"/"triple", separators,
fillers, tens) and requires the Redactor to remove every digit of them.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.privacy.partials import trailing_run_start
from pipeline.privacy.redaction import get_redactor
from pipeline.privacy.spoken_numbers import normalize

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TENS = {
    2: "twenty",
    3: "thirty",
    4: "forty",
    5: "fifty",
    6: "sixty",
    7: "seventy",
    8: "eighty",
    9: "ninety",
}
TEENS = [
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]


@pytest.mark.parametrize(
    ("text", "normalized", "digits"),
    [
        ("four one one one, one one one one", "41111111", ["41111111"]),
        ("oh four twenty seven", "04 27", ["0427"]),
        ("double five triple one", "55111", ["55111"]),
        ("twelve twenty eight and one two three", "12 28 and 123", ["1228", "123"]),
        ("one eight hundred five five five oh one nine nine", "1 800 5550199", ["18005550199"]),
        ("four hundred fifty dollars", "450 dollars", ["450"]),
        ("4111 one one one one", "4111 1111", ["41111111"]),
        ("four one um one one", "4111", ["4111"]),
        ("oh I see, the blue one", "oh I see, the blue 1", ["1"]),
        (
            "order 12345678 shipped on 2024-05-01",
            "order 12345678 shipped on 2024-05-01",
            ["12345678", "20240501"],
        ),
    ],
)
def test_normalize(text: str, normalized: str, digits: list[str]) -> None:
    n = normalize(text)
    assert n.text == normalized
    assert [r.digits for r in n.runs] == digits


def test_spans_map_back_to_the_words_that_were_spoken() -> None:
    text = "card four one um one one then 5"
    n = normalize(text)
    i = n.text.index("4111")
    start, end = n.to_original(i, i + 4)
    assert text[start:end] == "four one um one one"
    # A span starting inside a multi-digit word maps to the whole word.
    n = normalize("it is twenty eight")
    i = n.text.index("28")
    assert n.to_original(i + 1, i + 2) == (6, 18)


def test_plain_text_is_returned_as_is() -> None:
    text = "call 212 555 0123 at 10:30"
    assert normalize(text).text is text


@pytest.mark.parametrize(
    ("text", "cut"),
    [
        ("my card is four one one", "my card is "),
        ("my card is 4111 1111.", "my card is "),
        ("see you at three", None),
        ("four one one one will", ""),
        ("four one one one and then we are done", None),
        ("it costs forty", None),
        ("hello there", None),
    ],
)
def test_trailing_run_start(text: str, cut: str | None) -> None:
    pos = trailing_run_start(text)
    assert (text[:pos] if pos is not None else None) == cut


# ---------------------------------------------------------------- property: Luhn cards


def luhn_complete(body: str) -> str:
    for check in "0123456789":
        digits = body + check
        total = 0
        for i, ch in enumerate(reversed(digits)):
            d = int(ch) * (2 if i % 2 else 1)
            total += d - 9 if d > 9 else d
        if total % 10 == 0:
            return digits
    raise AssertionError


PREFIXES = ["4", "51", "55", "2221", "2720", "34", "37", "6011", "65", "36", "38", "62"]


@st.composite
def card_numbers(draw: st.DrawFn) -> str:
    prefix = draw(st.sampled_from(PREFIXES))
    length = draw(st.integers(13, 19))
    body = prefix + "".join(
        draw(
            st.lists(
                st.sampled_from("0123456789"),
                min_size=length - 1 - len(prefix),
                max_size=length - 1 - len(prefix),
            )
        )
    )
    return luhn_complete(body)


@st.composite
def spoken(draw: st.DrawFn, number: str) -> str:
    """Render ``number`` as a recognizer might: chunks of words or numerals, with noise."""
    parts: list[str] = []
    i = 0
    while i < len(number):
        style = draw(st.sampled_from(["words", "numeral", "double", "tens", "teen"]))
        if style == "double" and i + 1 < len(number) and number[i] == number[i + 1]:
            triple = i + 2 < len(number) and number[i + 2] == number[i] and draw(st.booleans())
            word = "oh" if number[i] == "0" and draw(st.booleans()) else WORDS[int(number[i])]
            parts.append(("triple " if triple else "double ") + word)
            i += 3 if triple else 2
        elif (
            style == "tens"
            and i + 1 < len(number)
            and number[i] in "23456789"
            and number[i + 1] != "0"
        ):
            parts.append(f"{TENS[int(number[i])]} {WORDS[int(number[i + 1])]}")
            i += 2
        elif style == "teen" and i + 1 < len(number) and number[i] == "1":
            parts.append(TEENS[int(number[i + 1])])
            i += 2
        elif style == "numeral":
            n = draw(st.integers(1, 4))
            parts.append(number[i : i + n])
            i += n
        else:
            d = number[i]
            parts.append("oh" if d == "0" and draw(st.booleans()) else WORDS[int(d)])
            i += 1
    out = parts[0]
    for p in parts[1:]:
        sep = draw(
            st.sampled_from([" ", " ", " ", ", ", ". ", "-", " um ", " uh ", " sorry ", " hmm, "])
        )
        # Two numerals side by side with a bare space would read as one longer number: fine.
        out += sep + p
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_rendering_of_a_luhn_valid_card_is_removed(data: st.DataObject) -> None:
    number = data.draw(card_numbers())
    rendered = data.draw(spoken(number))
    lead = data.draw(
        st.sampled_from(["", "my card number is ", "okay it's ", "sure, ", "yeah um "])
    )
    tail = data.draw(st.sampled_from(["", " thanks", ".", " and that's it"]))
    text = lead + rendered + tail
    result = get_redactor().redact(text)
    assert "[CREDIT_CARD]" in result.text, (text, result.text)
    left = normalize(result.text)
    assert not any(len(r.digits) >= 4 for r in left.runs), (text, result.text)
    assert not re.search(r"\d{4}", result.text)
