"""The settings of local retention (--keep-local, --min-free; issue 20.1): a part of
tailup.config.settings.Settings of their own, decided by tailup.rules.retention."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings

from tailup.rules.retention import MinFree, Policy, parse_min_free


class RetentionSettings(BaseSettings):
    """Which verified recordings leave the local disk; both off by default."""

    keep_local: float = Field(
        default=0.0,  # parsed as a DURATION by Settings (tailup.config.settings.DURATION_FIELDS)
        description="Delete local recordings whose upload is verified once this old (0 = off); "
        "a folder's [[watch]] table may set its own keep_local.",
    )
    min_free: str = Field(
        default="0",
        description="Delete the oldest verified local recordings while a watched folder's file "
        "system has less free space than this: a size like 10GiB or a percentage like 15% "
        "(0 = off). One setting for every folder: free space is a file system's.",
    )

    @field_validator("keep_local")
    @classmethod
    def _keep_local(cls, value: float) -> float:
        if value < 0:
            raise ValueError(f"{value:g} is negative (0 turns it off)")
        return value

    @field_validator("min_free", mode="before")
    @classmethod
    def _min_free(cls, value: Any) -> str:
        parse_min_free(value if not isinstance(value, int) else str(value))
        return str(value).strip()

    @property
    def min_free_setting(self) -> MinFree:
        return parse_min_free(self.min_free)

    @property
    def retention_policy(self) -> Policy:
        return Policy(keep_local_s=self.keep_local, min_free=self.min_free_setting)
