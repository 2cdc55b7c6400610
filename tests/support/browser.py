"""A real headless Chromium (Debian's `chromium`) driven over the DevTools protocol on a pipe.

`--remote-debugging-pipe` gives the protocol on file descriptors 3 (commands in) and 4 (answers out),
each message JSON ending in a NUL byte: no websocket library and no port. The page's own requests
are recorded (Network.requestWillBeSent / loadingFailed / responseReceived on the page's session),
so Chromium's background traffic cannot be mistaken for the page's.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--remote-debugging-pipe", "--hide-scrollbars"]


def chromium_or_fail() -> str:
    """The chromium binary; in CI (CI=true) its absence fails the test, elsewhere it skips."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    message = "chromium is not installed (apt-get install -y --no-install-recommends chromium; .ci/run does it)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class PageLoad:
    requests: list[str] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    bad_status: list[dict[str, Any]] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    loaded: bool = False
    dom: str = ""


class _Pipe:
    def __init__(self, proc: subprocess.Popen, write_fd: int, read_fd: int) -> None:
        self.proc, self.write_fd, self.read_fd = proc, write_fd, read_fd
        self.buffer = b""
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
             timeout: float = 30) -> dict[str, Any]:
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.write_fd, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            for got in self._read(deadline):
                if got.get("id") == self.next_id:
                    if "error" in got:
                        raise RuntimeError(f"{method}: {got['error']}")
                    return got.get("result") or {}
                self.events.append(got)

    def _read(self, deadline: float) -> list[dict[str, Any]]:
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("chromium did not answer")
            ready, _, _ = select.select([self.read_fd], [], [], left)
            if ready:
                chunk = os.read(self.read_fd, 1 << 20)
                if not chunk:
                    raise RuntimeError("chromium closed its pipe")
                self.buffer += chunk
        parts = self.buffer.split(b"\0")
        self.buffer = parts[-1]
        return [json.loads(p) for p in parts[:-1] if p]

    def wait_for(self, method: str, session: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if any(e.get("method") == method and e.get("sessionId") == session for e in self.events):
                return True
            try:
                self.events += self._read(deadline)
            except TimeoutError:
                return False


def load_page(path: Path, screenshot: Path, *, user_data_dir: Path, width: int = 1200,
              height: int = 2400) -> PageLoad:
    """Open ``path`` in headless Chromium, record the page's requests, save a full-width screenshot."""
    binary = chromium_or_fail()
    to_child_r, to_child_w = os.pipe()
    from_child_r, from_child_w = os.pipe()

    def fds_3_and_4() -> None:
        # The child must read commands on fd 3 and answer on fd 4; move both out of the way first, so that
        # neither pipe end is overwritten when it already sits on 3 or 4.
        high_r, high_w = fcntl.fcntl(to_child_r, fcntl.F_DUPFD, 20), fcntl.fcntl(from_child_w, fcntl.F_DUPFD, 20)
        os.dup2(high_r, 3)
        os.dup2(high_w, 4)

    proc = subprocess.Popen([binary, *FLAGS, f"--user-data-dir={user_data_dir}", f"--window-size={width},{height}"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            pass_fds=(3, 4), preexec_fn=fds_3_and_4)
    os.close(to_child_r)
    os.close(from_child_w)
    pipe = _Pipe(proc, to_child_w, from_child_r)
    result = PageLoad()
    try:
        target = pipe.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = pipe.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for method in ("Network.enable", "Page.enable", "Runtime.enable"):
            pipe.send(method, session=session)
        pipe.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1,
                                                          "mobile": False}, session=session)
        pipe.send("Page.navigate", {"url": path.resolve().as_uri()}, session=session)
        result.loaded = pipe.wait_for("Page.loadEventFired", session, 30)
        time.sleep(0.3)  # late requests (none expected) would show here
        pipe.send("Runtime.evaluate", {"expression": "1"}, session=session)  # drains pending events
        shot = pipe.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": False}, session=session)
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        dom = pipe.send("Runtime.evaluate", {"expression": "document.documentElement.outerHTML",
                                             "returnByValue": True}, session=session)
        result.dom = str((dom.get("result") or {}).get("value") or "")
        for e in pipe.events:
            if e.get("sessionId") != session:
                continue
            params = e.get("params") or {}
            if e.get("method") == "Network.requestWillBeSent":
                result.requests.append(params["request"]["url"])
            elif e.get("method") == "Network.loadingFailed":
                result.failed.append(params)
            elif e.get("method") == "Network.responseReceived" and int(params["response"].get("status", 0)) >= 400:
                result.bad_status.append(params["response"])
            elif e.get("method") == "Runtime.exceptionThrown":
                result.console_errors.append(json.dumps(params)[:300])
        try:
            pipe.send("Browser.close", timeout=5)
        except (RuntimeError, TimeoutError):
            pass
    finally:
        os.close(to_child_w)
        os.close(from_child_r)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return result
