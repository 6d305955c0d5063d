"""Metric label sets stay bounded: the only per-stream series (tailup_stream_lag_bytes{stream_id})
exists while its stream runs and is gone once it ended; no other metric carries a per-stream
label. The real supervisor and watcher on a real folder, with the in-memory stores (no servers)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from harness import IsolatedSettings, wait_until
from tailup.dev import MemoryCheckpointStore, MemoryMultipartStore
from tailup.metrics import REGISTRY, DaemonCollector
from tailup.model import StreamState
from tailup.plan import MiB
from tailup.server import declare_known_labels
from tailup.supervisor import Supervisor

# Every label a tailup metric may have: states, outcomes, error kinds, dependencies and histogram
# buckets (le) are fixed sets; stream_id only on the lag, and only of the streams running now.
BOUNDED_LABELS = {"state", "outcome", "kind", "dependency", "version", "le"}
PER_STREAM = {"tailup_stream_lag_bytes": {"stream_id"}}


def _series(registry: CollectorRegistry) -> dict[str, list[dict[str, str]]]:
    out: dict[str, list[dict[str, str]]] = {}
    for family in registry.collect():
        for sample in family.samples:
            out.setdefault(sample.name, []).append(dict(sample.labels))
    return out


def _lag_series(collector: DaemonCollector) -> dict[str, float]:
    (family,) = [f for f in collector.collect() if f.name == "tailup_stream_lag_bytes"]
    return {s.labels["stream_id"]: s.value for s in family.samples}


class _Stream:
    def __init__(self, stream_id: str) -> None:
        self.stream_id, self.bytes_in_s3, self.last_seen_size = stream_id, 5, 8


class _Owner:
    def __init__(self) -> None:
        self.running: dict[str, _Stream] = {}

    def stream_states(self) -> dict[str, int]:
        return {s.value: 0 for s in StreamState}

    @property
    def streams(self) -> Mapping[Any, _Stream]:
        return self.running


def test_the_lag_has_a_series_for_each_running_stream_only() -> None:
    owner = _Owner()
    collector = DaemonCollector(owner)
    assert _lag_series(collector) == {}
    owner.running = {"a": _Stream("s1"), "b": _Stream("s2")}
    assert _lag_series(collector) == {"s1": 3, "s2": 3}
    del owner.running["a"]  # s1 ended
    assert _lag_series(collector) == {"s2": 3}
    owner.running.clear()
    assert _lag_series(collector) == {}


async def test_a_stream_that_ended_leaves_no_series_and_no_metric_has_a_per_stream_label(
    tmp_path: Path,
) -> None:
    watch = tmp_path / "rec"
    watch.mkdir()
    settings = IsolatedSettings(
        watch=[watch],
        bucket="b",
        part_size="5MiB",
        close_grace=0.2,
        idle_timeout=30,
        node_id="metrics-test",
    )
    checkpoints = MemoryCheckpointStore(scope="node:metrics-test")
    supervisor = Supervisor(settings, MemoryMultipartStore(), checkpoints)  # type: ignore[arg-type]
    declare_known_labels()
    collector = DaemonCollector(supervisor)
    REGISTRY.register(collector)
    stop = asyncio.Event()
    task = asyncio.create_task(supervisor.run(stop))
    try:
        async with asyncio.timeout(10):
            await supervisor.ready.wait()
        path = watch / "cam.ts"
        with path.open("wb") as handle:
            handle.write(b"\1" * (6 * MiB))
            handle.flush()
            # Part 1 in S3, the last MiB held back until a part is full: one series, its lag.
            await wait_until(lambda: list(_lag_series(collector).values()) == [1 * MiB], "lag")
            (stream_id,) = _lag_series(collector)
        await wait_until(
            lambda: checkpoints.meta.get(stream_id, {}).get("state") == "completed", "completed"
        )
        await wait_until(lambda: not supervisor.streams, "the stream gone from the supervisor")
        assert _lag_series(collector) == {}
        for name, label_sets in _series(REGISTRY).items():
            allowed = BOUNDED_LABELS | PER_STREAM.get(name.removesuffix("_total"), set())
            for labels in label_sets:
                assert set(labels) <= allowed, f"{name} has labels {sorted(labels)}"
                assert stream_id not in labels.values(), f"{name} names the stream"
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)
        REGISTRY.unregister(collector)
