"""What the training processes print, passed on to the user less launcher noise: torchrun's
log lines and banner, srun's and slurmstepd's error lines, and any Python traceback (each rank
reports its failure in one line)."""

from __future__ import annotations

import os
import re
from typing import TextIO

from tessera.tasks.base.error_policy import debugging

_TRACEBACK = b"Traceback (most recent call last):"
# torchrun's own chatter: its log lines, and the OMP_NUM_THREADS banner
_LAUNCHER_LINE = re.compile(
    rb"^(?:[IWE]\d{4} [\d:.]+ \d+ torch/distributed/.*|\*{20,}|Setting OMP_NUM_THREADS .*"
    rb"|srun: error: .*|slurmstepd: error: .*)\r?$"  # Slurm's own word on a failed task
)


def _without_launcher_lines(text: bytes) -> bytes:
    lines = text.split(b"\n")
    return b"\n".join(ln for ln in lines if not _LAUNCHER_LINE.match(ln.strip(b" ")))


class Relay:
    """Bytes fed in as they come (progress bars included) are written to ``sink``, less
    torchrun's log lines, up to the first Python traceback: only launchers print one, since
    each rank reports its failure in one line. ``TESSERA_DEBUG=1`` passes everything."""

    def __init__(self, sink: TextIO) -> None:
        self.sink, self.keep_all = sink, debugging()
        self.pending, self.muted = b"", False

    def feed(self, chunk: bytes) -> None:
        """Pass on the complete lines of ``chunk`` (and what came before it)."""
        if self.muted:
            return
        self.pending += chunk
        cut = max(self.pending.rfind(b"\n"), self.pending.rfind(b"\r")) + 1
        head, self.pending = self.pending[:cut], self.pending[cut:]
        at = head.find(_TRACEBACK)
        if at >= 0 and not self.keep_all:
            head, self.muted = head[:at], True
        if not self.keep_all:
            head = _without_launcher_lines(head)
        self._write(head)

    def close(self) -> None:
        """Pass on what is left after the last line break."""
        if not self.muted and self.pending:
            self._write(self.pending)
        self.pending = b""

    def _write(self, data: bytes) -> None:
        if data:
            self.sink.write(data.decode(errors="replace"))
            self.sink.flush()


def relay_without_traceback(fd: int, sink: TextIO) -> None:
    """Pass what the processes writing to ``fd`` print on to ``sink`` (:class:`Relay`)."""
    relay = Relay(sink)
    while chunk := os.read(fd, 1 << 16):
        relay.feed(chunk)
    relay.close()
