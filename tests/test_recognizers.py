"""Each recognizer alone, on normalized text, through Presidio's recognizer interface.

These are the unit contracts; the corpus test measures them together on real phrasing.
"""

from __future__ import annotations

import pytest

from pipeline.privacy.presidio_setup import has_public_suffix
from pipeline.privacy.recognizers import (
    CardExpiryRecognizer,
    CardSecurityCodeRecognizer,
    CreditCardSpeechRecognizer,
    KnownValuesRecognizer,
    PaymentDigitsRecognizer,
    PersonIntroRecognizer,
    PhoneSpeechRecognizer,
    SpokenEmailRecognizer,
    SpokenIbanRecognizer,
    StreetAddressRecognizer,
    UsSsnSpeechRecognizer,
)


def spans(recognizer, text: str, min_score: float = 0.0) -> list[str]:
    return [
        text[r.start : r.end] for r in recognizer.analyze(text, None, None) if r.score >= min_score
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("card 4111 1111 1111 1111 thanks", ["4111 1111 1111 1111"]),
        ("it's 41111111, 11111111", ["41111111, 11111111"]),  # grouping does not matter
        ("4111 1111 and then 1111 1111", ["4111 1111 and then 1111 1111"]),  # split by words
        ("amex 378282246310005", ["378282246310005"]),  # 15 digits
        ("2-series 2221000000000009", ["2221000000000009"]),
        ("19 digits 4000000000000000006", ["4000000000000000006"]),
        ("ref 99 4111111111111111 after", ["4111111111111111"]),  # a window in a longer run
    ],
)
def test_credit_card_finds_luhn_valid_numbers(text: str, expected: list[str]) -> None:
    assert spans(CreditCardSpeechRecognizer(), text, 0.4) == expected


def test_credit_card_without_luhn_needs_context() -> None:
    r = CreditCardSpeechRecognizer()
    assert spans(r, "4111 1111 1111 1112", 0.4) == []
    assert spans(r, "4111 1111 1111 1112") == ["4111 1111 1111 1112"]  # low score: context decides
    assert spans(r, "order 1234 5678 and 3 items") == []


def test_expiry_and_security_code_are_low_scores_without_context() -> None:
    assert spans(CardExpiryRecognizer(), "expires 04/27", 0.4) == ["04/27"]
    assert spans(CardExpiryRecognizer(), "it's 12 28") == ["12 28"]
    assert spans(CardExpiryRecognizer(), "it's 12 28", 0.4) == []
    assert spans(CardExpiryRecognizer(), "march 2027") == ["march 2027"]
    assert spans(CardExpiryRecognizer(), "it costs 1228 dollars") == []
    assert spans(CardSecurityCodeRecognizer(), "it's 123") == ["123"]
    assert spans(CardSecurityCodeRecognizer(), "it's 123", 0.4) == []
    assert spans(CardSecurityCodeRecognizer(), "at 330 pm or $120") == []


def test_ssn() -> None:
    r = UsSsnSpeechRecognizer()
    assert spans(r, "ssn 536-22-8726", 0.4) == ["536-22-8726"]
    assert spans(r, "536 22 8726") == ["536 22 8726"]
    assert spans(r, "666 22 8726 or 900 11 2222") == []  # never issued


def test_phone() -> None:
    r = PhoneSpeechRecognizer()
    assert spans(r, "call (212) 555-0123 now", 0.4) == ["(212) 555-0123"]
    assert spans(r, "+44 20 7946 0958", 0.4) == ["+44 20 7946 0958"]
    assert spans(r, "it's 18005550199", 0.4) == ["18005550199"]
    assert spans(r, "order number 2125550123") == []
    assert spans(r, "delivered 2024-05-01") == []
    assert "917 then 442 6631" in spans(r, "area code 917 then 442 6631")


def test_spoken_email() -> None:
    r = SpokenEmailRecognizer(has_public_suffix)
    assert spans(r, "it's john dot smith at contoso dot com ok") == [
        "john dot smith at contoso dot com"
    ]
    assert spans(r, "j underscore doe at gmail.com") == ["j underscore doe at gmail.com"]
    assert spans(r, "mail t r o y 99 at icloud dot com") == ["t r o y 99 at icloud dot com"]
    assert spans(r, "meet me at the lobby dot") == []
    assert spans(r, "i am at home") == []


def test_spoken_iban() -> None:
    r = SpokenIbanRecognizer()
    text = "g b 82 w e s t 1234 5698 7654 32 thanks"
    assert spans(r, text) == ["g b 82 w e s t 1234 5698 7654 32"]
    assert spans(r, "g b 82 w e s t 1234 5698 7654 33") == []  # checksum


def test_person_intro() -> None:
    r = PersonIntroRecognizer()
    assert spans(r, "hi my name is john smith and i'm calling") == ["john smith"]
    assert spans(r, "this is sarah from billing") == ["sarah"]
    assert spans(r, "hello, Priya speaking") == ["Priya"]
    assert spans(r, "my name is on the account") == []
    assert spans(r, "this is ridiculous") == []


def test_street_address() -> None:
    r = StreetAddressRecognizer()
    assert spans(r, "i live at 42 elm street apartment 4 now") == ["42 elm street apartment 4"]
    assert spans(r, "1600 Pennsylvania Avenue") == ["1600 Pennsylvania Avenue"]
    assert spans(r, "3 items on the way") == []


def test_known_values_match_any_form() -> None:
    r = KnownValuesRecognizer([("PERSON", "Marta Kowalski"), ("ACCOUNT_NUMBER", "88124409")])
    assert spans(r, "it's marta, k o w a l s k i") == ["marta", "k o w a l s k i"]
    assert spans(r, "account 8812 4409") == ["8812 4409"]
    assert spans(r, "account 881244") == ["881244"]  # six or more of its digits in order
    assert [x.entity_type for x in r.analyze("marta 88124409", None, None)] == [
        "PERSON",
        "ACCOUNT_NUMBER",
    ]
    assert not KnownValuesRecognizer([])


@pytest.mark.parametrize(
    ("known", "said", "caught"),
    [
        ("Marta Kowalską", "pani kowalską dzwoni", "kowalską"),  # not "kowalsk" and a visible "ą"
        ("José Núñez", "this is jose nunez", "jose nunez"),  # the recognizer drops the accents
        ("Jose Nunez", "this is José Núñez", "José Núñez"),  # the CRM has none
        ("Zoë Brontë", "zoe here", "zoe"),
        ("Søren", "s o r e n", "s o r e n"),  # spelled out
        (
            "Nguyễn Văn Anh",
            "my name is Nguyễn Văn Anh",
            "Nguyễn Văn Anh",
        ),  # Latin Extended Additional
        ("Nguyễn Văn Anh", "nguyen van anh here", "nguyen van anh"),
        ("Nguyen Thi", "Nguyễn Thị here", "Nguyễn Thị"),
        ("Ṣeyda", "ṣeyda here", "ṣeyda"),
        ("अनिल शर्मा", "मेरा नाम अनिल शर्मा है", "अनिल शर्मा"),  # vowel signs are marks, inside words
    ],
)
def test_known_names_match_with_or_without_their_diacritics(known, said, caught) -> None:
    r = KnownValuesRecognizer([("PERSON", known)])
    assert caught in spans(r, said)


def test_payment_digits_takes_every_digit() -> None:
    assert spans(PaymentDigitsRecognizer(), "the blue 1 costs 5 and 12 28") == ["1", "5", "12 28"]
