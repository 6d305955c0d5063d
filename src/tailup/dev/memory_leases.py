"""The leases of the in-process checkpoint store (tailup.dev.MemoryCheckpointStore): a shared
folder's recording claimed by one node (fencing), and the node leases. Leases here never expire
by themselves (Redis's always have a TTL): tests drop them to play a holder presumed dead."""

from __future__ import annotations

from collections.abc import Mapping

from tailup.checkpoint.protocol import Claim, RenewResult


class MemoryLeases:
    """Claims and node leases; the store keeps the data they guard."""

    leases: dict[str, str]  # stream id or "node:ID" -> holder
    fences: dict[str, int]
    infos: dict[str, dict[str, str]]
    _claims: dict[str, Claim]
    _lost_claims: set[str]

    def _check(self) -> None:
        raise NotImplementedError

    def _fence_written(self, stream_id: str) -> None:
        """The fence expires with its record (the store's lifetimes)."""
        raise NotImplementedError

    def _drop_claim(self, stream_id: str) -> None:
        if self._claims.pop(stream_id, None) is not None:
            self._lost_claims.add(stream_id)

    async def claim(self, stream_id: str, node_id: str, ttl_s: float) -> Claim | str:
        self._check()
        held = self.leases.get(stream_id)
        if held is not None and not held.startswith(node_id + "|"):
            self._drop_claim(stream_id)
            return held
        if held is None:
            self.fences[stream_id] = self.fences.get(stream_id, 0) + 1
            self._fence_written(stream_id)
            held = f"{node_id}|{self.fences[stream_id]}"
            self.leases[stream_id] = held
        claim = Claim(held, int(held.rpartition("|")[2]))
        self._claims[stream_id] = claim
        self._lost_claims.discard(stream_id)
        return claim

    async def renew_claim(self, stream_id: str, ttl_s: float) -> RenewResult:
        self._check()
        claim = self._claims.get(stream_id)
        if claim is None:
            return RenewResult.TAKEN
        held = self.leases.get(stream_id)
        if held == claim.value:
            return RenewResult.RENEWED
        if held is None and self.fences.get(stream_id) == claim.fence:
            self.leases[stream_id] = claim.value
            return RenewResult.RESTORED
        self._drop_claim(stream_id)
        return RenewResult.TAKEN

    async def release_claim(self, stream_id: str) -> None:
        self._check()
        self._lost_claims.discard(stream_id)
        claim = self._claims.pop(stream_id, None)
        if claim is not None and self.leases.get(stream_id) == claim.value:
            del self.leases[stream_id]

    def held_claims(self) -> list[str]:
        return list(self._claims)

    def lost_claims(self) -> list[str]:
        return list(self._lost_claims)

    async def acquire_node(
        self, node_id: str, holder: str, ttl_s: float, *, replacing: str = ""
    ) -> str | None:
        self._check()
        lease = "node:" + node_id
        held = self.leases.get(lease)
        if held is not None and held not in (holder, replacing):
            return held
        self.leases[lease] = holder
        return None

    async def renew_node(self, node_id: str, holder: str, ttl_s: float) -> RenewResult:
        self._check()
        lease = "node:" + node_id
        held = self.leases.get(lease)
        if held == holder:
            return RenewResult.RENEWED
        if held is None:
            self.leases[lease] = holder
            return RenewResult.RESTORED
        return RenewResult.TAKEN

    async def release_node(self, node_id: str, holder: str) -> None:
        self._check()
        if self.leases.get("node:" + node_id) == holder:
            del self.leases["node:" + node_id]

    async def publish_node_info(self, node_id: str, info: Mapping[str, str], ttl_s: float) -> None:
        self._check()
        self.infos[node_id] = dict(info)

    async def node_info(self, node_id: str) -> dict[str, str]:
        self._check()
        return dict(self.infos.get(node_id, {}))
