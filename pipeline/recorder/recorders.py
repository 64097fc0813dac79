"""The service's side of the recorder: one disk writer, one `CallRecorder` per call.

Built once by the service from `CALLSTREAM_RECORDER` and `CALLSTREAM_RECORDER_DELAY_S`;
`for_call` is the factory the call's ports carry, so a session gets its recorder without
knowing what it is (or that it is `NoRecorder`, when recording is off).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from pipeline.recorder.call_recorder import CallRecorder, NoRecorder, RecordedCall
from pipeline.recorder.paths import call_folder
from pipeline.recorder.writer import DiskWriter

if TYPE_CHECKING:
    from models.settings import Settings

_OFF = NoRecorder()


class Recorder:
    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.recorder == "local"
        self.delay_s = settings.recorder_delay_s
        self.data_dir = settings.data_dir
        self._writer = DiskWriter()

    def for_call(self, call: RecordedCall) -> CallRecorder | NoRecorder:
        if not self.enabled:
            return _OFF
        return CallRecorder(
            call, call_folder(self.data_dir, call.call_id), self._writer, self.delay_s
        )

    async def aclose(self) -> None:
        """After the calls have ended: let the writer finish what is queued, then stop it."""
        await asyncio.to_thread(self._writer.close)
