"""Small raw-request helpers over a kr8s API client, for tests and scenarios."""

from __future__ import annotations

import json
from typing import Any

import kr8s.asyncio

Json = dict[str, Any]


class RequestFailed(AssertionError):
    def __init__(self, method: str, path: str, status: int, body: Any) -> None:
        message = body.get("message") if isinstance(body, dict) else body
        super().__init__(f"{method} {path} -> {status}: {message}")
        self.status = status
        self.body = body


async def request(
    api: kr8s.asyncio.Api,
    method: str,
    path: str,
    *,
    body: Any = None,
    content_type: str | None = None,
    params: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """Send one request to an absolute API path; return the status and the decoded body."""
    kwargs: dict[str, Any] = {"params": params}
    if body is not None:
        if content_type:
            kwargs["content"] = body if isinstance(body, (str, bytes)) else _dumps(body)
            kwargs["headers"] = {"Content-Type": content_type}
        else:
            kwargs["json"] = body
    root, _, rest = path.lstrip("/").partition("/")
    async with api.call_api(
        method, version="", base=f"/{root}", url=rest, raise_for_status=False, **kwargs
    ) as response:
        status = response.status_code
        text = response.text
    try:
        return status, json.loads(text) if text else None
    except ValueError:
        return status, text


def _dumps(body: Any) -> str:
    return json.dumps(body)


async def call(api: kr8s.asyncio.Api, method: str, path: str, **kwargs: Any) -> Any:
    """Like ``request`` but fail unless the API server answers 2xx; return the body."""
    status, body = await request(api, method, path, **kwargs)
    if not 200 <= status < 300:
        raise RequestFailed(method, path, status, body)
    return body
