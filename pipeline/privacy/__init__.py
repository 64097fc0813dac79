"""The privacy boundary: redaction, its recognizers, and the log scrubber.

Here, before any module of the package imports Presidio: its import logs an INFO line
("Using device of type"), and a package's `__init__` is the one place guaranteed to run
before every one of its modules.
"""

import logging

PRESIDIO_LOGGERS = ("presidio-analyzer", "presidio-anonymizer", "decision_process")

for _name in PRESIDIO_LOGGERS:
    if logging.getLogger(_name).level < logging.WARNING:
        logging.getLogger(_name).setLevel(logging.WARNING)
