"""Engines that do one kind of work (VAD, speech-to-text, ...) and know nothing of calls or ACS."""
