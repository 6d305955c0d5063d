"""The settings of which files are uploaded and under which keys (--include, --key-template,
--key-conflict, --hls): a part of tailup.config.settings.Settings of their own. They are every
folder's defaults; what --hls (or a [[watch]] table's ``hls``) makes of a folder's template and
globs is its resolution's (tailup.config.folders): an HLS folder is keyed by {relpath} and
includes playlists and fMP4 segments, whatever --include and --key-template say for the others."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from tailup.config.storage import StorageSettings
from tailup.config.values import DEFAULT_INCLUDE, KeyConflict, split_list
from tailup.keys import DEFAULT_KEY_TEMPLATE, template_problems


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
        description="Live HLS in every watched folder (one folder: hls = true in its [[watch]] "
        "table): playlists and segments keyed by their path below the folder ({relpath}); a "
        "playlist is published in place once every segment it names is in S3.",
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
