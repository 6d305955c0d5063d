"""The in-process harness runs what the test says, whatever the developer's environment holds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness import content, object_bytes, running_daemon
from tailup.config import Settings
from tailup.model import StreamState
from tailup.plan import MiB

pytestmark = pytest.mark.asyncio

# What a developer may have set for their own `tailup run`: each would change the test's daemon.
FOREIGN_ENV = {
    "TAILUP_PART_SIZE": "64MiB",
    "TAILUP_INCLUDE": "*.nothing",
    "TAILUP_AFTER_UPLOAD": "delete",
    "TAILUP_IDLE_TIMEOUT": "1",
}
FOREIGN_DOTENV = (
    "TAILUP_CLOSE_GRACE=77\nTAILUP_MAX_INFLIGHT_BYTES=6MiB\nTAILUP_REDIS_PREFIX=dotenv\n"
)


async def test_tailup_variables_and_a_dotenv_file_do_not_reach_the_harness(
    daemon_args: dict[str, Any],
    watch: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    s3_client: Any,
    bucket: str,
) -> None:
    cwd = tmp_path / "checkout"
    cwd.mkdir()
    (cwd / ".env").write_text(FOREIGN_DOTENV)
    monkeypatch.chdir(cwd)
    for name, value in FOREIGN_ENV.items():
        monkeypatch.setenv(name, value)
    # The environment really does hold all of it, for anything that reads it.
    leaked = Settings(watch=[watch], bucket=bucket)
    assert (leaked.part_size, leaked.include, leaked.close_grace) == (64 * MiB, ["*.nothing"], 77)
    assert leaked.redis_prefix == "dotenv"

    path = watch / "isolated.ts"
    data = content(6 * MiB, "isolated")
    async with running_daemon(**daemon_args) as daemon:
        settings = daemon.settings
        # The harness's own values, and the defaults for what it does not set.
        assert (settings.part_size, settings.close_grace, settings.idle_timeout) == (
            5 * MiB,
            0.5,
            30,
        )
        assert settings.redis_prefix == daemon_args["key_prefix"]
        assert "*.ts" in settings.include and settings.after_upload == "keep"
        assert settings.max_inflight_bytes != 6 * MiB
        path.write_bytes(data)
        record = await daemon.wait_for_state(path, {StreamState.COMPLETED})
    assert path.read_bytes() == data, "kept, as the default says (not deleted)"
    assert object_bytes(s3_client, bucket, record.key) == data
