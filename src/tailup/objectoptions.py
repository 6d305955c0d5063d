"""What each object is stored with beyond its bytes (--storage-class, --sse, --sse-kms-key-id,
--tag): the pure checks of each setting against S3's rules, the request parameters they make and
what metadata.json says of them. No I/O (table-tested in tests/unit/test_objectoptions.py).

Recordings and their metadata.json get all of them (metadata.json no archival class:
``metadata_object``). The side objects (the `<key>.upload.json`
card, --rpo's tail segments) get the encryption only: they hold the recording's bytes or name
them, so a bucket policy that requires encryption must see it on them too; but a colder class
would bill each small, short-lived one a minimum size and duration (128 KiB, 30 to 180 days) and
tags would make lifecycle rules and cost reports count them as recordings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote, urlencode

# botocore's StorageClass enum (tests/unit/test_objectoptions.py checks it still is) without the
# classes of FSx and AWS Backup, which are not a bucket's to write into.
STORAGE_CLASSES: Final = (
    "STANDARD",
    "REDUCED_REDUNDANCY",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER",
    "DEEP_ARCHIVE",
    "OUTPOSTS",
    "GLACIER_IR",
    "SNOW",
    "EXPRESS_ONEZONE",
)
NOT_WRITABLE_CLASSES: Final = frozenset(
    {"FSX_OPENZFS", "FSX_ONTAP", "AWS_BACKUP_WARM", "AWS_BACKUP_LOW_COST_WARM"}
)
SSE_KINDS: Final = ("AES256", "aws:kms", "aws:kms:dsse")
KMS_KINDS: Final = frozenset({"aws:kms", "aws:kms:dsse"})
# Classes whose objects cannot be read without a restore (GetObject: InvalidObjectState).
ARCHIVE_CLASSES: Final = frozenset({"GLACIER", "DEEP_ARCHIVE"})

# S3's object tag limits (AWS docs, "Categorizing your storage using tags").
MAX_TAGS: Final = 10
MAX_TAG_KEY_CHARS: Final = 128
MAX_TAG_VALUE_CHARS: Final = 256
_TAG_TEXT = re.compile(r"[\w +\-=.:/@]*")  # letters, digits, spaces and + - = . _ : / @

STORAGE_CLASS_FORM = "one of " + ", ".join(STORAGE_CLASSES) + " (default: the bucket's, STANDARD)"
SSE_FORM = "AES256, aws:kms or aws:kms:dsse (default: the bucket's encryption)"
SSE_KMS_KEY_ID_FORM = "a KMS key id, ARN or alias, only with --sse aws:kms or aws:kms:dsse"
_TAG_RULES = (
    f"KEY 1 to {MAX_TAG_KEY_CHARS} and VALUE up to {MAX_TAG_VALUE_CHARS} letters, digits, spaces "
    "or + - = . _ : / @, KEY not starting with aws:, each KEY once"
)
TAG_FORM = f"KEY=VALUE (repeat --tag for more, at most {MAX_TAGS}): {_TAG_RULES}"
# A [[watch]] table's ``tags`` (tailup.config.folders): TOML can say a mapping as it is.
TAGS_FORM = (
    'an inline table of strings like { site = "north", cam = "3" }, or an array of "KEY=VALUE" '
    f'strings like ["site=north", "cam=3"]; at most {MAX_TAGS} tags, {_TAG_RULES}'
)


def check_storage_class(value: str) -> str:
    if value and value not in STORAGE_CLASSES:
        upper = value.upper().replace("-", "_")
        hint = f" (did you mean {upper}?)" if upper in STORAGE_CLASSES else ""
        raise ValueError(f"{value!r} is not an S3 storage class{hint}")
    return value


def check_sse(value: str) -> str:
    if value and value not in SSE_KINDS:
        raise ValueError(f"{value!r} is not a server-side encryption S3 takes")
    return value


def parse_tag(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` -> (key, value), refusing what S3 refuses as an object tag."""
    key, eq, value = text.partition("=")
    if not eq:
        raise ValueError(f"{text!r} has no '=' (KEY=VALUE)")
    if not key:
        raise ValueError(f"{text!r} has an empty KEY")
    if len(key) > MAX_TAG_KEY_CHARS:
        raise ValueError(f"the KEY of {text!r} is {len(key)} characters, over {MAX_TAG_KEY_CHARS}")
    if len(value) > MAX_TAG_VALUE_CHARS:
        raise ValueError(f"the VALUE of {key}= is {len(value)} characters, over 256")
    if key.lower().startswith("aws:"):
        raise ValueError(f"the KEY {key!r} starts with aws:, which S3 keeps for itself")
    for part, what in ((key, "KEY"), (value, "VALUE")):
        bad = sorted({c for c in part if not _TAG_TEXT.fullmatch(c)})
        if bad:
            raise ValueError(f"the {what} of {text!r} has {''.join(bad)!r}, which S3 refuses")
    return key, value


def check_tags(items: list[str]) -> list[str]:
    keys = [parse_tag(item)[0] for item in items]
    if len(keys) > MAX_TAGS:
        raise ValueError(f"{len(keys)} tags given; S3 keeps at most {MAX_TAGS} on an object")
    twice = sorted({key for key in keys if keys.count(key) > 1})
    if twice:
        raise ValueError(f"the tag KEY {twice[0]!r} is given twice")
    return items


def tag_items(value: object) -> list[str]:
    """``tags`` as --tag's KEY=VALUE items, from a table of strings or an array of KEY=VALUE
    strings (one string: one tag); ValueError says what is wrong. What S3 refuses of the tags
    themselves is check_tags's."""
    if isinstance(value, dict):
        items = []
        for key, text in value.items():
            if not isinstance(text, str):
                raise ValueError(f"the value of {key!r} is {text!r}, not a string in quotes")
            if "=" in key:  # KEY=VALUE would split it at its first '='
                raise ValueError(f"the KEY {key!r} has '=', which a tag KEY here cannot have")
            items.append(f"{key}={text}")
        return items
    items_given = [value] if isinstance(value, str) else value
    if not isinstance(items_given, list):
        raise ValueError(f"{value!r} is neither a table nor an array")
    for item in items_given:
        if not isinstance(item, str):
            raise ValueError(f'the array holds {item!r}, not a "KEY=VALUE" string')
    return [str(item) for item in items_given]


def kms_key_problem(sse: str, kms_key_id: str) -> str | None:
    """Why --sse-kms-key-id cannot go with ``sse`` (None: it can)."""
    if kms_key_id and sse not in KMS_KINDS:
        given = f"--sse {sse}" if sse else "no --sse"
        return f"a KMS key is given with {given}: S3 uses one only with aws:kms or aws:kms:dsse"
    return None


@dataclass(frozen=True, slots=True)
class ObjectOptions:
    """What objects are created with; empty fields leave the bucket's defaults."""

    storage_class: str = ""
    sse: str = ""
    sse_kms_key_id: str = ""
    tags: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(
        cls, storage_class: str, sse: str, sse_kms_key_id: str, tags: list[str]
    ) -> ObjectOptions:
        return cls(storage_class, sse, sse_kms_key_id, tuple(parse_tag(t) for t in tags))

    @classmethod
    def from_summary(cls, summary: dict[str, Any] | None) -> ObjectOptions:
        """The options metadata.json names (``summary``), to write it again with them."""
        if not summary:
            return cls()
        return cls(
            str(summary.get("class") or ""),
            str(summary.get("sse") or ""),
            str(summary.get("sse_kms_key_id") or ""),
            tuple((str(k), str(v)) for k, v in (summary.get("tags") or {}).items()),
        )

    @property
    def side_object(self) -> ObjectOptions:
        """What the card and --rpo's tail segments get: the encryption only (module doc)."""
        return ObjectOptions(sse=self.sse, sse_kms_key_id=self.sse_kms_key_id)

    @property
    def metadata_object(self) -> ObjectOptions:
        """What metadata.json gets: all but an archival class. tailup reads metadata.json back
        (tailup.recovery, `tailup verify`), which GLACIER and DEEP_ARCHIVE refuse until a
        restore; and it is billed there as 40 KiB anyway."""
        if self.storage_class not in ARCHIVE_CLASSES:
            return self
        return ObjectOptions("", self.sse, self.sse_kms_key_id, self.tags)

    def request_params(self) -> dict[str, str]:
        """CreateMultipartUpload's and PutObject's parameters."""
        params: dict[str, str] = {}
        if self.storage_class:
            params["StorageClass"] = self.storage_class
        if self.sse:
            params["ServerSideEncryption"] = self.sse
        if self.sse_kms_key_id:
            params["SSEKMSKeyId"] = self.sse_kms_key_id
        if self.tags:
            params["Tagging"] = urlencode(self.tags, quote_via=quote)
        return params

    def summary(self) -> dict[str, Any] | None:
        """metadata.json's ``storage`` section (None: every default of the bucket)."""
        if self == ObjectOptions():
            return None
        return {
            "class": self.storage_class or None,
            "sse": self.sse or None,
            "sse_kms_key_id": self.sse_kms_key_id or None,
            "tags": dict(self.tags),
        }

    def flags(self) -> str:
        """The flags that asked for these options, for a refusal to name them."""
        given = [
            f"--storage-class {self.storage_class}" if self.storage_class else "",
            f"--sse {self.sse}" if self.sse else "",
            f"--sse-kms-key-id {self.sse_kms_key_id}" if self.sse_kms_key_id else "",
            " ".join(f"--tag {k}={v}" for k, v in self.tags),
        ]
        return " ".join(flag for flag in given if flag)
