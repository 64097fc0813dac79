"""The payment guard's state machine alone, and its hold on a remote speech engine."""

from __future__ import annotations

from models.settings import load_settings
from pipeline.pci.payment_guard import GuardPolicy, PaymentGuard
from workers.stt.base import Capabilities

from .conftest import payment_call_session

SETTINGS = load_settings(environ={})


def guard(**overrides: object) -> PaymentGuard:
    return PaymentGuard(GuardPolicy.from_settings(load_settings(environ={}, overrides=overrides)))


def test_intent_opens_closing_phrase_closes_and_the_same_utterance_cannot_reopen() -> None:
    g = guard()
    d = g.on_text("sure, can I take the card number?", "agent", 0, 1200)
    assert (d.action, d.trigger, d.window.start_ms) == ("open", "intent", 1200)
    assert g.on_text("can I take the card number", "agent", 0, 1300) is None  # already open
    d = g.on_text("thank you, your payment has gone through", "agent", 30000, 31000)
    assert (d.action, d.trigger, d.window.end_ms) == ("close", "phrase", 31000)
    # Late partials of utterances spoken before the close do not reopen it ...
    assert (
        g.on_text("your card payment has gone through, take a payment", "agent", 30000, 31500)
        is None
    )
    # ... a new utterance does.
    assert (
        g.on_text("I'd like to take a payment for the other account", "agent", 32000, 33000).action
        == "open"
    )


def test_a_manual_window_is_not_closed_by_the_line_that_closed_the_last_one() -> None:
    g = guard()
    g.on_text("can I take the card number", "agent", 0, 1000)
    assert g.on_text("thanks, your payment has gone", "agent", 9000, 9800) is None
    assert (
        g.on_text("thanks, your payment has gone through", "agent", 9000, 10000).action == "close"
    )
    assert g.manual("pause", 10500).trigger == "manual"  # the agent pauses by hand
    # The final of the same closing line arrives: the manual window stays open.
    assert g.on_text("thanks, your payment has gone through.", "agent", 9000, 10600) is None
    assert g.is_open
    assert g.manual("resume", 12000).trigger == "manual"


def test_phrases_are_whole_words_and_configurable() -> None:
    g = guard(payment_intent_phrases="pay now|tarjeta")
    assert g.on_text("the card number is on file", "agent", 0, 100) is None
    assert g.on_text("repay nowhere", "agent", 0, 100) is None
    assert g.on_text("quiero pagar con tarjeta", "customer", 0, 200).trigger == "intent"
    assert guard(payment_intent_phrases="").on_text("card number", "agent", 0, 1) is None


def test_a_card_like_digit_run_is_a_late_trigger_with_exposure() -> None:
    g = guard()
    assert g.on_text("my order is one two three four", "customer", 0, 500) is None
    d = g.on_text("it's four one one one one one one one one", "customer", 2000, 2600)
    assert (d.trigger, d.window.exposure_from_ms) == ("digits", 2000)
    g.confirmed(2700)
    assert d.window.exposures == [(2000, 2700)]


def test_quiet_period_and_maximum_window() -> None:
    g = guard(payment_quiet_s=20, payment_max_s=60)
    g.on_text("can I take the card number", "agent", 0, 1000)
    assert g.check_timers(20000) is None
    g.on_text("four one one one", "customer", 5000, 15000)  # a digit moves the quiet period on
    assert g.check_timers(34000) is None
    assert g.check_timers(35000).trigger == "timeout"
    g.on_dtmf(40000)
    assert g.window.trigger == "dtmf"
    for t in range(41000, 100000, 10000):
        g.on_dtmf(t)  # tones keep it from going quiet ...
    assert g.check_timers(100000).trigger == "timeout"  # ... but not past the maximum


def test_exposure_only_when_the_customer_spoke_before_the_pause_took_effect() -> None:
    g = guard()
    w = g.on_text("can I take the card number", "agent", 0, 1000).window
    g.on_text("can I take the card number please", "agent", 0, 1100)  # the agent, not exposure
    g.confirmed(1150)
    g.on_customer_speech(1500)
    assert w.exposures == []
    assert g.on_text("thanks, payment is complete", "agent", 9000, 9500).action == "close"
    w2 = g.on_text("take a payment", "agent", 10000, 10000).window
    g.on_customer_speech(10100)
    g.confirmed(10900)
    assert w2.exposures == [(10000, 10900)]


def test_speech_that_began_before_the_confirmation_is_an_exposure_though_detected_after() -> None:
    """The VAD says an utterance began 140-200 ms after its first voiced frame: the
    customer's first word, begun 80 ms before ACS confirmed the pause and detected 100 ms
    after, was on the recording."""
    g = guard()
    w = g.on_text("can I take the card number", "agent", 0, 1000).window
    g.confirmed(1500)
    assert g.on_customer_speech(1600, onset_ms=1420) is w
    assert w.exposures == [(1000, 1500)]
    assert g.on_customer_speech(1900, onset_ms=1700) is None  # after it: nothing more
    assert w.exposures == [(1000, 1500)]
    g.on_text("thanks, payment is complete", "agent", 9000, 9500)
    w2 = g.on_text("take a payment", "agent", 10000, 10000).window
    g.confirmed(10300)
    assert g.on_customer_speech(10500, onset_ms=10350) is None  # began after: none
    assert w2.exposures == []


class _RemoteEngine:
    """A stand-in cloud recognizer: records what audio it was given, never answers."""

    source = "azure"
    capabilities = Capabilities(
        audio_input=True, continuous=False, interim_results=False, remote=True
    )

    def __init__(self) -> None:
        self.pushed: dict[str, int] = {}

    async def start(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

    def open_stream(self, uid, start_ms, on_result, language, channel=None, digits=False):
        engine = self

        class Stream:
            def push(self, pcm: bytes) -> None:
                engine.pushed[uid] = engine.pushed.get(uid, 0) + len(pcm)

            def end(self, end_ms: int) -> None:
                pass

            def cancel(self) -> None:
                pass

        engine.pushed.setdefault(uid, 0)
        return Stream()


async def test_customer_audio_is_withheld_from_a_remote_engine_during_a_payment(tmp_path) -> None:
    engine = _RemoteEngine()
    async with payment_call_session(tmp_path, engine, "withhold-call") as (session, send):
        send(0, 6000)  # the agent asks for the card; the customer is silent
        before = {u for u, n in engine.pushed.items()}
        session.manual("pause")  # the window opens (manually here: no remote results)
        send(6000, 12000)  # the customer reads the card number
        during = {u: n for u, n in engine.pushed.items() if u not in before}
        session.manual("resume")
        send(12000, 19000)  # the customer gives the expiry, now back with the engine
        after = {u: n for u, n in engine.pushed.items() if u not in before and u not in during}
    assert during and all(n == 0 for n in during.values()), (
        "no customer audio while the window is open"
    )
    assert after and any(n > 0 for n in after.values()), "audio flows again after the window"


def test_a_card_read_in_two_utterances_opens_from_the_first() -> None:
    """No intent, no card-like run in either utterance alone: the joined digits are a card
    (4929 1278 9012 3459), so the window's exposure reaches back to the first half."""
    g = guard()
    assert g.on_text("yeah it's four nine two nine one two", "customer", 1000, 3000) is None
    assert g.on_text("yeah it's four nine two nine one two", "customer", 1000, 3400) is None
    d = g.on_text("seven eight nine oh one two three four five nine", "customer", 4200, 7600)
    assert d is not None and (d.action, d.trigger) == ("open", "digits")
    assert d.window.exposure_from_ms == 1000


def test_a_phone_number_and_digits_after_it_are_no_card() -> None:
    g = guard()
    assert g.on_text("my number is 0161 496 0753", "customer", 1000, 3000) is None
    assert g.on_text("2 of us will come", "customer", 4000, 5000) is None
    # ... nor digits from the other party, or long after.
    g = guard()
    assert g.on_text("it's four nine two nine one two", "customer", 1000, 3000) is None
    assert (
        g.on_text("seven eight nine oh one two three four five nine", "agent", 4200, 7600) is None
    )
    g = guard()
    assert g.on_text("it's four nine two nine one two", "customer", 1000, 3000) is None
    late = g.on_text("seven eight nine oh one two three four five nine", "customer", 30000, 33000)
    assert late is None


def test_a_card_whose_first_group_came_alone_is_cut_from_that_group() -> None:
    """The second utterance is a card on its own (twelve digits), but its first group was
    said in the utterance before: that is where the card's audio begins."""
    g = guard()
    assert g.on_text("four one one one", "customer", 6000, 7300) is None
    d = g.on_text("one one one one one one one one one one one one", "customer", 8800, 12000)
    assert d is not None and d.window.exposure_from_ms == 6000


def test_a_card_read_a_group_at_a_time_opens_from_its_first_group() -> None:
    g = guard()
    for start, said in ((1000, "it's 4929"), (3000, "1278"), (5000, "9012")):
        assert g.on_text(said, "customer", start, start + 900) is None
    d = g.on_text("3459", "customer", 7000, 7600)
    assert d is not None and d.window.exposure_from_ms == 1000


def test_numbers_said_before_a_card_do_not_stretch_its_exposure() -> None:
    """Only digits that run on into the card reach back; "20 years" does not."""
    g = guard()
    assert g.on_text("I've been with you for 20 years, you know", "customer", 0, 3000) is None
    d = g.on_text("it's 4111 1111 1111 1111", "customer", 4000, 8000)
    assert d is not None and d.window.exposure_from_ms == 4000


def test_a_card_begun_after_other_numbers_still_opens_from_its_first_group() -> None:
    g = guard()
    assert g.on_text("I opened it in 2019", "customer", 0, 2000) is None
    assert g.on_text("4929 127", "customer", 3000, 4000) is None
    d = g.on_text("8901 2345 9", "customer", 5000, 6000)
    assert d is not None and d.window.exposure_from_ms == 3000
