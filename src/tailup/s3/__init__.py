"""The multipart store: the few S3 calls tailup makes, on one long-lived aiobotocore client
(tailup.s3.client: payload signing, connection pool), the interface it shares with the memory
store (tailup.s3.protocol), and S3's errors as tailup's (tailup.s3.errors)."""

from tailup.s3.client import SPARE_CONNECTIONS, S3MultipartStore, pool_size, signs_payload
from tailup.s3.errors import translate_error
from tailup.s3.protocol import (
    Body,
    ListedObject,
    MultipartStore,
    ObjectInfo,
    UploadedPart,
    UploadInfo,
)

__all__ = [
    "SPARE_CONNECTIONS",
    "Body",
    "ListedObject",
    "MultipartStore",
    "ObjectInfo",
    "S3MultipartStore",
    "UploadInfo",
    "UploadedPart",
    "pool_size",
    "signs_payload",
    "translate_error",
]
