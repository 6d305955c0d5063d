"""Prometheus metrics. Defined once here; the stream and supervisor call the small functions below
so that what is measured stays in one place and tests can read the registry.

Counters and histograms are updated where things happen. Values that describe the daemon's current
state (streams by state, lag per stream, whether Redis and S3 answer) are read at scrape time by
``DaemonCollector`` from the objects that own that state, so they can never go stale or leave a
series behind for a stream that ended.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from tailup import __version__

REGISTRY = CollectorRegistry(auto_describe=True)

BYTES_UPLOADED = Counter(
    "tailup_bytes_uploaded_total",
    "Bytes acknowledged by S3 (parts and single PUTs).",
    registry=REGISTRY,
)
PARTS_UPLOADED = Counter(
    "tailup_parts_uploaded_total", "Parts acknowledged by S3 and checkpointed.", registry=REGISTRY
)
PARTS_RESENT = Counter(
    "tailup_parts_resent_total",
    "Parts sent again at finalize because their bytes changed after upload.",
    registry=REGISTRY,
)
PART_UPLOAD_SECONDS = Histogram(
    "tailup_part_upload_seconds",
    "Time to upload one part, from request to acknowledgement.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
    registry=REGISTRY,
)
UPLOAD_ERRORS = Counter(
    "tailup_upload_errors_total",
    "Errors by kind (retryable or permanent, and where).",
    ["kind"],
    registry=REGISTRY,
)
RETRIES = Counter(
    "tailup_retries_total", "Stream-level retries after a retryable error.", registry=REGISTRY
)
FINALIZE_SECONDS = Histogram(
    "tailup_finalize_seconds",
    "Time from the decision to finalize to the verified object and metadata.",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
    registry=REGISTRY,
)


def part_uploaded(size_bytes: int, seconds: float) -> None:
    BYTES_UPLOADED.inc(size_bytes)
    PARTS_UPLOADED.inc()
    PART_UPLOAD_SECONDS.observe(seconds)


def upload_error(kind: str) -> None:
    UPLOAD_ERRORS.labels(kind=kind).inc()


STREAMS_ENDED = Counter(
    "tailup_streams_ended_total",
    "Streams that ended in this daemon, by outcome (completed, failed, aborted, ...).",
    ["outcome"],
    registry=REGISTRY,
)


def stream_ended(outcome: str) -> None:
    STREAMS_ENDED.labels(outcome=outcome).inc()


RETENTION_FREED_BYTES = Counter(
    "tailup_retention_freed_bytes_total",
    "Bytes of local recordings deleted by --keep-local / --min-free after a verified upload.",
    registry=REGISTRY,
)
RETENTION_DELETED = Counter(
    "tailup_retention_deleted_total",
    "Local recordings deleted by --keep-local / --min-free after a verified upload.",
    registry=REGISTRY,
)
RETENTION_WAITING = Gauge(
    "tailup_retention_waiting",
    "Local recordings due for deletion (age or free space) that the last sweep kept, by reason.",
    ["reason"],
    registry=REGISTRY,
)


def retention_swept(*, freed_bytes: int, deleted: int, waiting: Mapping[str, int]) -> None:
    """One retention sweep: ``waiting`` counts every reason, 0 included (no stale series)."""
    RETENTION_FREED_BYTES.inc(freed_bytes)
    RETENTION_DELETED.inc(deleted)
    for reason, count in waiting.items():
        RETENTION_WAITING.labels(reason=reason).set(count)


def declare_labels(*, outcomes: Iterable[str], error_kinds: Iterable[str]) -> None:
    """Export every known outcome and error kind at 0 from the start: a series that appears only
    with its first failure makes increase() and rate() miss that failure, and alerts on it
    never fire."""
    for outcome in outcomes:
        STREAMS_ENDED.labels(outcome=outcome)
    for kind in error_kinds:
        UPLOAD_ERRORS.labels(kind=kind)


# -- state read at scrape time --


class LiveStream(Protocol):
    @property
    def stream_id(self) -> str: ...

    @property
    def bytes_in_s3(self) -> int: ...

    @property
    def last_seen_size(self) -> int | None: ...


class StreamOwner(Protocol):
    """What the collector needs from the supervisor."""

    def stream_states(self) -> dict[str, int]: ...

    @property
    def streams(self) -> Mapping[Any, LiveStream]: ...


class DependencyView(Protocol):
    """What the collector needs from the health monitor."""

    def dependency_status(self) -> dict[str, tuple[bool, float | None]]:
        """name -> (last probe succeeded, unix time of the last success or None)."""


class RateView(Protocol):
    """What the collector needs from the bandwidth limit (tailup.bandwidth)."""

    @property
    def bytes_per_second(self) -> int:
        """The limit in force now; 0 = off."""


class DaemonCollector(Collector):
    def __init__(
        self,
        owner: StreamOwner,
        health: DependencyView | None = None,
        bandwidth: RateView | None = None,
    ) -> None:
        self._owner = owner
        self._health = health
        self._bandwidth = bandwidth

    def collect(self) -> Iterator[GaugeMetricFamily | InfoMetricFamily]:
        info = InfoMetricFamily("tailup_build", "tailup version.")
        info.add_metric([], {"version": __version__})
        yield info
        yield self._streams()
        yield self._lag()
        yield self._bwlimit()
        if self._health is not None:
            yield from self._dependencies(self._health)

    def _streams(self) -> GaugeMetricFamily:
        family = GaugeMetricFamily(
            "tailup_streams", "Streams in this daemon by state.", labels=["state"]
        )
        for state, count in sorted(self._owner.stream_states().items()):
            family.add_metric([state], count)
        return family

    def _lag(self) -> GaugeMetricFamily:
        family = GaugeMetricFamily(
            "tailup_stream_lag_bytes",
            "File size minus bytes in S3, per live stream (parts wait until they are full).",
            labels=["stream_id"],
        )
        for stream in list(self._owner.streams.values()):
            size = stream.last_seen_size
            if size is not None:
                family.add_metric([stream.stream_id], max(0, size - stream.bytes_in_s3))
        return family

    def _bwlimit(self) -> GaugeMetricFamily:
        rate = 0 if self._bandwidth is None else self._bandwidth.bytes_per_second
        return GaugeMetricFamily(
            "tailup_bwlimit_bytes_per_second",
            "Upload bandwidth limit in force now, all streams together (--bwlimit); 0 = off.",
            value=rate,
        )

    def _dependencies(self, health: DependencyView) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily(
            "tailup_dependency_up",
            "1 when the last probe of the dependency (redis, s3) succeeded.",
            labels=["dependency"],
        )
        seen = GaugeMetricFamily(
            "tailup_dependency_last_success_timestamp_seconds",
            "Unix time of the last successful probe of the dependency.",
            labels=["dependency"],
        )
        for name, (ok, last_success) in sorted(health.dependency_status().items()):
            up.add_metric([name], 1.0 if ok else 0.0)
            if last_success is not None:
                seen.add_metric([name], last_success)
        yield up
        yield seen
