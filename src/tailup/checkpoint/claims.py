"""Leases in Redis: the claims this node holds on shared folders' recordings (each write of such
a stream carries its claim, which the scripts check: fencing), and the node lease and account
each daemon keeps of itself."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
import redis.exceptions as rex

from tailup.checkpoint.protocol import Claim, RenewResult
from tailup.checkpoint.redis_errors import guarded
from tailup.checkpoint.scripts import RENEWED, Scripts, guard_keys, ms
from tailup.errors import ClaimLost, RecordLost
from tailup.keys import RedisKeys
from tailup.model import iso, utc_now

if TYPE_CHECKING:
    from redis.commands.core import AsyncScript


class ClaimBook:
    """The claims this node holds, and those it held and lost to another node: every write of
    those is refused from then on (until claimed again), not sent unguarded."""

    def __init__(
        self, client: aioredis.Redis, keys: RedisKeys, scripts: Scripts, *, lease_ttl_s: float
    ) -> None:
        self._redis = client
        self._keys = keys
        self._scripts = scripts
        self._lease_ttl_s = lease_ttl_s
        self._claims: dict[str, Claim] = {}
        self._lost_claims: set[str] = set()

    def _drop_claim(self, stream_id: str) -> None:
        if self._claims.pop(stream_id, None) is not None:
            self._lost_claims.add(stream_id)

    def _guard_args(self, stream_id: str, expiry: str = "0") -> list[Any]:
        """The scripts' GUARD arguments for a write of the stream (tailup.checkpoint.scripts)."""
        claim = self._claims.get(stream_id)
        value, fence = (claim.value, str(claim.fence)) if claim else ("", "")
        return [value, fence, ms(self._lease_ttl_s), expiry, iso(utc_now())]

    async def run_guarded(
        self, script: AsyncScript, stream_id: str, args: Sequence[Any], *, expiry: str = "0"
    ) -> Any:
        """Run a script that begins with GUARD on the stream's keys, with the claim's arguments
        and then ``args``; its refusals as RecordLost and ClaimLost (the claim dropped)."""
        if stream_id in self._lost_claims:
            raise ClaimLost(f"another node holds stream {stream_id} now")
        keys = guard_keys(self._keys, stream_id)
        try:
            return await script(keys=keys, args=[*self._guard_args(stream_id, expiry), *args])
        except rex.ResponseError as exc:
            text = str(exc)
            if "TAILUP-LOST" in text:
                raise RecordLost(f"Redis lost the record of stream {stream_id}") from exc
            if "TAILUP-STALE" in text:
                self._drop_claim(stream_id)
                raise ClaimLost(f"another node holds stream {stream_id} now") from exc
            raise

    async def claim(self, stream_id: str, node_id: str, ttl_s: float) -> Claim | str:
        k = self._keys
        mine, value = await guarded(
            lambda: self._scripts.claim(
                keys=[
                    k.stream_lease(stream_id),
                    k.stream_fence(stream_id),
                    k.stream_meta(stream_id),
                ],
                args=[node_id, ms(ttl_s)],
            )
        )
        if not int(mine):
            self._drop_claim(stream_id)
            return str(value)
        claim = Claim(str(value), int(str(value).rpartition("|")[2]))
        self._claims[stream_id] = claim
        self._lost_claims.discard(stream_id)
        return claim

    async def renew_claim(self, stream_id: str, ttl_s: float) -> RenewResult:
        claim = self._claims.get(stream_id)
        if claim is None:
            return RenewResult.TAKEN
        k = self._keys
        result = await guarded(
            lambda: self._scripts.renew(
                keys=[k.stream_lease(stream_id), k.stream_fence(stream_id)],
                args=[claim.value, ms(ttl_s), str(claim.fence)],
            )
        )
        if not int(result):
            self._drop_claim(stream_id)
        return RENEWED[int(result)]

    async def release_claim(self, stream_id: str) -> None:
        # This node is done with the stream: a claim it lost is forgotten too (N13), or the
        # book would keep one id for every recording another node ever took over.
        self._lost_claims.discard(stream_id)
        claim = self._claims.pop(stream_id, None)
        if claim is not None:
            lease = self._keys.stream_lease(stream_id)
            await guarded(lambda: self._scripts.release(keys=[lease], args=[claim.value]))

    def held_claims(self) -> list[str]:
        return list(self._claims)

    def lost_claims(self) -> list[str]:
        """Streams whose claim this node lost and has not yet let go of (release_claim)."""
        return list(self._lost_claims)


class NodeLeases:
    """A node's lease (one daemon per --node-id) and what its daemon says of itself."""

    def __init__(self, client: aioredis.Redis, keys: RedisKeys, scripts: Scripts) -> None:
        self._redis = client
        self._keys = keys
        self._scripts = scripts

    async def acquire_node(
        self, node_id: str, holder: str, ttl_s: float, *, replacing: str = ""
    ) -> str | None:
        lease = self._keys.node_lease(node_id)
        held = await guarded(
            lambda: self._scripts.acquire_node(keys=[lease], args=[holder, ms(ttl_s), replacing])
        )
        return str(held) if held else None

    async def renew_node(self, node_id: str, holder: str, ttl_s: float) -> RenewResult:
        lease = self._keys.node_lease(node_id)
        result = await guarded(
            lambda: self._scripts.renew(keys=[lease, lease], args=[holder, ms(ttl_s), ""])
        )
        return RENEWED[int(result)]

    async def release_node(self, node_id: str, holder: str) -> None:
        lease = self._keys.node_lease(node_id)
        await guarded(lambda: self._scripts.release(keys=[lease], args=[holder]))

    async def publish_node_info(self, node_id: str, info: Mapping[str, str], ttl_s: float) -> None:
        key = self._keys.node_info(node_id)

        async def run() -> None:
            await self._redis.hset(key, mapping=dict[Any, Any](info))
            await self._redis.pexpire(key, ms(ttl_s))

        await guarded(run)

    async def node_info(self, node_id: str) -> dict[str, str]:
        key = self._keys.node_info(node_id)
        found = await guarded(lambda: self._redis.hgetall(key))
        return {str(k): str(v) for k, v in found.items()}
