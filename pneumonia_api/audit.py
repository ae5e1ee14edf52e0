"""Append-only audit trail in a Redis Stream: who did what, when, from which address.

Entries never hold an image, only a result id or the image's SHA-256. The stream is trimmed
by age (``MINID``) at each write, so the trail keeps ``retention_days`` and no more.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Iterator

import redis

from pneumonia_api import metrics

log = logging.getLogger(__name__)
FIELDS = ("actor", "action", "outcome", "address", "target", "image_sha256", "detail")
EVENT_ID = re.compile(r"\d{1,15}-\d{1,15}")


@dataclass(frozen=True)
class AuditEvent:
    """One audit record; ``id`` is the stream id (milliseconds since the epoch, then a sequence)."""

    id: str
    time_utc: str
    actor: str
    action: str
    outcome: str = "ok"
    address: str = ""
    target: str = ""
    image_sha256: str = ""
    detail: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


class AuditLog:
    """Write and read the audit stream. A query reads at most ``scan_max`` events, so that a filter
    matching nothing in a long trail answers quickly; it then says where to go on."""

    def __init__(self, client: redis.Redis, retention_days: int, key: str = "pneumonia:audit",
                 scan_max: int = 50_000) -> None:
        self.client = client
        self.retention_ms = retention_days * 86_400_000
        self.key = key
        self.scan_max = scan_max

    def record(self, actor: str, action: str, outcome: str = "ok", **details: str) -> bool:
        """Append one event; on a Redis failure log it, count it and return False (never raise)."""
        unknown = set(details) - set(FIELDS)
        if unknown:
            raise ValueError(f"unknown audit fields: {sorted(unknown)}")
        entry = {"actor": actor, "action": action, "outcome": outcome, **{k: str(v) for k, v in details.items() if v}}
        try:
            self.client.xadd(self.key, entry, minid=int(time.time() * 1000) - self.retention_ms, approximate=True)
            return True
        except redis.RedisError as exc:
            metrics.REDIS_ERRORS.labels("audit").inc()
            log.error("AUDIT WRITE FAILED (%s): %s", exc, entry)
            return False

    def query(self, actor: str = "", action: str = "", since: datetime | None = None, limit: int = 200,
              before: str = "") -> tuple[list[AuditEvent], str | None]:
        """Newest first, filtered by exact actor and action and a start time: at most ``limit`` events,
        found among at most ``scan_max``. With ``before`` (an event's id) only events older than that
        one. Also returns the id to pass as ``before`` for the rest: the last event returned when the
        page is full, the last one read when the scan limit came first, None once the trail has been
        read back to its start (or to ``since``)."""
        start = _stream_start(since)
        found: list[AuditEvent] = []
        for scanned, event in enumerate(self._newest_first(start, "(" + before if before else "+"), start=1):
            if (not actor or event.actor == actor) and (not action or event.action == action):
                found.append(event)
            if len(found) >= limit or scanned >= self.scan_max:
                return found, event.id
        return found, None

    def export(self, since: datetime | None = None) -> Iterator[str]:
        """Every event since ``since`` as JSON lines, oldest first."""
        start = _stream_start(since)
        while True:
            chunk = self.client.xrange(self.key, start, "+", count=1000)
            for stream_id, values in chunk:
                yield _event(stream_id, values).to_json() + "\n"
            if len(chunk) < 1000:
                return
            start = "(" + chunk[-1][0]

    def _newest_first(self, start: str, end: str) -> Iterator[AuditEvent]:
        while True:
            chunk = self.client.xrevrange(self.key, end, start, count=500)
            for stream_id, values in chunk:
                yield _event(stream_id, values)
            if len(chunk) < 500:
                return
            end = "(" + chunk[-1][0]


def _stream_start(since: datetime | None) -> str:
    """The stream id of ``since``; a time before the epoch (stream ids start there) means the start."""
    return f"{max(0, int(since.timestamp() * 1000))}-0" if since else "-"


def _event(stream_id: str, values: dict[str, str]) -> AuditEvent:
    millis = int(stream_id.split("-")[0])
    when = datetime.fromtimestamp(millis / 1000, tz=timezone.utc).isoformat(timespec="milliseconds")
    return AuditEvent(id=stream_id, time_utc=when, **{k: v for k, v in values.items() if k in FIELDS})
