"""Presigned GET URLs (`tailup url`), signed locally: no request is sent.

A client of its own, with SigV4 asked for by name: botocore presigns with SigV2 in us-east-1
unless told otherwise (``AWSAccessKeyId=...&Signature=...&Expires=...``), which AWS refuses in
newer regions and which has no 7-day cap. The uploads' client is left as it is.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiobotocore.config import AioConfig

from tailup.s3.session import new_session


async def presigned_get_urls(
    bucket: str, keys: Sequence[str], *, expires_s: int, endpoint_url: str | None, region: str
) -> list[str]:
    """A GET URL of each of ``keys``, valid ``expires_s``. They hold their signature: never log
    them."""
    config = AioConfig(signature_version="s3v4")
    async with new_session().create_client(
        "s3", endpoint_url=endpoint_url, region_name=region, config=config
    ) as client:
        return [
            str(
                await client.generate_presigned_url(
                    "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires_s
                )
            )
            for key in keys
        ]
