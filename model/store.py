"""Prediction results in Redis: the one key schema used by the API and batch inference.

* ``<prefix>:result:<id>`` - a hash with the fields of :class:`PredictionRecord`, with a TTL;
* ``<prefix>:results`` - a sorted set of ids scored by creation time (newest first on read);
* ``<prefix>:results:owner:<owner>`` - the same, per owner (``user:<name>`` or ``token:<name>``);
* ``<prefix>:results:read`` - the same, for the results that carry a clinician's reading (the Agreement
  page reads these, not every result).

A clinician's own reading of the film can be added to a stored result later (:meth:`ResultStore.set_reading`).
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from typing import Any

import redis

DEFAULT_TTL_SECONDS = 30 * 24 * 3600


@dataclass
class PredictionRecord:
    """One stored prediction; never the image itself, only its SHA-256."""

    label: str
    probability: float
    threshold: float
    model_version: str
    image_sha256: str
    source: str = "api"
    file_name: str = ""
    owner: str = ""
    atypicality: float | None = None  # model.atypicality: 1 or more = unlike the training films
    outside_intended_use: str = ""  # model.intended_use: why the DICOM header puts the film outside ("; ")
    reading: str = ""  # a clinician's own reading of the film (a class name), recorded after the result
    read_by: str = ""
    read_utc: str = ""
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    created_utc: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="milliseconds"))

    @property
    def atypical(self) -> bool | None:
        """Whether the film looked unlike the training films (None: the model has no statistics)."""
        return None if self.atypicality is None else self.atypicality >= 1.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "atypical": self.atypical}


def redis_from_env(url: str | None = None, password: str | None = None, timeout: float = 2.0) -> redis.Redis:
    """Client from ``REDIS_URL`` (default ``redis://127.0.0.1:6379/0``) and ``REDIS_PASSWORD``."""
    return redis.Redis.from_url(
        url or os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        password=password if password is not None else (os.environ.get("REDIS_PASSWORD") or None),
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        decode_responses=True,
    )


class ResultStore:
    """Save, fetch and list prediction records."""

    def __init__(self, client: redis.Redis, ttl_seconds: int = DEFAULT_TTL_SECONDS, prefix: str = "pneumonia") -> None:
        self.client = client
        self.ttl_seconds = ttl_seconds
        self.prefix = prefix
        # HSET only on a result that still exists (one that expired must not come back without its TTL),
        # and index it among the read results at its creation time (ARGV[1] if it is not indexed)
        self._set_reading = client.register_script(
            "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end "
            "redis.call('HSET', KEYS[1], unpack(ARGV, 3)) "
            "redis.call('ZADD', KEYS[3], redis.call('ZSCORE', KEYS[2], ARGV[2]) or ARGV[1], ARGV[2]) return 1")

    @property
    def index_key(self) -> str:
        return f"{self.prefix}:results"

    def owner_index_key(self, owner: str) -> str:
        return f"{self.prefix}:results:owner:{owner}"

    @property
    def read_index_key(self) -> str:
        return f"{self.prefix}:results:read"

    def key(self, result_id: str) -> str:
        return f"{self.prefix}:result:{result_id}"

    def save(self, record: PredictionRecord) -> None:
        """Store one record (raises ``redis.RedisError`` when Redis is unavailable)."""
        now = time.time()
        mapping = {k: str(v) for k, v in asdict(record).items() if v is not None}
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(self.key(record.id), mapping=mapping)
        pipe.expire(self.key(record.id), self.ttl_seconds)
        indexes = [self.index_key] + ([self.owner_index_key(record.owner)] if record.owner else [])
        for index in indexes + ([self.read_index_key] if record.reading else []):
            pipe.zadd(index, {record.id: now})
        for index in indexes + [self.read_index_key]:
            pipe.zremrangebyscore(index, "-inf", now - self.ttl_seconds)
        pipe.execute()

    def set_reading(self, result_id: str, reading: str, by: str) -> PredictionRecord | None:
        """Add a clinician's reading to a stored result (its TTL unchanged); None once it has expired."""
        now = datetime.now(timezone.utc)
        if not self._set_reading(keys=[self.key(result_id), self.index_key, self.read_index_key],
                                 args=[now.timestamp(), result_id, "reading", reading, "read_by", by,
                                       "read_utc", now.isoformat(timespec="milliseconds")]):
            return None
        return self.get(result_id)

    def get(self, result_id: str) -> PredictionRecord | None:
        """The record with this id, or None if absent or expired."""
        data = self.client.hgetall(self.key(result_id))
        return _record(data) if data else None

    def recent(self, limit: int = 20, owner: str = "") -> list[PredictionRecord]:
        """Newest records first; only ``owner``'s when given."""
        return self._newest(self.owner_index_key(owner) if owner else self.index_key, limit)

    def read(self, limit: int) -> list[PredictionRecord]:
        """The newest records that carry a reading, newest first."""
        return self._newest(self.read_index_key, limit)

    def _newest(self, index: str, limit: int) -> list[PredictionRecord]:
        ids = self.client.zrevrange(index, 0, max(limit, 1) - 1)
        pipe = self.client.pipeline(transaction=False)
        for result_id in ids:
            pipe.hgetall(self.key(result_id))
        return [_record(d) for d in pipe.execute() if d]

    def count(self, read: bool = False) -> int:
        """How many results the index holds, or only those with a reading (expired ones not yet trimmed
        from it included)."""
        return int(self.client.zcard(self.read_index_key if read else self.index_key))

    def index_readings(self, chunk: int = 1000) -> int:
        """Index the results read before the read index existed (the Agreement page calls it on each view;
        a marker key makes it a one-off). Returns how many were indexed."""
        marker = f"{self.read_index_key}:complete"
        if self.client.exists(marker):
            return 0
        indexed, start = 0, 0
        while ids := self.client.zrange(self.index_key, start, start + chunk - 1, withscores=True):
            pipe = self.client.pipeline(transaction=False)
            for result_id, _ in ids:
                pipe.hget(self.key(result_id), "reading")
            read = {result_id: score for (result_id, score), reading in zip(ids, pipe.execute()) if reading}
            if read:
                self.client.zadd(self.read_index_key, read)
            indexed, start = indexed + len(read), start + chunk
        self.client.set(marker, "1")
        return indexed

    def ping(self) -> bool:
        """True when Redis answers."""
        try:
            return bool(self.client.ping())
        except redis.RedisError:
            return False


def _record(data: dict[str, str]) -> PredictionRecord:
    names = {f.name for f in fields(PredictionRecord)}
    values: dict[str, Any] = {k: v for k, v in data.items() if k in names}
    values["probability"] = float(values["probability"])
    values["threshold"] = float(values["threshold"])
    if "atypicality" in values:
        values["atypicality"] = float(values["atypicality"])
    return PredictionRecord(**values)
