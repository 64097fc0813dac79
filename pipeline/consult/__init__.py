"""Teams expert consult: an agent asks a Microsoft Teams user (an expert) into a live call
through ACS Call Automation (`controller.py`); the experts an agent may pick come from
``CALLSTREAM_EXPERTS`` (`experts.py`)."""
