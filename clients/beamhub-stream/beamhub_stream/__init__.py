"""Live detector frames of a proposal, from beamhub's stream relay.

In a session (beamhub's address in $BEAMHUB_URL, the user's API token in $BEAMHUB_TOKEN):

    from beamhub_stream import subscribe
    with subscribe("2024-00123") as frames:
        for frame in frames:
            if frame.gap:
                print(f"{frame.gap} frames missed before frame {frame.number}")
            image = frame.array()          # numpy, shape and dtype as the DAQ sent them

Frames come over ZeroMQ where beamhub offers it (its stream_subscribe_bind: endpoint=, $BEAMHUB_STREAM, or asked of
beamhub at /api/v1/streams), else over beamhub's websocket.

The DAQ's side, with a data:ingest token of its service account:

    from beamhub_stream import Publisher
    with Publisher("tcp://beamhub:5560", token) as daq:
        daq.send("2024-00123", 17, image, meta={"exposure": 0.01})
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from urllib.parse import quote, urlsplit, urlunsplit

from beamhub_stream.publisher import Publisher, PublishRefused
from beamhub_stream.subscription import Frame, StreamEnded, StreamRefused, Subscription
from beamhub_stream.transports import WebSocket, ZeroMQ

__all__ = ["Frame", "PublishRefused", "Publisher", "StreamEnded", "StreamRefused", "Subscription", "reachable",
           "subscribe"]

URL_ENV = "BEAMHUB_URL"
TOKEN_ENV = "BEAMHUB_TOKEN"
STREAM_ENV = "BEAMHUB_STREAM"
VIAS = ("auto", "zeromq", "websocket")
WILDCARD = re.compile(r"^tcp://(\*|0\.0\.0\.0|\[::\]|::):(\d+)$")


def stream_url(base: str, proposal: str) -> str:
    """The websocket address of a proposal's stream on beamhub at `base` (http(s)://host[:port][/prefix])."""
    parts = urlsplit(base)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    if scheme is None:
        raise ValueError(f"beamhub's address must start with http:// or https://, not {base!r}")
    path = f"{parts.path.rstrip('/')}/api/v1/proposals/{quote(proposal, safe='')}/stream"
    return urlunsplit((scheme, parts.netloc, path, "", ""))


def discover(base: str, token: str, timeout: float) -> str | None:
    """beamhub's ZeroMQ endpoint for subscribers, asked of its API (None: it offers only the websocket)."""
    request = urllib.request.Request(f"{base.rstrip('/')}/api/v1/streams",
                                     headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310 (beamhub's own address)
            endpoint = json.load(answer).get("subscribe")
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            raise StreamRefused(exc.code, json.loads(exc.read() or b"{}").get("detail", "")) from exc
        return None  # a beamhub without the route: the websocket
    return reachable(endpoint, base) if isinstance(endpoint, str) else None


def reachable(endpoint: str, base: str) -> str:
    """The endpoint beamhub binds as a subscriber reaches it: a wildcard host is beamhub's own (from `base`, an IPv6
    address in brackets)."""
    wildcard = WILDCARD.match(endpoint)
    if not wildcard:
        return endpoint
    host = urlsplit(base).hostname or ""
    return f"tcp://{f'[{host}]' if ':' in host else host}:{wildcard.group(2)}"


def subscribe(proposal: str, url: str | None = None, token: str | None = None, endpoint: str | None = None,
              via: str = "auto", open_timeout: float = 10, window: int = 8) -> Subscription:
    """Subscribe to a proposal's live frames, as the user whose token this is ($BEAMHUB_URL, $BEAMHUB_TOKEN,
    $BEAMHUB_STREAM). `via`: "zeromq", "websocket", or "auto" (ZeroMQ when its endpoint is known or beamhub
    offers one); `window`: frames ZeroMQ brings ahead of the reader."""
    url, token = url or os.environ.get(URL_ENV), token or os.environ.get(TOKEN_ENV)
    if via not in VIAS:
        raise ValueError(f"via is one of {', '.join(VIAS)}, not {via!r}")
    if not token:
        raise ValueError(f"an API token is needed: pass token= or set {TOKEN_ENV}")
    if via != "websocket":
        endpoint = endpoint or os.environ.get(STREAM_ENV) or (discover(url, token, open_timeout) if url else None)
    if via != "websocket" and endpoint:
        subscription = Subscription(ZeroMQ(endpoint, token, proposal, max(1, window)), "zeromq")
    elif via == "zeromq":
        raise ValueError(f"no ZeroMQ endpoint: pass endpoint= or set {STREAM_ENV} (or beamhub offers none)")
    elif not url:
        raise ValueError(f"beamhub's address is needed: pass url= or set {URL_ENV}")
    else:
        subscription = Subscription(WebSocket(stream_url(url, proposal), token, open_timeout), "websocket")
    subscription.greeted(open_timeout)
    return subscription
