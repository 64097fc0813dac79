"""callstream's recognizers, one entity each, registered with Presidio by the Redactor.

They run on the normalized text (``pipeline.privacy.spoken_numbers``), so "four one one one"
reaches them as "4111". ``speech_recognizers()`` is the always-on set; the known-values
and payment-digits recognizers are added per utterance by the session.
"""

from __future__ import annotations

from collections.abc import Callable

from .base import SpeechRecognizer
from .card_expiry import CardExpiryRecognizer
from .card_security_code import CardSecurityCodeRecognizer
from .credit_card import CreditCardSpeechRecognizer
from .known_values import KnownValuesRecognizer, clean_type
from .payment_digits import PaymentDigitsRecognizer
from .person_intro import PersonIntroRecognizer
from .phone_number import PhoneSpeechRecognizer
from .spoken_email import SpokenEmailRecognizer
from .spoken_iban import SpokenIbanRecognizer
from .street_address import StreetAddressRecognizer
from .unfinished_number import unfinished_number_recognizers
from .us_ssn import UsSsnSpeechRecognizer

__all__ = [
    "CardExpiryRecognizer",
    "CardSecurityCodeRecognizer",
    "CreditCardSpeechRecognizer",
    "KnownValuesRecognizer",
    "PaymentDigitsRecognizer",
    "PersonIntroRecognizer",
    "PhoneSpeechRecognizer",
    "SpeechRecognizer",
    "SpokenEmailRecognizer",
    "SpokenIbanRecognizer",
    "StreetAddressRecognizer",
    "UsSsnSpeechRecognizer",
    "clean_type",
    "speech_recognizers",
]


def speech_recognizers(
    has_public_suffix: Callable[[str], bool], language: str = "en"
) -> list[SpeechRecognizer]:
    return [
        CreditCardSpeechRecognizer(language),
        CardExpiryRecognizer(language),
        CardSecurityCodeRecognizer(language),
        UsSsnSpeechRecognizer(language),
        PhoneSpeechRecognizer(language),
        SpokenEmailRecognizer(has_public_suffix, language),
        SpokenIbanRecognizer(language),
        PersonIntroRecognizer(language),
        StreetAddressRecognizer(language),
        *unfinished_number_recognizers(language),
    ]
