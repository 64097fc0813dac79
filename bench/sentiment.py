"""Added latency of local sentiment (VADER) per utterance, p50/p99.

    /tmp/venv/bin/python bench/sentiment.py            # 20 rounds over 300 utterances

Pinned to one core (`--core`, default 1). The utterances are the redaction benchmark's
(bench/redaction.py: 10, 30 and 80 words, lexical and display forms), redacted first, as
the service rates them. Each call of `LocalSentiment.score` is timed; the same run times
the Redactor on the same texts so the two costs can be compared.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from redaction import build_sets  # noqa: E402  (bench/ is on sys.path when run as a script)

from pipeline.privacy.redaction import get_redactor  # noqa: E402
from workers.enrich.sentiment import LocalSentiment  # noqa: E402


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--core", type=int, default=1)
    args = ap.parse_args()
    os.sched_setaffinity(0, {args.core})
    redactor = get_redactor()
    vader = LocalSentiment()
    sets = build_sets(seed=7)
    by_length: dict[int, list[str]] = {}
    for u in sets:
        by_length.setdefault(u.length, []).append(redactor.redact(u.text).text)
    print(
        f"# {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}  pinned to core {args.core}, {args.rounds} rounds"
    )
    print(
        "| words | n | sentiment p50 ms | p99 ms | redaction p50 ms (same texts) | sentiment / redaction |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for length, texts in sorted(by_length.items()):
        for t in texts:
            vader.score(t)
        s_times: list[float] = []
        r_times: list[float] = []
        for _ in range(args.rounds):
            gc.collect()
            for t in texts:
                t0 = time.perf_counter_ns()
                vader.score(t)
                t1 = time.perf_counter_ns()
                redactor.redact(t)
                t2 = time.perf_counter_ns()
                s_times.append((t1 - t0) / 1e6)
                r_times.append((t2 - t1) / 1e6)
        s50, r50 = statistics.median(s_times), statistics.median(r_times)
        print(
            f"| {length} | {len(s_times)} | {s50:.3f} | {pct(s_times, 99):.3f} | {r50:.3f} | {s50 / r50:.2f}x |"
        )


if __name__ == "__main__":
    main()
