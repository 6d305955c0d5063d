"""The settings of which files are uploaded and under which keys (--include, --key-template,
--key-conflict, --hls): a part of tailup.config.settings.Settings of their own, since --hls
changes the others' defaults."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode

from tailup.config.storage import StorageSettings
from tailup.config.values import DEFAULT_INCLUDE, KeyConflict, split_list
from tailup.keys import DEFAULT_KEY_TEMPLATE, template_problems
from tailup.rules.hls import HLS_INCLUDE, HLS_KEY_TEMPLATE


class LayoutSettings(StorageSettings):
    """Which files, under which keys."""

    include: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_INCLUDE), description="File name globs to upload."
    )
    key_template: str = Field(default=DEFAULT_KEY_TEMPLATE, description="S3 key of each file.")
    key_conflict: KeyConflict = Field(
        default=KeyConflict.SUFFIX,
        description="When a template names a key that holds another recording: suffix "
        "(cam1-2.ts) or overwrite.",
    )
    hls: bool = Field(
        default=False,
        description="Live HLS: playlists and segments keyed by their path below the folder "
        "({relpath}); a playlist is published in place once every segment it names is in S3.",
    )

    @field_validator("include", mode="before")
    @classmethod
    def _globs(cls, value: Any) -> Any:
        return split_list(value, r"[,\s]+")

    @field_validator("include")
    @classmethod
    def _include(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("no pattern given")
        return value

    @field_validator("key_template")
    @classmethod
    def _template(cls, value: str) -> str:
        problems = template_problems(value)
        if problems:
            raise ValueError("; ".join(problems))
        return value

    @model_validator(mode="after")
    def _hls_defaults(self) -> LayoutSettings:
        """--hls keys files by {relpath} (a template given with it is refused by
        tailup.config.checks) and includes playlists and fMP4 segments."""
        if self.hls:
            if self.key_template == DEFAULT_KEY_TEMPLATE:
                self.key_template = HLS_KEY_TEMPLATE
            self.include = list(dict.fromkeys([*self.include, *HLS_INCLUDE]))
        return self
