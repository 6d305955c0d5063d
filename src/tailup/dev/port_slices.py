"""Which loopback ports a process may hand to its dev servers (pure: no I/O).

Checking that a port is free and binding it later is a race between processes: two pytest-xdist
workers (or a test run and a demo) could both find the same port free and both start a server on
it. So each process draws from its own slice of ports, disjoint from every other slice:

- the ports lie below the kernel's ephemeral range (where it picks the local ports of outgoing
  connections, which could take a port between the check and the bind), as do their twins at
  port + 10000: SeaweedFS puts each gRPC port there and Redis Cluster its bus;
- the base region and the twin region do not overlap, so no process's twin is another's base;
- the region is cut into ``SLOTS`` slices: pytest-xdist worker ``gwN`` prefers slice ``N``
  (modulo ``XDIST_SLOTS``), a process outside xdist one of the remaining slices, by its pid;
- a process holds its slice with a lock (tailup.dev.ports) while it lives: one that finds its
  preferred slice held (another run's worker of the same number, a pid sharing it) takes the next
  free one in ``slot_preference``'s order.

So two live processes never share a slice, unless more than ``SLOTS`` ask at once; then the bind
check and a random start within the slice keep collisions as rare as before slices.
"""

from __future__ import annotations

TWIN_OFFSET = 10_000  # SeaweedFS's gRPC ports and Redis Cluster's bus: port + 10000
LOWEST_PORT = 1024  # below: privileged
HIGHEST_PORT = 65_535
LINUX_DEFAULT_EPHEMERAL = (32_768, 60_999)
XDIST_SLOTS = 48
OTHER_SLOTS = 16
SLOTS = XDIST_SLOTS + OTHER_SLOTS


class NoPortRegion(ValueError):
    """The ephemeral range leaves no room for ports and their twins."""


def parse_ephemeral_range(text: str) -> tuple[int, int]:
    """``/proc/sys/net/ipv4/ip_local_port_range`` ("32768\\t60999") as (lowest, highest)."""
    low, high = (int(field) for field in text.split())
    if not LOWEST_PORT <= low <= high <= HIGHEST_PORT:
        raise ValueError(f"not an ephemeral port range: {text!r}")
    return low, high


def base_region(ephemeral: tuple[int, int]) -> range:
    """The widest run of base ports P (at most TWIN_OFFSET of them, so that no P is another's
    twin) with P and P + TWIN_OFFSET outside ``ephemeral`` and within the unprivileged ports.
    Below the ephemeral range if there is room (Linux's default: 12768..22767, twins up to
    32767), else above it."""
    low, high = ephemeral
    below_end = low - TWIN_OFFSET  # the twin of a base below this is below ``low``
    below = range(max(LOWEST_PORT, below_end - TWIN_OFFSET), below_end)
    above_start = high + 1
    above = range(above_start, min(above_start + TWIN_OFFSET, HIGHEST_PORT + 1 - TWIN_OFFSET))
    widest = max(below, above, key=len)
    if len(widest) < SLOTS:
        raise NoPortRegion(
            f"the ephemeral port range {low}-{high} leaves no run of {SLOTS} ports P with P and "
            f"P + {TWIN_OFFSET} outside it"
        )
    return widest


def slot_for(xdist_worker: str | None, pid: int) -> int:
    """The slice of a process: an xdist worker's by its number (``gw3``: 3), any other process's
    (PYTEST_XDIST_WORKER unset, or not ``gwN``) among the last OTHER_SLOTS, by its pid."""
    if xdist_worker and xdist_worker.startswith("gw") and xdist_worker[2:].isdigit():
        return int(xdist_worker[2:]) % XDIST_SLOTS
    return XDIST_SLOTS + pid % OTHER_SLOTS


def slice_for(slot: int, region: range) -> range:
    """Slot ``slot``'s base ports: one of SLOTS equal, disjoint slices of ``region``."""
    if not 0 <= slot < SLOTS:
        raise ValueError(f"slot {slot} is not in 0..{SLOTS - 1}")
    width = len(region) // SLOTS
    start = region.start + slot * width
    return range(start, start + width)


def slot_preference(xdist_worker: str | None, pid: int) -> list[int]:
    """Every slot in the order a process tries to hold one: its own (slot_for), then the others
    of its kind (xdist workers or not), then the rest."""
    own = slot_for(xdist_worker, pid)
    xdist = range(XDIST_SLOTS)
    other = range(XDIST_SLOTS, SLOTS)
    kind, rest = (xdist, other) if own < XDIST_SLOTS else (other, xdist)
    start = kind.index(own)
    return [*kind[start:], *kind[:start], *rest]
