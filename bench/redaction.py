"""Redaction benchmark: latency per utterance, callstream's Redactor vs stock Presidio.

Both variants run in one process, pinned to one core (`--core`, default 1), on the same
fixed, seeded utterance sets, interleaved call by call so that noise from other processes
on this shared machine hits both equally:

- **callstream**: `pipeline.privacy.redaction.get_redactor().redact(text)` (what the service does
  at the privacy boundary; construction and its own warm-up are not timed).
- **stock**: Presidio's `AnalyzerEngine(nlp_engine=BlankSpacyNlpEngine("en"),
  supported_languages=["en"])` with its *default* registry (every predefined recognizer,
  default score threshold 0), then `AnonymizerEngine().anonymize(...)` with the default
  operators; one timed span covers analyze + anonymize. The blank spaCy pipeline is the
  same as callstream's (no spaCy model can be installed here). tldextract's module-level
  extractor is pointed at its bundled public-suffix snapshot before either engine is
  built, so neither variant's e-mail check can stall on a network fetch.

Utterances (`build_sets`): for each length (10, 30, 80 whitespace-separated tokens,
exactly) and each form, 25 secret-bearing and 25 harmless contact-centre utterances:

- **lexical**: ASR lexical form, lowercase, no punctuation, numbers as words ("my card
  number is four one one one ...", "john dot smith at contoso dot com");
- **display**: numerals and punctuation ("My card number is 4111 1111 1111 1111.").

Secret-bearing utterances carry one secret (two at 80 tokens): a Luhn-valid card number,
a US phone number, an SSN or an e-mail address (spoken in lexical form, written in display
form). A 16-digit card spoken digit by digit does not fit in 10 words, so 10-word lexical
secrets are phones, SSNs and e-mails only. Harmless utterances carry only ordinary words
and harmless numbers (amounts, times, dates, counts, 5-7 digit order numbers, years); the
secret-bearing ones at 30 and 80 tokens carry one of those too. The fillers contain no
digits, digit words or names.

Timing: one untimed warm-up pass over every utterance with both variants, then `--rounds`
rounds; each round visits every (length, form, utterance) in a fresh seeded order and
times both variants back to back (`time.perf_counter_ns`), alternating which goes first.
`gc.collect()` runs between rounds (GC stays enabled, as in the service). Reported per
length, variant and form: n calls, p50, p99 and mean over all the round's calls pooled,
the ratio to stock of the pooled p50 and p99, and the median over rounds of the per-round
p50 ratio (the figure least moved by a noisy stretch). `steal`/`other`: share of the
pinned core stolen by the hypervisor / used by other processes while timing (/proc/stat).

Leaks (for information, from the warm-up pass): a secret-bearing utterance counts as
leaked if, after redaction, with digit words turned into digits ("oh" = 0), a run of
9 or more digits is visible that holds 9 consecutive digits of one of its card / phone /
SSN numbers (separators " -.()/+" allowed between digits; these all have 9+ digits), or
its e-mail address or the address's local part ("john dot smith", "john.smith") is
visible. Crude, but it shows why stock Presidio is not enough for
speech. "harmless altered" counts harmless utterances whose text was changed at all.

    /tmp/venv/bin/python bench/redaction.py               # 20 rounds: 1,000 calls per row; ~30 s
    /tmp/venv/bin/python bench/redaction.py --quick       # 3 rounds, smoke run
    /tmp/venv/bin/python bench/redaction.py --rounds 40 --json /tmp/redaction.json
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import random
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from procstat import core_busy_s  # noqa: E402  (bench/ is on sys.path when run as a script)

LENGTHS = (10, 30, 80)
FORMS = ("lexical", "display")
VARIANTS = ("callstream", "stock")

# ------------------------------------------------------------------ number words

_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_ORD = {
    1: "first",
    2: "second",
    3: "third",
    4: "fourth",
    5: "fifth",
    6: "sixth",
    7: "seventh",
    8: "eighth",
    9: "ninth",
    10: "tenth",
    11: "eleventh",
    12: "twelfth",
    13: "thirteenth",
    14: "fourteenth",
    15: "fifteenth",
    16: "sixteenth",
    17: "seventeenth",
    18: "eighteenth",
    19: "nineteenth",
    20: "twentieth",
    30: "thirtieth",
}
_MONTHS = (
    "January February March April May June July August September October November December".split()
)


def say(n: int) -> str:
    """0..9999 in words, the way a lexical ASR transcript writes it (no "and")."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        t, o = divmod(n, 10)
        return _TENS[t] + (f" {_ONES[o]}" if o else "")
    if n < 1000:
        h, r = divmod(n, 100)
        return f"{_ONES[h]} hundred" + (f" {say(r)}" if r else "")
    th, r = divmod(n, 1000)
    return f"{say(th)} thousand" + (f" {say(r)}" if r else "")


def say_ordinal(n: int) -> str:
    if n in _ORD:
        return _ORD[n]
    t, o = divmod(n, 10)
    return f"{_TENS[t]} {_ORD[o]}"


def ordinal_suffix(n: int) -> str:
    if 10 <= n % 100 <= 20:
        return f"{n}th"
    return f"{n}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th') }"


def say_digits(digits: str, rng: random.Random, oh: float = 0.0) -> str:
    """Digit by digit; a zero is "oh" with probability `oh` (as people read numbers)."""
    return " ".join(
        ("oh" if rng.random() < oh else "zero") if d == "0" else _ONES[int(d)] for d in digits
    )


# ------------------------------------------------------------------ utterance sets

# Display form; the lexical form is the same words lowercased without punctuation.
# No digits, no digit words ("one", "oh", ...), no names: the leak check relies on it.
FILLERS = [
    "Okay.",
    "Yeah.",
    "Right.",
    "Sure.",
    "Alright.",
    "Um,",
    "So",
    "Perfect.",
    "Great.",
    "Thank you.",
    "I see.",
    "Got it.",
    "Yes please.",
    "Hold on.",
    "Uh huh.",
    "No problem.",
    "Let me check.",
    "Bear with me.",
    "That's correct.",
    "Just a moment.",
    "Is that right?",
    "Let me pull up your account.",
    "I can help you with that.",
    "Can you hear me okay?",
    "I'm calling about my bill.",
    "It says payment declined.",
    "I've been waiting for a while.",
    "Can you confirm that for me?",
    "I just want to make sure it's right.",
    "Let me put you on a brief hold.",
    "The app keeps logging me out.",
    "I'd like to update my details.",
    "Thanks for your patience today.",
    "I'm going to verify a few things first.",
    "I'll read it out slowly for you.",
    "That should be everything you need.",
    "I didn't get the confirmation email yet.",
    "My internet has been dropping every evening.",
    "I was told someone would call me back.",
    "We can waive the late fee this time.",
    "Could you spell that for me please?",
    "I'm not sure I have it handy.",
    "The charge on my statement looks wrong to me.",
    "Is there anything else I can help with?",
    "I'll send you a text when the refund goes through.",
    "Let me transfer you to our billing team.",
    "Would you like me to stay on the line?",
    "I really appreciate you looking into this.",
    "We'll update the record right away.",
    "You should see it on your next statement.",
]


def lexical(display: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s']", "", display.lower())).strip()


@dataclass
class Utterance:
    length: int
    form: str
    kind: str  # "secret" | "harmless"
    text: str
    secrets: list[dict] = field(default_factory=list)  # {"kind", "digits"|"email", "local"}


def luhn_complete(prefix: str, total: int, rng: random.Random) -> str:
    body = prefix + "".join(rng.choice("0123456789") for _ in range(total - len(prefix) - 1))
    s = 0
    for i, d in enumerate(reversed(body)):
        v = int(d) * (2 if i % 2 == 0 else 1)
        s += v - 9 if v > 9 else v
    return body + str((10 - s % 10) % 10)


FIRST = "john maria david sarah michael linda james emily robert laura kevin".split()
LAST = "smith garcia johnson brown miller davis wilson moore taylor anderson".split()
DOMAINS = [
    ("contoso", "com"),
    ("gmail", "com"),
    ("outlook", "com"),
    ("yahoo", "com"),
    ("fabrikam", "net"),
    ("hotmail", "co uk"),
]
AREA = [212, 312, 415, 206, 617, 404, 713, 303, 602, 305, 646, 718, 972, 480, 512]


def secret_core(kind: str, form: str, rng: random.Random, budget: int) -> tuple[str, dict] | None:
    """(display-or-lexical phrase, secret record) with at most `budget` tokens, or None."""
    lex = form == "lexical"
    if kind == "card":
        brand = rng.choice(["visa", "visa", "mc", "amex", "discover"])
        prefix, total = {
            "visa": ("4", 16),
            "mc": (str(rng.randint(51, 55)), 16),
            "amex": (rng.choice(["34", "37"]), 15),
            "discover": ("6011", 16),
        }[brand]
        num = luhn_complete(prefix, total, rng)
        if lex:
            body = say_digits(num, rng)
        else:
            groups = (
                [num[:4], num[4:10], num[10:]]
                if total == 15
                else [num[i : i + 4] for i in range(0, 16, 4)]
            )
            body = rng.choice([" ".join(groups), "-".join(groups), num])
        leads = [
            "My card number is",
            "The card number is",
            "It's",
            "Sure, it's",
            "Okay, the card is",
            "",
        ]
        rec = {"kind": kind, "digits": num}
    elif kind == "phone":
        a = rng.choice(AREA)
        ex = rng.choice([x for x in range(201, 1000) if x % 100 != 11 and x != 555])
        num = f"{a}{ex}{rng.randint(0, 9999):04d}"
        if lex:
            body = say_digits(num, rng, oh=0.5)
        else:
            body = rng.choice(
                [
                    f"({num[:3]}) {num[3:6]}-{num[6:]}",
                    f"{num[:3]}-{num[3:6]}-{num[6:]}",
                    f"{num[:3]} {num[3:6]} {num[6:]}",
                ]
            )
        leads = ["My phone number is", "You can reach me at", "Call me back on", "It's", ""]
        rec = {"kind": kind, "digits": num}
    elif kind == "ssn":
        area = rng.choice([x for x in range(1, 900) if x != 666])
        num = f"{area:03d}{rng.randint(1, 99):02d}{rng.randint(1, 9999):04d}"
        if lex:
            body = say_digits(num, rng, oh=0.3)
        else:
            body = rng.choice(
                [f"{num[:3]}-{num[3:5]}-{num[5:]}", f"{num[:3]} {num[3:5]} {num[5:]}"]
            )
        leads = ["My social security number is", "The social is", "My SSN is", "It's", ""]
        rec = {"kind": kind, "digits": num}
    else:  # email
        f, last = rng.choice(FIRST), rng.choice(LAST)
        dom, tld = rng.choice(DOMAINS)
        style = rng.choice(["dot", "dot", "initial", "underscore"])
        local_w = {"dot": f"{f}.{last}", "initial": f"{f[0]}{last}", "underscore": f"{f}_{last}"}[
            style
        ]
        local_s = {
            "dot": f"{f} dot {last}",
            "initial": f"{f[0]} {last}",
            "underscore": f"{f} underscore {last}",
        }[style]
        written = f"{local_w}@{dom}.{tld.replace(' ', '.')}"
        spoken = f"{local_s} at {dom} dot {tld.replace(' ', ' dot ')}"
        body = spoken if lex else written
        leads = ["My email is", "The email address is", "Send it to", "It's", ""]
        rec = {
            "kind": kind,
            "email": spoken if lex else written,
            "local": local_s if lex else local_w,
        }
    nbody = len(body.split())
    fits = [ld for ld in leads if len(ld.split()) + nbody <= budget]
    if not fits:
        return None
    lead = rng.choice(fits)
    phrase = f"{lead} {body}." if lead else f"{body}."
    return (lexical(phrase) if lex else phrase), rec


def harmless_core(form: str, rng: random.Random, budget: int = 10) -> str:
    """A phrase with an ordinary number (amount, time, date, count, order number, year)
    of at most `budget` tokens."""
    while True:
        phrase = _harmless_phrase(form, rng)
        if len(phrase.split()) <= budget:
            return phrase


def _harmless_phrase(form: str, rng: random.Random) -> str:
    k = rng.choice(["amount", "dollars", "time", "date", "count", "order", "year", "percent"])
    if k == "amount":
        d, c = rng.randint(2, 999), rng.randint(1, 99)
        lex, disp = f"{say(d)} dollars and {say(c)} cents", f"${d}.{c:02d}"
        lead = rng.choice(
            ["I was charged", "The total was", "There's a fee of", "You'll see a credit of"]
        )
    elif k == "dollars":
        d = rng.randint(5, 2500)
        lex, disp = f"{say(d)} dollars", f"${d:,}"
        lead = rng.choice(["My balance is", "The plan costs", "They took out", "The refund is"])
    elif k == "time":
        h, m = rng.randint(1, 12), rng.choice([0, 15, 30, 45, 10, 20])
        lex = f"{say(h)} o'clock" if m == 0 else f"{say(h)} {say(m)}"
        disp = f"{h}:{m:02d}"
        lead = rng.choice(
            ["I called at", "The technician comes at", "We close at", "It dropped around"]
        )
    elif k == "date":
        mo, day = rng.randrange(12), rng.randint(1, 28)
        lex, disp = (
            f"{_MONTHS[mo].lower()} {say_ordinal(day)}",
            f"{_MONTHS[mo]} {ordinal_suffix(day)}",
        )
        lead = rng.choice(["It was billed on", "The payment is due on", "I ordered it on", "Since"])
    elif k == "count":
        n = rng.randint(2, 30)
        unit = rng.choice(["items", "days", "months", "times", "devices"])
        lex, disp = f"{say(n)} {unit}", f"{n} {unit}"
        lead = rng.choice(["It's been", "I have", "About", "For the last"])
    elif k == "order":
        num = str(rng.randint(10_000, 9_999_999))
        lex, disp = say_digits(num, rng), num
        lead = rng.choice(["My order number is", "The ticket number is", "Reference", "Order"])
    elif k == "year":
        y = rng.randint(2015, 2026)
        lex, disp = f"twenty {say(y - 2000)}", str(y)
        lead = rng.choice(["I've been a customer since", "The contract started in", "Back in"])
    else:
        p = rng.choice([5, 10, 15, 20, 25, 50])
        lex, disp = f"{say(p)} percent", f"{p}%"
        lead = rng.choice(["There's a discount of", "They raised it by", "I got"])
    if form == "lexical":
        return lexical(f"{lead} {lex}")
    return f"{lead} {disp}."


def assemble(n: int, cores: list[str], form: str, rng: random.Random) -> str:
    """`cores` padded with fillers to exactly `n` tokens, cores apart from each other."""
    remaining = n - sum(len(c.split()) for c in cores)
    if remaining < 0:
        raise ValueError("cores too long")
    fillers: list[str] = []
    while remaining:
        fits = [f for f in FILLERS if len(f.split()) <= remaining]
        f = rng.choice(fits)
        fillers.append(f)
        remaining -= len(f.split())
    pieces = list(fillers)
    # Insert the cores at random places, keeping at least one filler between two cores.
    slots = sorted(rng.sample(range(len(pieces) + 1), k=min(len(cores), len(pieces) + 1)))
    if len(slots) < len(cores):  # fewer fillers than gaps: cores back to back
        slots += [slots[-1] if slots else 0] * (len(cores) - len(slots))
    for j, (slot, core) in enumerate(zip(slots, cores, strict=True)):
        pieces.insert(slot + j, core)
    text = " ".join(pieces)
    if form == "lexical":
        text = lexical(text)
    if len(text.split()) != n:
        raise AssertionError(f"built {len(text.split())} tokens, wanted {n}: {text!r}")
    return text


def build_sets(seed: int, per_kind: int = 25) -> list[Utterance]:
    out: list[Utterance] = []
    for n in LENGTHS:
        for form in FORMS:
            rng = random.Random(f"{seed}-{n}-{form}")
            kinds = ["card", "phone", "ssn", "email"]
            for i in range(per_kind):
                nsec = 2 if n >= 80 else 1
                want = [kinds[(i + j) % 4] for j in range(nsec)]
                cores, recs = [], []
                harmless = harmless_core(form, rng, 8) if n >= 30 else None
                budget = n - (len(harmless.split()) if harmless else 0)
                for kind in want:
                    got = None
                    for k in [kind] + kinds:  # a card does not fit in 10 spoken words
                        got = secret_core(k, form, rng, budget - sum(len(c.split()) for c in cores))
                        if got:
                            break
                    if got is None:
                        raise AssertionError("no secret fits")
                    cores.append(got[0])
                    recs.append(got[1])
                if harmless:
                    cores.insert(rng.randrange(len(cores) + 1), harmless)
                out.append(Utterance(n, form, "secret", assemble(n, cores, form, rng), recs))
            for _ in range(per_kind):
                count = {10: 1, 30: rng.randint(1, 2), 80: rng.randint(2, 3)}[n]
                cores = [harmless_core(form, rng, n // count) for _ in range(count)]
                out.append(Utterance(n, form, "harmless", assemble(n, cores, form, rng)))
    return out


# ------------------------------------------------------------------ leak check

_DIGIT_WORDS = {w: str(i) for i, w in enumerate(_ONES[:10])} | {"oh": "0"}
_DIGIT_RUN = re.compile(r"\d(?:[\s\-.()/+]*\d){8,}")


def digit_runs(text: str) -> list[str]:
    """The digits of each run of 9+ digits, after turning digit words into digits."""
    norm = re.sub(r"[A-Za-z']+", lambda m: _DIGIT_WORDS.get(m.group().lower(), m.group()), text)
    return [re.sub(r"\D", "", m.group()) for m in _DIGIT_RUN.finditer(norm)]


def leaked(u: Utterance, out: str) -> list[str]:
    """Kinds of u's secrets still visible in `out` (crude; see the module docstring)."""
    kinds = []
    low = out.lower()
    runs = digit_runs(out)
    for s in u.secrets:
        if s["kind"] == "email":
            local = re.escape(s["local"].lower())
            if s["email"].lower() in low or re.search(rf"(?<![\w.]){local}(?![\w])", low):
                kinds.append("email")
        else:
            d = s["digits"]
            if any(d[i : i + 9] in r for r in runs for i in range(len(d) - 8)):
                kinds.append(s["kind"])
    return kinds


# ------------------------------------------------------------------ machinery


def own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def machine_info() -> dict:
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next(
                (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), ""
            )
    except OSError:
        pass

    def git(*a: str) -> str:
        try:
            return subprocess.run(
                ["git", *a], cwd=REPO, capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    red = REPO / "pipeline" / "privacy" / "redaction.py"
    vers = {}
    for pkg in ("presidio-analyzer", "presidio-anonymizer", "spacy", "phonenumbers"):
        try:
            vers[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            vers[pkg] = None
    return {
        "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": sys.version.split()[0],
        "versions": vers,
        "git_head": git("rev-parse", "--short", "HEAD"),
        "redaction_py_dirty": bool(git("status", "--porcelain", "pipeline/privacy/redaction.py")),
        "redaction_py_sha256": hashlib.sha256(red.read_bytes()).hexdigest()[:12]
        if red.exists()
        else None,
    }


def build_variants() -> dict[str, Callable[[str], str]]:
    import tldextract
    import tldextract.tldextract

    # The stock e-mail recognizer calls tldextract.extract, whose default extractor fetches
    # the public-suffix list over the network on first use: use the bundled snapshot.
    tldextract.tldextract.TLD_EXTRACTOR = tldextract.TLDExtract(
        suffix_list_urls=(), cache_dir=None, fallback_to_snapshot=True
    )
    from presidio_analyzer import AnalyzerEngine
    from presidio_anonymizer import AnonymizerEngine

    from pipeline.privacy.presidio_setup import BlankSpacyNlpEngine
    from pipeline.privacy.redaction import get_redactor

    redactor = get_redactor()
    analyzer = AnalyzerEngine(nlp_engine=BlankSpacyNlpEngine("en"), supported_languages=["en"])
    anonymizer = AnonymizerEngine()

    def callstream(text: str) -> str:
        return redactor.redact(text).text

    def stock(text: str) -> str:
        results = analyzer.analyze(text=text, language="en")
        return anonymizer.anonymize(text=text, analyzer_results=results).text

    return {"callstream": callstream, "stock": stock}


# ------------------------------------------------------------------ main


def run(args: argparse.Namespace) -> int:
    os.sched_setaffinity(0, {args.core})
    info = machine_info()
    utts = build_sets(args.seed)
    t = time.perf_counter()
    variants = build_variants()
    print(
        f"# {info['date_utc']} UTC  nproc={info['nproc']}  cpu={info['cpu_model']!r}  "
        f"python {info['python']}  presidio {info['versions']['presidio-analyzer']}  "
        f"spacy {info['versions']['spacy']}  HEAD {info['git_head']}"
        f"{' (pipeline/privacy/redaction.py modified)' if info['redaction_py_dirty'] else ''}  "
        f"pinned to core {args.core}; engines built in {time.perf_counter() - t:.1f} s",
        flush=True,
    )
    print(
        f"# {len(utts)} utterances ({', '.join(f'{n} tokens' for n in LENGTHS)} x lexical/display x "
        f"25 secret + 25 harmless), {args.rounds} rounds, both variants per utterance per round",
        flush=True,
    )

    # Warm-up pass (untimed); its outputs feed the leak count.
    outputs: dict[str, list[str]] = {v: [fn(u.text) for u in utts] for v, fn in variants.items()}

    # times[(length, variant, form)] -> list of (round, kind, ns)
    times: dict[tuple[int, str, str], list[tuple[int, str, int]]] = {
        (n, v, f): [] for n in LENGTHS for v in VARIANTS for f in FORMS
    }
    order_rng = random.Random(f"{args.seed}-order")
    clock = time.perf_counter_ns
    fns = [(v, variants[v]) for v in VARIANTS]
    busy0, steal0 = core_busy_s(args.core)
    own0, wall0 = own_cpu_s(), time.perf_counter()
    rounds_noise = []
    for rnd in range(args.rounds):
        gc.collect()
        rb, rs, ro, rw = *core_busy_s(args.core), own_cpu_s(), time.perf_counter()
        idx = list(range(len(utts)))
        order_rng.shuffle(idx)
        for k, i in enumerate(idx):
            u = utts[i]
            pair = fns if (k + rnd) % 2 == 0 else fns[::-1]
            for name, fn in pair:
                t0 = clock()
                fn(u.text)
                dt = clock() - t0
                times[(u.length, name, u.form)].append((rnd, u.kind, dt))
        b, s = core_busy_s(args.core)
        w = time.perf_counter() - rw
        rounds_noise.append(
            {
                "round": rnd,
                "wall_s": round(w, 2),
                "steal": round((s - rs) / w, 3),
                "other": round(max(0.0, (b - rb) - (own_cpu_s() - ro)) / w, 3),
            }
        )
    wall = time.perf_counter() - wall0
    busy1, steal1 = core_busy_s(args.core)
    other = max(0.0, (busy1 - busy0) - (own_cpu_s() - own0)) / wall
    steal = (steal1 - steal0) / wall

    # ---- summary
    def stats(samples: list[tuple[int, str, int]]) -> dict:
        ms = [ns / 1e6 for _, _, ns in samples]
        return {
            "n": len(ms),
            "p50_ms": statistics.median(ms),
            "p99_ms": pct(ms, 0.99),
            "mean_ms": statistics.fmean(ms),
        }

    def round_p50(samples: list[tuple[int, str, int]]) -> dict[int, float]:
        by: dict[int, list[int]] = {}
        for r, _, ns in samples:
            by.setdefault(r, []).append(ns)
        return {r: statistics.median(v) for r, v in by.items()}

    summary = []
    print()
    print(
        "| length | variant | form | n | p50 ms | p99 ms | mean ms | p50 ratio | p99 ratio "
        "| p50 ratio, median of rounds |"
    )
    print("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for n in LENGTHS:
        for v in VARIANTS:
            for f in (*FORMS, "both"):
                forms = FORMS if f == "both" else (f,)
                sam = [x for ff in forms for x in times[(n, v, ff)]]
                ref = [x for ff in forms for x in times[(n, "stock", ff)]]
                st, rs_ = stats(sam), stats(ref)
                rp, rr = round_p50(sam), round_p50(ref)
                per_round = statistics.median(rp[r] / rr[r] for r in rp)
                row = {
                    "length": n,
                    "variant": v,
                    "form": f,
                    **st,
                    "p50_ratio": st["p50_ms"] / rs_["p50_ms"],
                    "p99_ratio": st["p99_ms"] / rs_["p99_ms"],
                    "p50_ratio_median_of_rounds": per_round,
                }
                for kind in ("secret", "harmless"):
                    ks = [x for x in sam if x[1] == kind]
                    row[f"{kind}_p50_ms"] = statistics.median(ns / 1e6 for _, _, ns in ks)
                summary.append(row)
                print(
                    f"| {n} | {v} | {f} | {st['n']} | {st['p50_ms']:.2f} | {st['p99_ms']:.2f} | "
                    f"{st['mean_ms']:.2f} | {row['p50_ratio']:.2f}x | {row['p99_ratio']:.2f}x | "
                    f"{per_round:.2f}x |"
                )
    print(
        f"\n# timed {wall:.0f} s; pinned core {args.core}: steal {steal * 100:.1f}%, other processes "
        f"{other * 100:.1f}% (worst round: steal "
        f"{max(r['steal'] for r in rounds_noise) * 100:.1f}%, other {max(r['other'] for r in rounds_noise) * 100:.1f}%)"
    )
    print(
        "# p50 by content (ms, both forms): "
        + "; ".join(
            f"{r['length']}w {r['variant']} secret {r['secret_p50_ms']:.2f} / harmless {r['harmless_p50_ms']:.2f}"
            for r in summary
            if r["form"] == "both"
        )
    )

    # ---- leaks
    leak_rows = []
    by_kind: dict[str, dict[str, int]] = {}
    print(
        "\nLeaks (warm-up outputs): secret-bearing utterances left with a 9+ digit run (digit "
        "words as digits) or an e-mail / its local part visible; harmless utterances changed at all.\n"
    )
    print(
        "| length | form | secret utts | callstream leaked | stock leaked | harmless utts "
        "| callstream altered | stock altered |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for n in LENGTHS:
        for f in FORMS:
            sel = [i for i, u in enumerate(utts) if u.length == n and u.form == f]
            sec = [i for i in sel if utts[i].kind == "secret"]
            har = [i for i in sel if utts[i].kind == "harmless"]
            row = {"length": n, "form": f, "secret": len(sec), "harmless": len(har)}
            for v in VARIANTS:
                row[f"{v}_leaked"] = sum(bool(leaked(utts[i], outputs[v][i])) for i in sec)
                row[f"{v}_altered"] = sum(outputs[v][i] != utts[i].text for i in har)
                for i in sec:
                    lk = leaked(utts[i], outputs[v][i])
                    for s in utts[i].secrets:
                        key = f"{s['kind']} ({f})"
                        d = by_kind.setdefault(key, {"n": 0, "callstream": 0, "stock": 0})
                        d[v] += s["kind"] in lk
                        if v == "stock":
                            d["n"] += 1
            leak_rows.append(row)
            print(
                f"| {n} | {f} | {row['secret']} | {row['callstream_leaked']} | {row['stock_leaked']} | "
                f"{row['harmless']} | {row['callstream_altered']} | {row['stock_altered']} |"
            )
    print("\n| secret (form) | n | callstream leaked | stock leaked |\n|---|---:|---:|---:|")
    for key in sorted(by_kind):
        d = by_kind[key]
        print(f"| {key} | {d['n']} | {d['callstream']} | {d['stock']} |")

    if args.show:
        for v in VARIANTS:
            print(f"\n# {v}: first secret-bearing utterance of each length and form")
            seen = set()
            for i, u in enumerate(utts):
                if u.kind == "secret" and (u.length, u.form) not in seen:
                    seen.add((u.length, u.form))
                    print(f"  in : {u.text}\n  out: {outputs[v][i]}")

    if args.json:
        raw = {f"{n}/{v}/{f}": [[r, k, ns] for r, k, ns in times[(n, v, f)]] for (n, v, f) in times}
        Path(args.json).write_text(
            json.dumps(
                {
                    "machine": info,
                    "args": vars(args),
                    "timed_wall_s": wall,
                    "steal": steal,
                    "other": other,
                    "rounds": rounds_noise,
                    "summary": summary,
                    "leaks": leak_rows,
                    "leaks_by_kind": by_kind,
                    "utterances": [
                        {
                            "length": u.length,
                            "form": u.form,
                            "kind": u.kind,
                            "text": u.text,
                            "secrets": u.secrets,
                            "out": {v: outputs[v][i] for v in VARIANTS},
                        }
                        for i, u in enumerate(utts)
                    ],
                    "raw_ns": raw,
                },  # "length/variant/form": [[round, kind, ns], ...]
                indent=1,
            )
        )
        print(f"\n# wrote {args.json}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(
        description="redaction latency: callstream vs stock Presidio (see docstring)"
    )
    ap.add_argument(
        "--rounds", type=int, default=20, help="passes over every utterance (50 per length/form)"
    )
    ap.add_argument("--quick", action="store_true", help="smoke run: 3 rounds")
    ap.add_argument("--core", type=int, default=1, help="core to pin this process to")
    ap.add_argument(
        "--seed", type=int, default=7, help="seed of the utterance sets and the visiting order"
    )
    ap.add_argument("--show", action="store_true", help="print a sample of inputs and outputs")
    ap.add_argument("--json", help="also write every figure (and the per-call ns) here")
    args = ap.parse_args()
    if args.quick:
        args.rounds = 3
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
