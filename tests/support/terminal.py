"""A person at a terminal, for tests: tradeops with a pseudo-terminal as stdin and stdout (stderr piped)."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import termios
import threading
import time
from pathlib import Path

_STYLING = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _default_ctrl_c() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Terminal:
    """``argv`` at a terminal of ``cols`` columns: type answers, read what it shows, send it Ctrl-C."""

    def __init__(self, argv: list[str], env: dict[str, str], *, cwd: Path | str | None = None, cols: int = 120) -> None:
        self.main, side = pty.openpty()
        fcntl.ioctl(side, termios.TIOCSWINSZ, struct.pack("HHHH", 40, cols, 0, 0))
        # PYTHONFAULTHANDLER: a process that will not exit is sent SIGABRT by finish(), and then writes every
        # thread's stack to stderr, so a hang names where it hangs.
        # Ctrl-C reaches it as at a terminal even when the suite itself was started in the background (`cmd &`
        # without job control starts it ignoring SIGINT, every child inherits that, and Python then installs no
        # KeyboardInterrupt for it).
        self.proc = subprocess.Popen(argv, env={**env, "COLUMNS": str(cols), "PYTHONFAULTHANDLER": "1"},
                                     stdin=side, stdout=side,
                                     stderr=subprocess.PIPE, cwd=cwd, preexec_fn=_default_ctrl_c)
        os.close(side)
        self.output = b""
        # stderr is drained all along: a process whose stderr pipe fills (64 KiB of log lines) blocks on its
        # next write and never exits, whatever the test waits for.
        self._err = bytearray()
        self._err_reader = threading.Thread(target=self._drain_stderr, daemon=True)
        self._err_reader.start()

    def _drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        for chunk in iter(lambda: self.proc.stderr.read1(65536), b""):  # type: ignore[union-attr]
            self._err += chunk

    def read_until(self, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while text.encode() not in self.output:
            assert time.monotonic() < deadline, self.output.decode(errors="replace")
            self._read(0.2)

    def _read(self, wait: float) -> bool:
        ready, _, _ = select.select([self.main], [], [], wait)
        if not ready:
            return True
        try:
            chunk = os.read(self.main, 65536)
        except OSError:  # EIO: the other side closed
            return False
        self.output += chunk
        return bool(chunk)

    def type(self, text: str) -> None:
        os.write(self.main, text.encode())

    def finish(self, timeout: float = 60) -> tuple[int, str, str]:
        """Wait for it to exit: its exit code, what it showed (newlines normalised, styling removed), its stderr."""
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self._read(0.1)
        while self._read(0.1) and self.proc.poll() is not None:
            pass
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGABRT)
            self.proc.wait(10)
            self._err_reader.join(5)
            threads = self._err.decode(errors="replace")
            raise AssertionError(f"still running after {timeout:.0f} s; its threads:\n{threads}")
        code = self.proc.wait(5)
        self._err_reader.join(5)
        err = self._err.decode(errors="replace")
        os.close(self.main)
        shown = _STYLING.sub("", self.output.decode(errors="replace")).replace("\r\n", "\n")
        return code, shown, err
