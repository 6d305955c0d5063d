"""Prometheus metrics. Defined once here; the stream and supervisor call the small functions below
so that what is measured stays in one place and tests can read the registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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
STREAMS = Gauge("tailup_streams", "Streams in this daemon by state.", ["state"], registry=REGISTRY)
STREAM_LAG_BYTES = Gauge(
    "tailup_stream_lag_bytes",
    "File size minus bytes in S3, per live stream.",
    ["stream_id"],
    registry=REGISTRY,
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


def stream_lag(stream_id: str, lag_bytes: int | None) -> None:
    if lag_bytes is None:
        STREAM_LAG_BYTES.remove(stream_id) if _has_lag(stream_id) else None
    else:
        STREAM_LAG_BYTES.labels(stream_id=stream_id).set(lag_bytes)


def _has_lag(stream_id: str) -> bool:
    return (stream_id,) in STREAM_LAG_BYTES._metrics


def set_stream_counts(counts: dict[str, int]) -> None:
    for state, count in counts.items():
        STREAMS.labels(state=state).set(count)
