"""A private network for SIP and RTP tests: a network namespace of their own.

``NetNamespace`` starts a holder process in a new network namespace
(``unshare -n``) with loopback up and a veth pair carrying ``ADDRESS``
(10.77.0.1/24), so user agents that refuse 127.0.0.1 in SDP (baresip) have
an address, and nothing a test sends can reach the machine's own interfaces
or any other host. Test programs run inside it through ``nsenter``.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

ADDRESS = "10.77.0.1"
_SETUP = (
    "ip link set lo up"
    " && ip link add vb0 type veth peer name vb1"
    f" && ip addr add {ADDRESS}/24 dev vb0"
    " && ip link set vb0 up && ip link set vb1 up"
    " && echo ready && exec sleep infinity"
)


class NetNamespace:
    def __init__(self) -> None:
        self._holder: subprocess.Popen[str] | None = None

    def start(self) -> None:
        for tool in ("unshare", "nsenter", "ip"):
            if shutil.which(tool) is None:
                pytest.skip(f"{tool} is not installed")
        holder = subprocess.Popen(
            ["unshare", "-n", "sh", "-c", _SETUP],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert holder.stdout is not None
        line = holder.stdout.readline().strip()
        if line != "ready":
            error = holder.stderr.read() if holder.stderr else ""
            holder.kill()
            pytest.skip(f"cannot make a network namespace here: {error.strip()}")
        self._holder = holder

    @property
    def prefix(self) -> list[str]:
        assert self._holder is not None, "start() first"
        return ["nsenter", f"--net=/proc/{self._holder.pid}/ns/net"]

    def popen(self, cmd: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        return subprocess.Popen([*self.prefix, *cmd], **kwargs)

    def run(self, cmd: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[Any]:
        return subprocess.run([*self.prefix, *cmd], **kwargs)

    def close(self) -> None:
        if self._holder is not None:
            self._holder.kill()
            self._holder.wait()
            self._holder = None


@pytest.fixture(scope="module")
def netns() -> Iterator[NetNamespace]:
    space = NetNamespace()
    space.start()
    try:
        yield space
    finally:
        space.close()
