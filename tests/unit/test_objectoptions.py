"""--storage-class, --sse, --sse-kms-key-id and --tag (issue 20.2): each setting checked against
S3's rules with an error naming the flag and what is accepted, from flags, the environment and
the config file; the request parameters and metadata.json's storage section they make; and the
refusals of a server, which name the flags and do not retry."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import botocore.session
import pytest

from tailup.cli import build_parser
from tailup.cli.parser import setting_overrides
from tailup.config import check_daemon_settings, load_settings
from tailup.errors import (
    AccessRefused,
    KeyTaken,
    PartReplaceRefused,
    StorageOptionRefused,
    StoragePermanentError,
    StorageUnavailable,
    TailupError,
)
from tailup.errors import (
    ConfigError as ConfigErrorType,
)
from tailup.objectoptions import (
    NOT_WRITABLE_CLASSES,
    STORAGE_CLASSES,
    ObjectOptions,
    check_tags,
)
from tailup.s3.errors import name_the_option_refusal


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.upper().startswith("TAILUP_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_the_classes_are_botocores_writable_ones() -> None:
    model = botocore.session.get_session().get_service_model("s3")
    enum = model.shape_for("StorageClass").enum
    assert set(STORAGE_CLASSES) == set(enum) - NOT_WRITABLE_CLASSES
    # The locked botocore names every class refused as not writable (no typo among them); the
    # lowest one pyproject.toml accepts (make test-lowest) predates all four.
    assert set(enum) >= NOT_WRITABLE_CLASSES or not set(enum) & NOT_WRITABLE_CLASSES


@pytest.mark.parametrize("name", STORAGE_CLASSES)
def test_every_known_class_is_taken(name: str) -> None:
    assert load_settings({"storage_class": name}).storage_class == name


def _refusal(overrides: dict[str, Any]) -> str:
    with pytest.raises(ConfigErrorType) as caught:
        load_settings(overrides)
    return str(caught.value)


@pytest.mark.parametrize(
    ("overrides", "flag", "said"),
    [
        ({"storage_class": "standard_ia"}, "--storage-class", "did you mean STANDARD_IA?"),
        ({"storage_class": "ARCHIVE"}, "--storage-class", "'ARCHIVE' is not an S3 storage"),
        ({"storage_class": "FSX_ONTAP"}, "--storage-class", "is not an S3 storage class"),
        ({"sse": "kms"}, "--sse", "'kms' is not a server-side encryption"),
        ({"sse": "SSE-C"}, "--sse", "is not a server-side encryption"),
        ({"tag": ["camera"]}, "--tag", "has no '='"),
        ({"tag": ["=x"]}, "--tag", "has an empty KEY"),
        ({"tag": ["k" * 129 + "=v"]}, "--tag", "129 characters, over 128"),
        ({"tag": ["k=" + "v" * 257]}, "--tag", "257 characters, over 256"),
        ({"tag": ["aws:owner=me"]}, "--tag", "starts with aws:"),
        ({"tag": ["cam#1=a"]}, "--tag", "has '#'"),
        ({"tag": ["cam=a;b"]}, "--tag", "has ';'"),
        ({"tag": ["cam=a\tb"]}, "--tag", "has '\\t'"),
        ({"tag": ["a=1", "a=2"]}, "--tag", "the tag KEY 'a' is given twice"),
        ({"tag": [f"k{i}=v" for i in range(11)]}, "--tag", "11 tags given; S3 keeps at most 10"),
    ],
)
def test_bad_values_are_refused_naming_the_flag_and_what_is_accepted(
    overrides: dict[str, Any], flag: str, said: str
) -> None:
    text = _refusal(overrides)
    assert f"{flag} (TAILUP_" in text and said in text, text
    assert "Accepted: " in text


@pytest.mark.parametrize(
    "tags",
    [
        [],
        ["k=v"],
        ["k="],  # an empty value is a tag
        ["Site Name=Lobby 1", "path=/a/b", "who=ops@example.com", "x=a+b-c.d_e:f"],
        ["caméra=salle été"],  # letters of any language
        ["k" * 128 + "=" + "v" * 256],
        [f"k{i}=v" for i in range(10)],
    ],
)
def test_good_tags_are_taken(tags: list[str]) -> None:
    assert check_tags(tags) == tags
    assert load_settings({"tag": tags}).tag == tags


def test_a_kms_key_without_aws_kms_is_refused(tmp_path: Path) -> None:
    for sse in ("", "AES256"):
        settings = load_settings(
            {"watch": [str(tmp_path)], "bucket": "b", "sse": sse, "sse_kms_key_id": "k"}
        )
        with pytest.raises(ConfigErrorType) as caught:
            check_daemon_settings(settings)
        text = str(caught.value)
        assert "--sse-kms-key-id (TAILUP_SSE_KMS_KEY_ID)" in text and "aws:kms" in text, text
    for sse in ("aws:kms", "aws:kms:dsse"):
        check_daemon_settings(
            load_settings(
                {"watch": [str(tmp_path)], "bucket": "b", "sse": sse, "sse_kms_key_id": "k"}
            )
        )


def test_flags_env_and_config_file_reach_the_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = build_parser().parse_args(
        ["run", "--storage-class", "GLACIER_IR", "--sse", "aws:kms", "--sse-kms-key-id",
         "alias/rec", "--tag", "site=a", "--tag", "cam=1"]
    )  # fmt: skip
    flagged = load_settings(setting_overrides(args)).object_options
    assert flagged == ObjectOptions(
        "GLACIER_IR", "aws:kms", "alias/rec", (("site", "a"), ("cam", "1"))
    )
    monkeypatch.setenv("TAILUP_TAG", "site=b,cam=2")
    monkeypatch.setenv("TAILUP_STORAGE_CLASS", "STANDARD_IA")
    assert load_settings({}).object_options == ObjectOptions(
        "STANDARD_IA", tags=(("site", "b"), ("cam", "2"))
    )
    config = tmp_path / "tailup.toml"
    config.write_text('sse = "AES256"\ntag = ["site=c"]\n', encoding="utf-8")
    monkeypatch.delenv("TAILUP_TAG")
    from_file = load_settings({}, config).object_options
    assert from_file == ObjectOptions("STANDARD_IA", "AES256", tags=(("site", "c"),))
    config.write_text('storage_class = "cold"\n', encoding="utf-8")
    monkeypatch.delenv("TAILUP_STORAGE_CLASS")
    with pytest.raises(ConfigErrorType, match=rf"storage_class in {config}.*'cold'"):
        load_settings({}, config)


def test_the_default_is_the_buckets_own() -> None:
    options = load_settings({}).object_options
    assert options == ObjectOptions() and options.request_params() == {}
    assert options.summary() is None


def test_request_parameters_summary_and_side_objects() -> None:
    options = ObjectOptions(
        "DEEP_ARCHIVE", "aws:kms", "alias/k", (("site", "lobby a"), ("who", "a+b@x"))
    )
    assert options.request_params() == {
        "StorageClass": "DEEP_ARCHIVE",
        "ServerSideEncryption": "aws:kms",
        "SSEKMSKeyId": "alias/k",
        "Tagging": "site=lobby%20a&who=a%2Bb%40x",  # x-amz-tagging: a URL query
    }
    summary = options.summary()
    assert summary == {
        "class": "DEEP_ARCHIVE",
        "sse": "aws:kms",
        "sse_kms_key_id": "alias/k",
        "tags": {"site": "lobby a", "who": "a+b@x"},
    }
    assert ObjectOptions.from_summary(summary) == options
    assert ObjectOptions.from_summary(None) == ObjectOptions()
    # The card and --rpo's segments: encrypted, never in another class nor tagged.
    assert options.side_object == ObjectOptions(sse="aws:kms", sse_kms_key_id="alias/k")
    # metadata.json is read back by tailup: never in a class that needs a restore first.
    assert options.metadata_object == ObjectOptions("", "aws:kms", "alias/k", options.tags)
    ia = ObjectOptions("STANDARD_IA", tags=(("a", "b"),))
    assert ia.metadata_object == ia


OPTIONS = ObjectOptions("STANDARD_IA", "aws:kms", "", (("site", "a"),))


def _error(kind: type[TailupError], code: str) -> TailupError:
    text = f"S3 create multipart upload: {code}: refused"
    return kind(text) if kind is StorageUnavailable else kind(text, code=code)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("error", "code", "kind"),
    [
        (_error(StoragePermanentError, c), c, StorageOptionRefused)
        for c in ("InvalidStorageClass", "NotImplemented", "InvalidTag", "KMS.NotFoundException")
    ]
    + [
        # SeaweedFS without a KMS: a 500, retried for ever unless --sse aws:kms is named.
        (_error(StorageUnavailable, "InternalError"), "InternalError", StorageOptionRefused),
        (_error(StorageUnavailable, "SlowDown"), "SlowDown", StorageUnavailable),
        (_error(StoragePermanentError, "NoSuchBucket"), "NoSuchBucket", StoragePermanentError),
        (_error(KeyTaken, "PreconditionFailed"), "PreconditionFailed", KeyTaken),
        (_error(PartReplaceRefused, "NotImplemented"), "NotImplemented", PartReplaceRefused),
    ],
)
def test_a_refusal_of_the_options_names_the_flags_and_is_permanent(
    error: TailupError, code: str, kind: type[TailupError]
) -> None:
    named = name_the_option_refusal(error, OPTIONS, code)
    assert type(named) is kind
    if kind is StorageOptionRefused:
        assert "--storage-class STANDARD_IA --sse aws:kms --tag site=a" in str(named)
        assert str(error) in str(named)
    else:
        assert named is error
    # Without options nothing is renamed: the same error means what it always meant.
    assert name_the_option_refusal(error, None, code) is error
    assert name_the_option_refusal(error, ObjectOptions(), code) is error
    aes = ObjectOptions(sse="AES256")
    if code == "InternalError":
        assert name_the_option_refusal(error, aes, code) is error  # only KMS is suspected


def test_access_denied_with_options_names_the_extra_permissions() -> None:
    denied = AccessRefused(
        "S3 put object: AccessDenied: x", code="AccessDenied", action="s3:PutObject"
    )
    named = name_the_option_refusal(denied, OPTIONS, "AccessDenied")
    assert isinstance(named, AccessRefused) and named.action == "s3:PutObject"
    assert "s3:PutObjectTagging" in str(named) and "kms:GenerateDataKey" in str(named)
