"""Participant roles from ACS raw ids: a phone number is the customer, an ACS/Teams user the agent.

The prefixes are settings because contact centers differ (a Teams-to-Teams support
desk has agents and customers that are both `8:orgid:`; such sites reconfigure).
"""

from __future__ import annotations

AGENT = "agent"
CUSTOMER = "customer"
UNKNOWN = "unknown"


class RoleMap:
    def __init__(self, agent_prefixes: str, customer_prefixes: str) -> None:
        self._agent = tuple(p.strip() for p in agent_prefixes.split(",") if p.strip())
        self._customer = tuple(p.strip() for p in customer_prefixes.split(",") if p.strip())

    def role(self, participant: str | None) -> str:
        if not participant:
            return UNKNOWN
        if participant.startswith(self._customer):
            return CUSTOMER
        if participant.startswith(self._agent):
            return AGENT
        return UNKNOWN
