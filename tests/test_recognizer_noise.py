"""Redaction that survives the recognizer's mistakes (issue 18), one class of miss each,
then the whole corpus through the noise model of bench/recognizer_noise.py.

Each unit test names the class of miss it pins down; the corpus test runs every case of
the two corpora through ``CallRedaction`` as the service does (partials held back,
a number left open carried into the next utterance), clean and at a fixed seed of noise.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

from models.speech import SpeechResult
from pipeline.ingest.call_redaction import CallRedaction
from pipeline.privacy.partials import hold_back_unfinished
from pipeline.privacy.redaction import RedactionPolicy, RedactionResult, get_redactor
from pipeline.privacy.spoken_numbers import normalize

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import recognizer_noise  # bench/ is not a package: found through sys.path
import redaction_noise

EMAIL_QUESTION = ("what", "is", "your", "email", "address")


def redact(text: str, context: tuple[str, ...] = ()) -> str:
    return get_redactor().redact(text, RedactionPolicy(context=context)).text


# ------------------------------------------------------------------ misheard digits


@pytest.mark.parametrize(
    ("text", "digits"),
    [
        ("one one won one", ["1111"]),  # inside a run of digits: a digit
        ("four one for one", ["4141"]),
        ("double ate", ["88"]),  # after double: a digit
        ("twenty ate", ["28"]),
        ("suite won hundred", ["100"]),
        ("three to five days", ["3", "5"]),  # a range keeps its word
        ("i was waiting for two hours", ["2"]),
        ("for one one one", ["111"]),  # at the edge: a word here, both readings later
    ],
)
def test_homophones_are_digits_only_inside_a_run(text: str, digits: list[str]) -> None:
    assert [r.digits for r in normalize(text).runs] == digits


@pytest.mark.parametrize(
    "text",
    [
        "my card number is for one one one one one one one one one one one one one one one",
        "it's four one one one one won one one one one one one one one one ate",
        "four double ate one one one one one one one one one one one one one",
    ],
)
def test_a_card_with_misheard_digits_is_removed(text: str) -> None:
    assert "[CREDIT_CARD]" in redact(text)
    assert not [r for r in normalize(redact(text)).runs if len(r.digits) >= 4]


@pytest.mark.parametrize(
    "text",
    [
        "it'll take three to five business days",
        "i've been waiting for two hours",
        "four for the price of two",
        "we ate at eight and won two games",
    ],
)
def test_homophones_outside_numbers_keep_their_words(text: str) -> None:
    assert redact(text) == text


# ------------------------------------------------------------------ fillers and repairs


@pytest.mark.parametrize(
    "text",
    [
        "my card is four one two five sorry four one one one one one one one one one one one one",
        "card number 4111 1112 sorry 1111 1111 1111",
        "four one um one one uh one one one one one one one one one one one one",
        "my social is five three sorry five three six two two eight seven two six",
        "IBAN ES91 2101 sorry 2100 0418 4502 0005 1332",
    ],
)
def test_fillers_and_repairs_inside_a_number(text: str) -> None:
    out = redact(text)
    assert not [r for r in normalize(out).runs if len(r.digits) >= 4], out


def test_a_repair_keeps_the_number_said_in_the_redacted_span() -> None:
    result = get_redactor().redact("it's four five sorry four six one one one one one one one")
    assert result.text == "it's [DIGITS]" or result.text.startswith("it's [")


# ------------------------------------------------------------------ the expiry


@pytest.mark.parametrize(
    "text",
    [
        "the expiry is o four slash two seven",
        "it expires oh nine twenty seven",
        "expiry date o4/27",
        "valid thru o one slash thirty",
        "it expires end of february twenty ate",
    ],
)
def test_an_expiry_with_oh_for_zero(text: str) -> None:
    assert "[CARD_EXPIRY]" in redact(text)
    assert not normalize(redact(text)).runs


@pytest.mark.parametrize(
    "text",
    [
        "I was born on 05/11/1987",
        "the appointment is 12/03/2027",
        "it renews on 03/04/2027",
        "the date is 2027-04-15",
        "it was delivered on 14/03/2025",
    ],
)
def test_dates_are_kept_not_taken_for_an_expiry(text: str) -> None:
    assert redact(text) == text


# ------------------------------------------------------------------ the IBAN


@pytest.mark.parametrize(
    "text",
    [
        "my iban is gb82west12345698765432",
        "iban de89370400440532013000 thanks",
        "IBAN: gb29 nwbk 6016 1331 9268 19",
        "GB82-WEST-1234-5698-7654-32",
        "it's n l oh five r a b o oh three one two four five eight seven nine oh",
        "the iban is d e for four five oh oh won oh five one seven five four oh seven three two four nine three one",
    ],
)
def test_an_iban_compact_lower_case_spelled_or_misheard(text: str) -> None:
    assert "[IBAN_CODE]" in redact(text)


def test_an_iban_needs_its_checksum() -> None:
    assert redact("my code is gb82west12345698765433") == "my code is gb82west12345698765433"


# ------------------------------------------------------------------ the e-mail


@pytest.mark.parametrize("at", ["at", "add", "that", "hat", "better", "and", ""])
def test_an_email_whatever_stands_where_at_should_be(at: str) -> None:
    text = f"the address is john galt smith {at} example dot com".replace("  ", " ")
    assert redact(text, EMAIL_QUESTION) == "the address is [EMAIL_ADDRESS]"


@pytest.mark.parametrize(
    "text",
    [
        "it's priya dot patel eighty seven that yahoo dot com",  # a mail provider: no context
        "it's k i m underscore lee add gmail com",  # "dot" missing too
        "my email address is l dot nguyen proton dot me",
        "the email is mary hyphen ann that outlook dot co dot uk",
    ],
)
def test_an_email_with_its_at_or_dot_misheard(text: str) -> None:
    out = redact(text)
    assert out.endswith("[EMAIL_ADDRESS]"), out
    assert "dot" not in out and "com" not in out


@pytest.mark.parametrize(
    "text",
    [
        "visit acme dot com slash help",
        "go to contoso dot com to check your bill",
        "i'm at home today",
        "the meeting is at ten",
    ],
)
def test_a_website_or_an_at_is_no_email(text: str) -> None:
    assert redact(text, EMAIL_QUESTION) == text


# ------------------------------------------------------------------ partials and utterances


class _SyncQueue:
    def submit(self, job) -> None:
        rr = get_redactor().redact_safe(job.text, job.policy())
        job.redacted(rr)
        job.deliver(rr)


class _NoKnown:
    def recognizer(self, call_id: str):
        return None


def run_call(turns: list[tuple[str, bool, int]], context: tuple[str, ...] = ()) -> list[str]:
    """(text, final, startMs) through CallRedaction; the texts it delivers, as published."""
    call = CallRedaction("noise", _SyncQueue(), _NoKnown())
    if context:
        call.context.append((0, context))
    out: list[str] = []
    for text, final, start in turns:
        uid = f"u{start}"

        def deliver(result: SpeechResult, rr: RedactionResult) -> None:
            out.append(rr.text if result.is_final else hold_back_unfinished(rr).text)

        call.result(SpeechResult(uid, final, text, start, start + 2000), deliver)
        if final:
            call.sticky.pop(uid, None)
    return out


def test_a_number_split_across_two_utterances() -> None:
    out = run_call(
        [
            ("my card number is four one one one one one one one", True, 1000),
            ("one one one one one one one one", True, 3500),
        ]
    )
    assert out == ["my card number is [CREDIT_CARD]", "[CREDIT_CARD]"]
    out = run_call(
        [("my social is six oh five", True, 1000), ("one one four eight seven three", True, 3500)]
    )
    assert out == ["my social is [US_SSN]", "[US_SSN]"]


def test_a_number_read_back_later_in_the_call_is_that_number_again() -> None:
    """A group of a card or a social, repeated turns later, is too short to judge alone."""
    out = run_call(
        [
            (
                "it's four nine two nine one two seven eight nine oh one two three four five nine",
                True,
                1000,
            ),
            ("thank you", True, 9000),
            ("sorry was the third group nine oh one two", True, 12000),
            ("i have nine oh one two people waiting", True, 15000),  # it is, whatever it means
            ("and you need two tickets for the twelfth", True, 18000),
        ]
    )
    assert out[0] == "it's [CREDIT_CARD]"
    assert out[2] == "sorry was the third group [CREDIT_CARD]"
    assert out[4] == "and you need two tickets for the twelfth"


def test_the_next_utterance_goes_on_only_with_a_number() -> None:
    out = run_call(
        [
            ("my phone number is two one two five five five oh one nine nine", True, 1000),
            ("2 items please", True, 3500),
            ("and the order is 55512", True, 6000),
        ]
    )
    assert out == ["my phone number is [PHONE_NUMBER]", "2 items please", "and the order is 55512"]


def test_a_number_split_across_two_partials() -> None:
    """What a partial shows of a number still being said: nothing (held back, or redacted
    as the start of the secret it was asked for)."""
    out = run_call(
        [
            ("the card is four one one one one", False, 1000),
            ("the card is four one one one one sorry four one", False, 1000),
            ("cvv is double", False, 5000),
            ("the expiry date is oh", False, 9000),
            ("um it's 3", False, 13000),
            ("okay it's n", False, 17000),
        ],
        context=("and", "the", "security", "code"),
    )
    assert out[2:] == ["cvv is", "the expiry date is", "um it's", "okay it's"]
    for text in out[:2]:  # "the card is" or "the card is [...]": no digit of it
        assert text.startswith("the card is") and not normalize(text).runs, text


def test_an_email_in_partials_is_held_until_its_domain_is_judged() -> None:
    said = "the address is john galt smith better example dot com".split()
    turns = [(" ".join(said[:n]), False, 1000) for n in range(4, len(said))]
    out = run_call([*turns, (" ".join(said), True, 1000)], EMAIL_QUESTION)
    assert set(out[:-1]) == {"the address is"} and out[-1] == "the address is [EMAIL_ADDRESS]"


# ------------------------------------------------------------------ the noisy corpus

SEED = 18
VARIANTS = 3
# Reached on the clean and the noisy corpus (seed 18, three noisy copies of each case):
# the goal, 1.0 for cards and 0.99 for every other type. (A card split across two
# utterances with no cue before its first half was the last noisy miss: half a card of
# seven digits that opens like one is now redacted as the start of one.)
NOISY_FLOOR: dict[str, float] = {}
GOAL = 0.99


@pytest.fixture(scope="module")
def items() -> list[dict]:
    return [
        *redaction_noise.load(redaction_noise.CORPORA["corpus"]),
        *redaction_noise.load(redaction_noise.CORPORA["holdout"]),
    ]


def _check(score: redaction_noise.Score, floors: dict[str, float]) -> None:
    for entity_type, (found, _, total) in score.recall.items():
        floor = floors.get(entity_type, 1.0 if entity_type == "CREDIT_CARD" else GOAL)
        assert found / total >= floor, f"{entity_type} {found}/{total}: {score.misses[:5]}"
    for name, (kept, total) in (("negatives", score.negatives), ("keeps", score.keeps)):
        assert kept / total >= GOAL, f"{name} kept {kept}/{total}"


def test_the_clean_corpus_reaches_the_goal(items: list[dict]) -> None:
    score = redaction_noise.score([recognizer_noise.clean_case(i) for i in items])
    _check(score, {})


def test_the_noisy_corpus_reaches_the_goal(items: list[dict]) -> None:
    cases = redaction_noise.noisy_cases(items, SEED, VARIANTS)
    classes = {n for c in cases for n in c.noise}
    # Every class of the noise model is exercised at this seed.
    assert {"filler", "repair", "split utterance", "split partial", "four->for"} <= classes
    assert {"at->better", "at->that", "at->add", "at->hat", "at->(dropped)"} <= classes
    score = redaction_noise.score(cases)
    print(
        "\n"
        + redaction_noise.table(
            redaction_noise.score([recognizer_noise.clean_case(i) for i in items]), score
        )
    )
    _check(score, NOISY_FLOOR)


# The development corpora (written blind, then read case by case to find classes of miss):
# what they reached is kept. Cards all go and harmless numbers stay, clean and noisy.
# Card floors, clean and noisy, at what each reached (dev3's misses are an agent reading a
# card back in a chat transcript, a group at a time between the caller's answers).
DEVELOPMENT = {"blind": (1.0, 0.9), "dev2": (1.0, 0.9), "dev3": (0.9, 0.8)}
# dev3's negatives hold a company web address (a URL is redacted: it can carry a name).
NEGATIVES_FLOOR = {"blind": 0.98, "dev2": 0.98, "dev3": 0.9}


@pytest.mark.parametrize("name", DEVELOPMENT)
def test_the_development_corpora_keep_cards_out_and_negatives_in(name: str) -> None:
    path = redaction_noise.CORPORA[name]
    if not path.exists():
        pytest.skip(f"{path.name} not written yet")
    items = redaction_noise.load(path)
    clean_floor, noisy_floor = DEVELOPMENT[name]
    for score, card_floor in (
        (redaction_noise.score([recognizer_noise.clean_case(i) for i in items]), clean_floor),
        # Noisy: cards split across utterances with long remarks and no cue still leak.
        (redaction_noise.score(redaction_noise.noisy_cases(items, SEED, 1)), noisy_floor),
    ):
        found, _, total = score.recall["CREDIT_CARD"]
        assert found / total >= card_floor, f"cards {found}/{total}"
        kept, total = score.negatives
        assert kept / total >= NEGATIVES_FLOOR[name], f"negatives kept {kept}/{total}"


def test_the_noise_model_is_deterministic(items: list[dict]) -> None:
    a = [c.turns for c in redaction_noise.noisy_cases(items[:40], 7, 2)]
    b = [c.turns for c in redaction_noise.noisy_cases(items[:40], 7, 2)]
    assert a == b
    case = recognizer_noise.noisy_case(items[0], random.Random(1))
    for s in case.secrets:
        assert 0 <= s.start < s.end <= len(case.turns[s.turn])


def test_a_read_back_skips_years_amounts_and_references() -> None:
    out = run_call(
        [
            ("my mobile is oh seven seven oh oh nine oh two oh two four", True, 1000),
            ("back in 2024 I think", True, 5000),
            ("the amount was 9020 pounds", True, 8000),
            ("the booking ref is 9020", True, 11000),
        ]
    )
    assert out[1:] == [
        "back in 2024 I think",
        "the amount was 9020 pounds",
        "the booking ref is 9020",
    ]
