"""callstream's own recorder (`CALLSTREAM_RECORDER=local`): each call's audio from the
media stream, written to the data dir, with payment windows removed before they reach it.

- `tape.py`: a participant's track; the channel appends frames to its tape, the delay line
  holds the last `CALLSTREAM_RECORDER_DELAY_S` seconds.
- `spans.py`: the spans cut out (one per payment window) as digital silence.
- `call_recorder.py`: one call's recording: tracks, windows, exposures, audit, events.
- `writer.py`: the thread that writes WAV files and hashes them.
- `paths.py`: where the files live; retention's removal.
- `record.py`: the recording as the audit holds it (manifest, export, `verify`).
- `export.py`: `callstream export CALL_ID --audio --out DIR`.
- `recorders.py`: the service's factory and writer.
"""
