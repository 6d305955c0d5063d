"""The multipart store: the few S3 calls tailup makes, on one long-lived aiobotocore client.

Errors are translated here, at the boundary, into tailup's family: retryable (server errors,
throttling, timeouts, connection resets, BadDigest) or permanent (credentials, bucket, policy).
botocore's own retries (standard mode) absorb short blips inside one call; the stream backs off
and tries again on top of that.

Payload signing: SigV4 can cover the body with its SHA-256 (x-amz-content-sha256) or send
UNSIGNED-PAYLOAD. botocore signs unless it sees HTTPS *and* a checksum it added itself, so with the
CRC32 header tailup adds it would hash every byte with SHA-256 even over TLS, ~0.7 CPU s per GiB.
botocore also does it on the event loop, which stalls every other stream for ~5 ms per 8 MiB.
tailup decides instead (``payload_signing``): ``auto`` signs over plain http to another host, as
the AWS SDKs do over plain http (there the signature is what stops a man in the middle from
swapping the body along with its CRC32), and sends UNSIGNED-PAYLOAD over https, where TLS protects
the body, and to a loopback address, where no one but the local root sits in the middle. The
checksum header (x-amz-checksum-crc32 by default, --checksum: tailup.checksums), which S3
verifies (BadDigest), guards against corruption either way.
``never`` drops the signature over any plain http too (a trusted LAN); ``always`` keeps it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import botocore.exceptions
from aiobotocore.config import AioConfig

from tailup import permissions
from tailup.body import PartBody  # (importing it registers the zero-copy payload)
from tailup.checksums import Checksum, ChecksumAlgorithm, ChecksumType
from tailup.config import PayloadSigning
from tailup.errors import (
    AccessRefused,
    NoSuchUpload,
    StoragePermanentError,
)
from tailup.integrity import crc32_header, multipart_etag
from tailup.objectoptions import ObjectOptions

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client


from tailup.s3.errors import (
    _NETWORK_ERRORS,
    _name_the_refusal,
    name_the_option_refusal,
    translate_error,
)
from tailup.s3.protocol import Body, ListedObject, ObjectInfo, UploadedPart, UploadInfo
from tailup.s3.session import new_session


def signs_payload(policy: PayloadSigning, endpoint_url: str | None) -> bool:
    """Whether requests carry the body's SHA-256 in their signature (see the module doc)."""
    if policy is not PayloadSigning.AUTO:
        return policy is PayloadSigning.ALWAYS
    if endpoint_url is None:
        return False  # AWS itself, over https
    url = urlsplit(endpoint_url)
    return url.scheme.lower() != "https" and not _is_loopback(url.hostname or "")


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it could resolve anywhere


# Requests that are not full parts (create, complete, head, metadata.json, tails of finalizing
# streams) get connections of their own beyond what the part budget admits.
SPARE_CONNECTIONS = 32


def pool_size(max_inflight_bytes: int, part_size_bytes: int) -> int:
    """Connections for the client: every part the byte budget lets fly at once, plus spares, so
    that no request waits for a connection while holding budget (aiohttp queues such waits with
    no timeout, and a Complete stuck behind uploads delays a whole stream)."""
    parts_in_flight = -(-max_inflight_bytes // part_size_bytes)
    return parts_in_flight + SPARE_CONNECTIONS


def _conditional(if_none_match: bool) -> dict[str, str]:
    # S3 (since 2024) and SeaweedFS answer PreconditionFailed when the key holds an object.
    return {"IfNoneMatch": "*"} if if_none_match else {}


def _sent_checksum(checksum: Checksum | None, crc32: int) -> dict[str, str]:
    """The checksum parameter of a body: the one given, or the CRC32 header of ``crc32``."""
    if checksum is None:
        return {"ChecksumCRC32": crc32_header(crc32)}
    return checksum.request_params()


def _upload_checksum(algorithm: ChecksumAlgorithm, kind: ChecksumType | None) -> dict[str, str]:
    """CreateMultipartUpload's checksum parameters (tailup.checksums.ChecksumType; S3 has
    CRC64NVME as a full-object checksum only)."""
    if algorithm is ChecksumAlgorithm.NONE:
        return {}
    params = {"ChecksumAlgorithm": algorithm.s3_name}
    if kind is ChecksumType.FULL_OBJECT or algorithm.full_object:
        params["ChecksumType"] = "FULL_OBJECT"
    return params


def _object_checksum(checksum: Checksum | None) -> dict[str, str]:
    """CompleteMultipartUpload's whole-object checksum, which the server checks against the
    parts it holds (BadDigest otherwise): only for a FULL_OBJECT upload."""
    if checksum is None or checksum.algorithm is ChecksumAlgorithm.NONE:
        return {}
    return {"ChecksumType": "FULL_OBJECT", **checksum.request_params()}


def _blob(body: Body) -> Body:
    """A body as botocore leaves it alone. botocore wraps ``bytes`` in a BytesIO, and a body
    with ``read`` gets ``Expect: 100-continue``: the headers go first and the body waits for the
    server's 100, a round trip more per request (every metadata.json). A PartBody is sent as is
    (tailup.body); a copy of a small ``bytes`` body costs less than that round trip."""
    return PartBody(body) if isinstance(body, bytes) else body


def _upload_info(upload: dict[str, Any]) -> UploadInfo:
    """One upload of ListMultipartUploads, with the checksum algorithm and type it names."""
    named = str(upload.get("ChecksumAlgorithm") or "").lower()
    algorithm = next((a for a in ChecksumAlgorithm if a.s3_name and a.value == named), None)
    kind = str(upload.get("ChecksumType") or "").lower()
    return UploadInfo(
        str(upload["Key"]),
        str(upload["UploadId"]),
        upload["Initiated"],
        checksum=algorithm,
        checksum_type=next((t for t in ChecksumType if t.value == kind), None),
        foreign_checksum=bool(named) and algorithm is None,
    )


def _reported_checksum(response: dict[str, Any]) -> Checksum | None:
    for algorithm in ChecksumAlgorithm:
        value = response.get(f"Checksum{algorithm.s3_name}") if algorithm.s3_name else None
        if value:
            return Checksum(algorithm, str(value))
    return None


class S3MultipartStore:
    def __init__(self, client: S3Client, bucket: str) -> None:
        self._s3 = client
        self._bucket = bucket
        self._list_bucket_refused = False

    def for_bucket(self, bucket: str) -> S3MultipartStore:
        return self if bucket == self._bucket else S3MultipartStore(self._s3, bucket)

    @classmethod
    @asynccontextmanager
    async def connect(
        cls,
        bucket: str,
        *,
        endpoint_url: str | None,
        region: str,
        max_connections: int = 32,
        payload_signing: PayloadSigning = PayloadSigning.AUTO,
        connect_timeout_s: float = 10,
        read_timeout_s: float = 60,
        max_attempts: int = 4,  # botocore's tries of one call (tests: fewer, where all fail)
    ) -> AsyncIterator[S3MultipartStore]:
        config = AioConfig(
            retries={"mode": "standard", "max_attempts": max_attempts},
            connect_timeout=connect_timeout_s,
            read_timeout=read_timeout_s,
            max_pool_connections=max_connections,
            # tailup computes each part's CRC32 itself (it needs it for change detection) and
            # passes it in; botocore must not hash every byte a second time.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            s3={"payload_signing_enabled": signs_payload(payload_signing, endpoint_url)},
        )
        # A session of its own (credentials found now), with the process's parsed service models
        # (tailup.s3.session): the daemon, the CLI and the tests make many clients.
        async with new_session().create_client(
            "s3", endpoint_url=endpoint_url, region_name=region, config=config
        ) as client:
            yield cls(client, bucket)

    async def _call(
        self, action: str, method: str, made_as: ObjectOptions | None = None, /, **kwargs: Any
    ) -> Any:
        """``made_as``: what the object is stored as (--storage-class, --sse, --tag), for a
        refusal of them to name the flags."""
        try:
            return await getattr(self._s3, method)(Bucket=self._bucket, **kwargs)
        except botocore.exceptions.ClientError as exc:
            refusal = translate_error(exc, action)
            refusal = _name_the_refusal(refusal, method, int(kwargs.get("PartNumber", 0)))
            code = str(exc.response.get("Error", {}).get("Code", ""))
            raise name_the_option_refusal(refusal, made_as, code) from exc
        except _NETWORK_ERRORS as exc:
            raise translate_error(exc, action) from exc

    async def check_bucket(self) -> None:
        try:
            await self._call("check bucket", "head_bucket")
        except StoragePermanentError as exc:
            if exc.code not in ("400", "403", "404"):
                raise
            if exc.code == "403" and self._list_bucket_refused:
                return  # S3 answers; it refuses s3:ListBucket, which was said once
            # A HEAD answer has no body, hence no error code: ask again with a GET, whose answer
            # says which (NoSuchBucket, SignatureDoesNotMatch, InvalidAccessKeyId, AccessDenied).
            try:
                await self._call(f"check bucket {self._bucket!r}", "list_objects_v2", MaxKeys=1)
            except AccessRefused as refusal:
                # Valid credentials without s3:ListBucket (optional: tailup.permissions).
                self._list_bucket_refused = True
                permissions.refused("s3:ListBucket", str(refusal))
                return
            raise StoragePermanentError(
                f"S3 refuses bucket {self._bucket!r} (HTTP {exc.code} to HeadBucket; the "
                "credentials need s3:ListBucket on it)",
                code=exc.code,
            ) from exc

    async def create_upload(
        self,
        key: str,
        content_type: str,
        *,
        checksum: ChecksumAlgorithm = ChecksumAlgorithm.CRC32,
        checksum_type: ChecksumType | None = None,
        options: ObjectOptions | None = None,
    ) -> str:
        response = await self._call(
            "create multipart upload",
            "create_multipart_upload",
            options,
            Key=key,
            ContentType=content_type,
            **_upload_checksum(checksum, checksum_type),
            **(options.request_params() if options else {}),
        )
        return str(response["UploadId"])

    async def upload_part(
        self,
        key: str,
        upload_id: str,
        number: int,
        body: Body,
        crc32: int,
        *,
        checksum: Checksum | None = None,
        options: ObjectOptions | None = None,
    ) -> str:
        response = await self._call(
            f"upload part {number}",
            "upload_part",
            options,
            Key=key,
            UploadId=upload_id,
            PartNumber=number,
            Body=_blob(body),
            **_sent_checksum(checksum, crc32),
        )
        return str(response["ETag"])

    async def complete_upload(
        self,
        key: str,
        upload_id: str,
        parts: Sequence[tuple[int, str, int]],
        *,
        if_none_match: bool = False,
        checksums: Sequence[Checksum] | None = None,
        object_checksum: Checksum | None = None,
    ) -> str:
        sums = list(checksums) if checksums is not None else [None] * len(parts)
        response = await self._call(
            "complete multipart upload",
            "complete_multipart_upload",
            Key=key,
            UploadId=upload_id,
            **_conditional(if_none_match),
            **_object_checksum(object_checksum),
            MultipartUpload={
                "Parts": [
                    {"PartNumber": n, "ETag": etag, **_sent_checksum(sums[i], crc)}
                    for i, (n, etag, crc) in enumerate(parts)
                ]
            },
        )
        return str(response.get("ETag") or multipart_etag([etag for _, etag, _ in parts]))

    async def abort_upload(self, key: str, upload_id: str) -> None:
        try:
            await self._call(
                "abort multipart upload", "abort_multipart_upload", Key=key, UploadId=upload_id
            )
        except NoSuchUpload:
            return

    async def delete_object(self, key: str) -> None:
        await self._call("delete object", "delete_object", Key=key)

    async def list_parts(self, key: str, upload_id: str) -> list[UploadedPart]:
        parts: list[UploadedPart] = []
        marker = 0
        while True:
            response = await self._call(
                "list parts", "list_parts", Key=key, UploadId=upload_id, PartNumberMarker=marker
            )
            parts.extend(
                UploadedPart(
                    int(p["PartNumber"]),
                    str(p["ETag"]),
                    int(p["Size"]),
                    p.get("LastModified"),
                    _reported_checksum(p),
                )
                for p in response.get("Parts", [])
            )
            if not response.get("IsTruncated"):
                return parts
            marker = int(response["NextPartNumberMarker"])

    async def put_object(
        self,
        key: str,
        body: Body,
        crc32: int,
        content_type: str,
        *,
        if_none_match: bool = False,
        checksum: Checksum | None = None,
        options: ObjectOptions | None = None,
    ) -> str:
        response = await self._call(
            "put object",
            "put_object",
            options,
            Key=key,
            **_conditional(if_none_match),
            Body=_blob(body),
            ContentType=content_type,
            **_sent_checksum(checksum, crc32),
            **(options.request_params() if options else {}),
        )
        return str(response["ETag"])

    async def head_object(self, key: str, *, checksum: bool = False) -> ObjectInfo | None:
        mode = {"ChecksumMode": "ENABLED"} if checksum else {}
        try:
            response = await self._call("head object", "head_object", Key=key, **mode)
        except StoragePermanentError as exc:
            if exc.code in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return ObjectInfo(
            int(response["ContentLength"]),
            str(response["ETag"]),
            _reported_checksum(response) if checksum else None,
        )

    async def get_object(self, key: str) -> bytes:
        response = await self._call("get object", "get_object", Key=key)
        async with response["Body"] as body:
            return bytes(await body.read())

    async def iter_object(self, key: str, chunk_bytes: int = 8 << 20) -> AsyncIterator[bytes]:
        """The object's bytes in chunks, without holding it in memory (for `tailup verify`)."""
        response = await self._call("get object", "get_object", Key=key)
        body = response["Body"]
        try:
            # Read through the StreamingBody itself: aiobotocore before 2.19 hands aiohttp's
            # response (whose read() takes no size) to `async with ... as`.
            async with body:
                while chunk := await body.read(chunk_bytes):
                    yield bytes(chunk)
        except _NETWORK_ERRORS as exc:
            raise translate_error(exc, "read object") from exc

    async def list_uploads(self, prefix: str) -> list[UploadInfo]:
        uploads: list[UploadInfo] = []
        kwargs: dict[str, Any] = {"Prefix": prefix}
        while True:
            response = await self._call(
                "list multipart uploads", "list_multipart_uploads", **kwargs
            )
            uploads.extend(_upload_info(u) for u in response.get("Uploads", []))
            if not response.get("IsTruncated"):
                return uploads
            kwargs["KeyMarker"] = response["NextKeyMarker"]
            kwargs["UploadIdMarker"] = response["NextUploadIdMarker"]

    async def list_objects(self, prefix: str, *, limit: int | None = None) -> list[ListedObject]:
        found: list[ListedObject] = []
        kwargs: dict[str, Any] = {"Prefix": prefix}
        while limit is None or len(found) < limit:
            if limit is not None:
                kwargs["MaxKeys"] = min(limit - len(found), 1000)
            response = await self._call("list objects", "list_objects_v2", **kwargs)
            found.extend(
                ListedObject(str(o["Key"]), int(o["Size"])) for o in response.get("Contents", [])
            )
            if not response.get("IsTruncated"):
                break
            kwargs["ContinuationToken"] = response["NextContinuationToken"]
        return found if limit is None else found[:limit]
