"""Call analytics and category rules: the figures from talk intervals, the rules file and
each rule alone, and a real call through `serve` whose alerts, analytics events, read API
and exports agree. (Accuracy against a fixture's script: test_analytics_accuracy.py.)"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from pipeline.analytics.alerts import CallRules
from pipeline.analytics.call_analytics import CallAnalytics
from pipeline.analytics.rules import RulesError, load_rules, parse_rules
from pipeline.analytics.talk import Talk, measure
from pipeline.cli.replay import CallAudio, load_call_audio, replay_call

from .conftest import FIXTURES, collect_call_events, run_cli, start_server, start_subscribers

A, C = "agent", "customer"


# ---------------------------------------------------------------- figures from intervals


def test_talk_overlap_silence_and_interruptions_from_intervals() -> None:
    talks = [
        Talk(A, 1000, 4000),  # the agent speaks
        Talk(C, 3500, 6000),  # the customer starts 500 ms before the agent stops: interrupts
        Talk(A, 7000, 8000),
        Talk(C, 7500, 7700),  # a short "yes" inside the agent's line: interrupts too
        Talk(A, 10000, 12000),  # after a 2 s pause: not an interruption
        Talk(C, 10000, 11000),  # both start together: nobody interrupts
    ]
    fig = measure(talks, 15000)
    assert fig.talk_ms == {A: 3000 + 1000 + 2000, C: 2500 + 200 + 1000}
    assert fig.overlap_ms == 500 + 200 + 1000
    assert fig.interruptions == {A: 0, C: 2}
    # anyone: 1000-6000, 7000-8000, 10000-12000 = 8000 of 15000
    assert fig.speech_ms == 8000 and fig.silence_ms == 7000


def test_two_agents_at_once_count_once_and_the_customer_is_not_overlapped() -> None:
    fig = measure([Talk(A, 0, 2000), Talk(A, 1000, 3000), Talk(C, 5000, 6000)], 6000)
    assert fig.talk_ms == {A: 3000, C: 1000} and fig.overlap_ms == 0
    assert fig.interruptions == {A: 0, C: 0}


def test_longest_monologue_merges_short_pauses_and_ends_when_the_other_speaks() -> None:
    talks = [
        Talk(A, 0, 3000),
        Talk(A, 4000, 9000),  # a 1 s pause: the same monologue (0-9000)
        Talk(C, 9500, 10000),
        Talk(A, 10500, 12000),  # the customer spoke in between: a new one
        Talk(A, 15000, 16000),  # 3 s later: a new one
    ]
    assert measure(talks, 20000).longest_monologue_ms == {A: 9000, C: 500}


def test_an_interval_past_the_end_is_cut_at_the_end() -> None:
    fig = measure([Talk(C, 1000, 9000)], 5000)
    assert fig.silence_ms == 1000


class _Vad:
    def __init__(self, voiced_end: int) -> None:
        self.last_voiced_end_ms = voiced_end
        self.clock_ms = voiced_end


def test_the_snapshot_counts_open_utterances_so_far_and_mixed_audio_says_what_it_cannot() -> None:
    events: list = []
    ca = CallAnalytics("c", (), events.append)
    agent, customer = object(), object()
    ca.talk_started(agent, A, 1000, _Vad(3000))
    ca.talk_ended(agent, 3000, keep=True)
    vad = _Vad(5000)
    ca.talk_started(customer, C, 4000, vad)  # still speaking
    snap = ca.snapshot(6000)
    assert (snap.talkMs.agent, snap.talkMs.customer, snap.silenceMs) == (2000, 1000, 3000)
    ca.final(C, "4:~x", "u2", 4000, "one two three four five six")
    assert snap.final is False and ca.snapshot(6000).wordsPerMinute.customer == 360.0
    ca.talk_ended(customer, 5200, keep=False)  # a click: not talk
    assert ca.snapshot(6000).talkMs.customer == 0

    ca.mixed = True
    mixed = ca.snapshot(6000, final=True)
    assert mixed.talkMs.agent is None and mixed.overlapMs is None and mixed.final
    assert set(mixed.unavailable) >= {"talkMs", "overlapMs", "interruptions", "sentimentTrend"}
    assert mixed.silenceMs == 4000
    assert events == []  # no rules: no alerts


def test_sentiment_trend_is_the_mean_per_quarter_of_the_call() -> None:
    ca = CallAnalytics("c", (), lambda e: None)
    for uid, start, score in (
        ("u1", 0, 0.5),
        ("u2", 1000, -0.5),
        ("u3", 2600, 0.25),
        ("u4", 3999, 1),
    ):
        ca.final(C, "4:~x", uid, start, "text")
        ca.sentiment(C, "4:~x", uid, score)
    trend = ca.snapshot(4000).sentimentTrend
    assert trend.customer == [0.5, -0.5, 0.25, 1.0] and trend.agent == [None] * 4


def test_analytics_carry_across_a_hand_over() -> None:
    old = CallAnalytics("c", load_rules(None), lambda e: None)
    old.talk_started(1, A, 0, _Vad(2000))
    old.talk_ended(1, 2000, keep=True)
    old.final(C, "4:~x", "u1", 2500, "i want to cancel my account now")
    new = CallAnalytics("c", load_rules(None), lambda e: None)
    new.restore(json.loads(json.dumps(old.export())))
    assert new.snapshot(3000) == old.snapshot(3000)
    assert new.snapshot(3000).categories == {"churn-risk": 1}


# ---------------------------------------------------------------- the rules file


def test_the_default_rules_load_and_have_each_kind() -> None:
    rules = load_rules(None)
    assert {r.metric for r in rules} == {None, "silence", "sentiment", "interruptions"}
    assert len({r.name for r in rules}) == len(rules)


@pytest.mark.parametrize(
    ("toml", "says"),
    [
        ('[[rule]]\nname="a"\ncategory="x"\nphrases=["p"]\ncolour="red"', "colour"),
        ('[[rule]]\nname="a"\ncategory="x"\nseverity="urgent"\nphrases=["p"]', "severity"),
        ('[[rule]]\nname="a"\ncategory="x"', "needs phrases"),
        ('[[rule]]\nname="a"\ncategory="x"\nphrases=["  ", "!"]', "needs phrases"),
        ('[[rule]]\nname="a"\ncategory="x"\nphrases=["p"]\nmetric="silence"\nseconds=3', "not both"),
        ('[[rule]]\nname="a"\ncategory="x"\nmetric="silence"', "needs seconds"),
        ('[[rule]]\nname="a"\ncategory="x"\nmetric="silence"\nseconds=0', "above 0"),
        ('[[rule]]\nname="a"\ncategory="x"\nmetric="sentiment"\nbelow=-0.2', "needs utterances"),
        ('[[rule]]\nname="a"\ncategory="x"\nmetric="sentiment"\nbelow=2\nutterances=1', "between"),
        ('[[rule]]\nname="a"\ncategory="x"\nmetric="loudness"', "metric"),
        ('[[rule]]\nname="a"\ncategory="x"\nphrases=["p"]\n[[rule]]\nname="a"\ncategory="y"\nphrases=["q"]', "second rule"),
        ("[[rule]\nname=", "not valid TOML"),
        ('[[rule]]\nname=""\ncategory="x"\nphrases=["p"]', "blank"),
        ('[[rule]]\nname="a"\ncategory="x"\nmetric="silence"\nseconds=nan', "finite"),
        ('[[rule]]\nname="a"\ncategory="x"\nmetric="sentiment"\nbelow=-inf\nutterances=2', "finite"),
        ('[[rule]]\nname="a"\ncategory="x"\nmetric="silence"\nseconds=5\nbelow=-0.2', "below does not apply"),
        ('[[rule]]\nname="a"\ncategory="x"\nphrases=["p"]\nseconds=5', "does not apply to a phrase rule"),
    ],
)  # fmt: skip
def test_a_bad_rules_file_is_refused_naming_what_is_wrong(toml: str, says: str) -> None:
    with pytest.raises(RulesError) as caught:
        parse_rules(toml.encode(), "rules.toml")
    message = str(caught.value)
    assert message.startswith("rules.toml") and says in message and "\n" not in message


def test_serve_refuses_a_bad_categories_file_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "categories.toml"
    bad.write_text('[[rule]]\nname="a"\ncategory="x"\nmetric="silence"\n')
    for path, says in ((bad, "needs seconds"), (tmp_path / "missing.toml", "no such file")):
        result = run_cli(
            "serve", "--port", "0", "--data-dir", str(tmp_path / "d"),
            env={"PATH": "/usr/bin:/bin", "CALLSTREAM_CATEGORIES_FILE": str(path)}, timeout=60,
        )  # fmt: skip
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "CALLSTREAM_CATEGORIES_FILE" in lines[0] and says in lines[0]
        assert "Traceback" not in result.stderr


# ---------------------------------------------------------------- each rule alone


def _rules(toml: str) -> CallRules:
    return CallRules(parse_rules(toml.encode(), "test"))


def test_a_phrase_rule_matches_words_not_parts_of_words_for_its_role_only() -> None:
    rules = _rules(
        '[[rule]]\nname="cancel"\ncategory="churn-risk"\nseverity="high"\nrole="customer"\n'
        'phrases=["Cancel my account"]'
    )
    hit = rules.on_final(C, "4:~x", "u1", "I want to CANCEL, my  account!")
    assert [(m.rule.name, m.participant, m.utterance_id) for m in hit] == [("cancel", "4:~x", "u1")]
    assert rules.on_final(A, "8:acs:a", "u2", "cancel my account") == []  # the agent's words
    assert rules.on_final(C, "4:~x", "u3", "cancel my accounts") == []  # another word
    assert rules.on_final(C, "4:~x", "u4", "precancel my account") == []
    assert rules.categories == {"churn-risk": 1}


def test_the_sentiment_rule_fires_after_n_low_finals_in_a_row_then_counts_again() -> None:
    rules = _rules(
        '[[rule]]\nname="low"\ncategory="unhappy"\nrole="customer"\nmetric="sentiment"\n'
        "below=-0.3\nutterances=2"
    )
    scores = [-0.5, 0.1, -0.4, -0.9, -0.6, -0.8]  # fires at the 4th (2 in a row) and the 6th
    fired = [bool(rules.on_sentiment(C, "4:~x", f"u{i}", s)) for i, s in enumerate(scores)]
    assert fired == [False, False, False, True, False, True]
    assert rules.on_sentiment(A, "8:acs:a", "a1", -1.0) == []


def test_the_silence_rule_fires_once_per_stretch() -> None:
    rules = _rules('[[rule]]\nname="dead-air"\ncategory="silence"\nmetric="silence"\nseconds=5')
    assert rules.on_silence(1000, 5999) == []
    assert len(rules.on_silence(1000, 6000)) == 1
    assert rules.on_silence(1000, 9000) == []  # the same stretch goes on
    assert len(rules.on_silence(12000, 20000)) == 1  # a new one


def test_the_interruption_rule_counts_the_last_minute_and_fires_at_most_once_a_minute() -> None:
    rules = _rules(
        '[[rule]]\nname="over"\ncategory="interruptions"\nrole="agent"\nmetric="interruptions"\n'
        "per_minute=2"
    )
    talks: list[Talk] = []
    fired = []
    for i in range(6):  # the agent cuts into the customer every 5 s
        base = i * 5000
        talks += [Talk(C, base, base + 3000), Talk(A, base + 2000, base + 4000)]
        fired.append(bool(rules.on_talk(talks, base + 4000)))
    assert fired == [False, False, True, False, False, False]
    late = [Talk(C, 200000 + i * 5000, 203000 + i * 5000) for i in range(3)]
    late += [Talk(A, 202000 + i * 5000, 204000 + i * 5000) for i in range(3)]
    assert rules.on_talk(talks + late, 214000)  # a minute later, over the limit again


def test_on_mixed_audio_a_speaker_of_no_known_role_may_be_anyone() -> None:
    rules = _rules(
        '[[rule]]\nname="manager"\ncategory="escalation"\nrole="customer"\n'
        'phrases=["speak to a manager"]'
    )
    assert rules.on_final("unknown", "mixed", "u1", "I want to speak to a manager")


def test_the_rules_state_goes_along_with_a_hand_over() -> None:
    toml = (
        '[[rule]]\nname="dead-air"\ncategory="silence"\nmetric="silence"\nseconds=5\n'
        '[[rule]]\nname="low"\ncategory="unhappy"\nmetric="sentiment"\nbelow=0\nutterances=2'
    )
    old = _rules(toml)
    assert old.on_silence(1000, 7000) and not old.on_sentiment(C, "4:~x", "u1", -0.5)
    new = _rules(toml)
    new.restore(json.loads(json.dumps(old.export())))
    assert new.on_silence(1000, 9000) == []  # the same stretch fired on the old replica
    assert new.on_sentiment(C, "4:~x", "u2", -0.5)  # the run of low finals went on
    assert new.categories == {"silence": 1, "unhappy": 1}


def test_a_channel_that_stopped_mid_utterance_does_not_hold_off_dead_air_forever() -> None:
    events: list = []
    rules = parse_rules(
        b'[[rule]]\nname="dead-air"\ncategory="silence"\nmetric="silence"\nseconds=5', "t"
    )
    ca = CallAnalytics("c", rules, events.append)
    ca.talk_started(1, A, 1000, _Vad(2000))  # the expert's audio stops at 2 s, mid-word
    ca.tick(3000)
    assert events == []
    ca.tick(8000)  # 6 s with nothing from that channel
    assert [e.rule for e in events] == ["dead-air"]


def test_nothing_is_counted_or_said_after_the_final_analytics() -> None:
    events: list = []
    ca = CallAnalytics("c", load_rules(None), events.append)
    ca.snapshot(1000, final=True)
    ca.final(C, "4:~x", "u9", 900, "i want to cancel my account")  # a late final
    assert events == [] and ca.words[C] == 0


# ---------------------------------------------------------------- a real call


RULES = """
[[rule]]
name = "line-down"
category = "outage"
severity = "high"
role = "customer"
phrases = ["not working"]

[[rule]]
name = "agent-morning"
category = "never"
role = "agent"
phrases = ["since this morning"]   # the customer says it, not the agent: never fires

[[rule]]
name = "dead-air"
category = "silence"
severity = "medium"
metric = "silence"
seconds = 4

[[rule]]
name = "flat-customer"
category = "flat"
severity = "low"
role = "customer"
metric = "sentiment"
below = 0.9
utterances = 2
"""


def _with_silence(audio: CallAudio, at_s: float, seconds: float) -> CallAudio:
    """The call with ``seconds`` of digital silence on every track from ``at_s``."""
    cut = int(audio.rate * at_s) * 2
    pad = bytes(int(audio.rate * seconds) * 2)
    return CallAudio(audio.rate, [(p, pcm[:cut] + pad + pcm[cut:]) for p, pcm in audio.tracks])


async def test_a_call_publishes_alerts_and_analytics_and_its_exports_carry_them(tmp_path) -> None:
    rules = tmp_path / "categories.toml"
    rules.write_text(RULES)
    server = start_server(
        tmp_path, CALLSTREAM_STT="local", CALLSTREAM_CATEGORIES_FILE=str(rules),
        CALLSTREAM_ANALYTICS_INTERVAL_S="0.5",
    )  # fmt: skip
    try:
        call_id = "analytics-call"
        # support_call with a 5 s silence between the customer's "since this morning"
        # (ends 11.18 s) and the agent's next line (11.98 s): the only gap over 4 s.
        audio = _with_silence(load_call_audio(FIXTURES / "support_call.wav"), 11.5, 5.0)
        [collector] = await start_subscribers(server, collect_call_events(server.ws, call_id))
        await replay_call(f"{server.ws}/media", audio, call_id, speed=4.0)
        events = await collector

        alerts = [e for e in events if e["type"] == "alert"]
        finals = {e["utteranceId"]: e for e in events if e["type"] == "transcript.final"}
        by_rule: dict[str, list[dict]] = {}
        for a in alerts:
            by_rule.setdefault(a["rule"], []).append(a)
        [down] = by_rule["line-down"]
        assert down["category"] == "outage" and down["severity"] == "high"
        assert "not working" in finals[down["utteranceId"]]["text"]
        assert down["participant"] == finals[down["utteranceId"]]["participant"]
        assert "agent-morning" not in by_rule
        [dead] = by_rule["dead-air"]
        assert dead["participant"] is None and dead["utteranceId"] is None
        customer_finals = [e for e in finals.values() if e["role"] == "customer"]
        assert len(by_rule["flat-customer"]) == len(customer_finals) // 2

        analytics = [e for e in events if e["type"] == "analytics"]
        live, last = analytics[:-1], analytics[-1]
        assert live and not any(e["final"] for e in live), "live analytics while the call goes on"
        assert last["final"] and events[-2] is last and events[-1]["type"] == "call.ended"
        durations = [e["durationMs"] for e in analytics]
        assert durations == sorted(durations)
        assert abs(last["durationMs"] - len(audio.tracks[0][1]) // 32) <= 40
        assert last["categories"] == {
            "outage": 1, "silence": 1, "flat": len(by_rule["flat-customer"])
        }  # fmt: skip
        assert last["silenceMs"] > 5000 and last["talkMs"]["agent"] > 5000
        assert last["unavailable"] == []

        # The read API gives the final analytics; the exports carry them.
        status, body = server.get_json(f"/calls/{call_id}/analytics")
        assert status == 200 and body == last
        assert server.get_json("/calls/no-such-call/analytics")[0] == 404
        data = ["--data-dir", str(server.data_dir)]
        txt = run_cli("export", call_id, "--format", "txt", *data)
        assert txt.returncode == 0, txt.stderr
        assert "--- alert: outage (high, rule line-down" in txt.stdout
        assert "Analytics (final" in txt.stdout and "categories: flat" in txt.stdout
        out = tmp_path / "call.csv"
        exported = run_cli("export", call_id, "--format", "csv", "--out", str(out), *data)
        assert exported.returncode == 0, exported.stderr
        rows = dict(csv.reader(io.StringIO(out.with_name("call.csv.analytics.csv").read_text())))
        assert rows["talkMs.agent"] == str(last["talkMs"]["agent"])
        assert rows["category.outage"] == "1" and rows["final"] == "true"
    finally:
        server.stop()
