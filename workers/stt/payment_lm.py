"""The payment-window language model: digits first, a few card-reading words beside them.

WHY a model of its own: while a payment window is open the customer reads a card number,
an expiry and a security code. With the full model a telephone channel loses digits to
similar-sounding words ("four" -> "for up", "five five" -> "why the i live"); a unigram
model in which the digit words hold most of the probability finds them (bench/RESULTS.md,
"Speech on telephone audio"), and its search is about ten times cheaper. Other words a
caller says while reading a card stay possible, so "my card number is" is not forced into
digits; everything else in the window is redacted as digits anyway.

    python -m workers.stt.payment_lm    # rewrites assets/payment_digits.{arpa,dict}

The model has a dictionary of its own (its words' pronunciations, copied from the
bundled US-English dictionary): a decoder built on the full 130,000-word dictionary took
5 s to add even this tiny model (it builds its search over every dictionary word), which
would stall a worker at start and whenever its pool grows. With its own dictionary a
digits decoder is ready in about 0.6 s.

tests/test_speech_telephone.py checks that the committed files are what this writes.
"""

from __future__ import annotations

import math
from pathlib import Path

ASSET = Path(__file__).resolve().parent / "assets" / "payment_digits.arpa"
DICT_ASSET = ASSET.with_suffix(".dict")
DIGITS = "zero oh one two three four five six seven eight nine".split()
NUMBERS = (
    "ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty "
    "thirty forty fifty sixty seventy eighty ninety hundred thousand double triple"
).split()
WORDS = (
    "my card number is it's the and a uh um yes no yeah okay sorry expiry expiration date "
    "security code visa mastercard ends ending in of on for that's right correct please "
    "again wait start over slash month year to at i it"
).split()
# Probability mass of each group (and of ending the utterance); uniform within a group.
MASS = {"digits": 0.70, "numbers": 0.12, "words": 0.14, "end": 0.04}


def arpa() -> str:
    probs = {w: MASS["digits"] / len(DIGITS) for w in DIGITS}
    probs.update({w: MASS["numbers"] / len(NUMBERS) for w in NUMBERS})
    probs.update({w: MASS["words"] / len(WORDS) for w in WORDS})
    lines = ["\\data\\", f"ngram 1={len(probs) + 2}", "", "\\1-grams:", "-99.0000 <s> 0.0000"]
    lines += [f"{math.log10(p):.4f} {w} 0.0000" for w, p in probs.items()]
    lines += [f"{math.log10(MASS['end']):.4f} </s>", "", "\\end\\", ""]
    return "\n".join(lines)


def words() -> list[str]:
    return [*DIGITS, *NUMBERS, *WORDS]


def dictionary() -> str:
    """Every pronunciation the bundled dictionary has for the model's words (alternates
    are lines "word(2) ..."), in the model's word order."""
    from pocketsphinx import get_model_path

    wanted = set(words())
    found: dict[str, list[str]] = {}
    with open(Path(get_model_path()) / "en-us" / "cmudict-en-us.dict", encoding="utf-8") as f:
        for line in f:
            head, _, phones = line.strip().partition(" ")
            base = head.split("(", 1)[0]
            if base in wanted:
                found.setdefault(base, []).append(f"{head} {phones.strip()}")
    missing = wanted - set(found)
    if missing:
        raise SystemExit(f"not in the bundled dictionary: {', '.join(sorted(missing))}")
    return "".join(line + "\n" for w in words() for line in found[w])


def main() -> None:
    ASSET.write_text(arpa())
    DICT_ASSET.write_text(dictionary())
    print(f"wrote {ASSET} and {DICT_ASSET}")


if __name__ == "__main__":
    main()
