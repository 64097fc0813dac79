"""Data types that cross callstream's boundaries: ACS wire messages, events, settings.

No I/O lives here and nothing here imports the other packages, so every layer can
depend on these types without pulling in engines or the service.
"""
