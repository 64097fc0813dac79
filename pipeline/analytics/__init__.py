"""Call analytics and category rules, from who speaks when and from redacted text only.

- `talk.py`: talk intervals (per VAD utterance, first to last voiced frame) -> talk time
  per role, silence, overlap, interruptions, longest monologue.
- `rules.py`: the category rules file (phrase rules and metric rules), checked at start.
- `alerts.py`: one call's rule state: which rule matched, when, for whom.
- `call_analytics.py`: one call's analytics: the above plus words per minute and the
  sentiment trend, as the `analytics` event.
"""
