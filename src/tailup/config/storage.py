"""The settings of how objects are stored (--storage-class, --sse, --sse-kms-key-id, --tag; issue
20.2): a part of tailup.config.settings.Settings of their own, checked by tailup.objectoptions."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode

from tailup.config.values import split_list
from tailup.objectoptions import ObjectOptions, check_sse, check_storage_class, check_tags


class StorageSettings(BaseSettings):
    """What new objects are created with; "" (and no tag) leaves the bucket's defaults."""

    # How objects are stored (tailup.objectoptions); "" leaves the bucket's default.
    storage_class: Annotated[str, AfterValidator(check_storage_class)] = Field(
        default="", description="S3 storage class of recordings and their metadata.json."
    )
    sse: Annotated[str, AfterValidator(check_sse)] = Field(
        default="", description="Server-side encryption: AES256, aws:kms or aws:kms:dsse."
    )
    sse_kms_key_id: str = Field(default="", description="The KMS key of --sse aws:kms.")
    tag: Annotated[list[str], NoDecode, AfterValidator(check_tags)] = Field(
        default_factory=list,
        description="Object tag KEY=VALUE of recordings and their metadata.json (repeatable).",
    )

    @field_validator("tag", mode="before")
    @classmethod
    def _tags(cls, value: Any) -> Any:
        return split_list(value, r"[,\n]")  # S3 refuses a comma in a tag anyway

    @property
    def object_options(self) -> ObjectOptions:
        return ObjectOptions.of(self.storage_class, self.sse, self.sse_kms_key_id, self.tag)
