"""What the console's HTTP tests share: a reply as the client saw it, and
redirects handed back rather than followed (as a test wants to see them)."""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass
from email.message import Message
from typing import Any


@dataclass
class Reply:
    status: int
    headers: Message
    body: str

    @property
    def location(self) -> str:
        return self.headers.get("location", "")


class KeepRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *_args: Any, **_kwargs: Any) -> None:
        return None  # hand 3xx replies back as they are
