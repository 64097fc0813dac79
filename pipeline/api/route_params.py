"""What several route tables share (`routes.py`, `routes_supervision.py`): the call-id
path parameter and the role grants that recur (spec.Roles; README, "Roles"); admin may
use every route besides."""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta

from pipeline.api.spec import Param, Roles

SUPERVISORS: Roles = {"supervisor": "all"}
COMPLIANCE: Roles = {"compliance": "all"}
INTEGRATIONS: Roles = {"integration": "all"}

CALL_ID = Param("callId", "path", Annotated[str, Meta(min_length=1)], "The ACS call connection id.")
