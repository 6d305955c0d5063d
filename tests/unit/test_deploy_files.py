"""deploy/: the files an operator copies must agree with the code they describe."""

from __future__ import annotations

import configparser
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest

from daemonproc import dockerfile_healthcheck_argv
from tailup.config import Settings
from tailup.metrics import REGISTRY, DaemonCollector

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


class _Stream:
    stream_id = "s1"
    bytes_in_s3 = 5
    last_seen_size = 8


class _Owner:
    def stream_states(self) -> dict[str, int]:
        return {"uploading": 1, "stalled": 0}

    @property
    def streams(self) -> Mapping[Any, _Stream]:
        return {"p": _Stream()}


class _Health:
    def dependency_status(self) -> dict[str, tuple[bool, float | None]]:
        return {"redis": (True, 1.0), "s3": (False, None)}


def _exported_names() -> set[str]:
    from tailup.server import declare_known_labels

    declare_known_labels()  # as the daemon does when it starts serving
    collector = DaemonCollector(_Owner(), _Health())  # type: ignore[arg-type]
    REGISTRY.register(collector)
    try:
        text = generate_latest(REGISTRY).decode()
    finally:
        REGISTRY.unregister(collector)
    return {m.group(1) for m in re.finditer(r"^(tailup_[a-z_]+)", text, re.MULTILINE)}


def _rules() -> list[dict[str, Any]]:
    document = yaml.safe_load((DEPLOY / "prometheus-alerts.yml").read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_alert_rules_use_only_metrics_tailup_exports() -> None:
    exported = _exported_names()
    for rule in _rules():
        used = set(re.findall(r"\btailup_[a-z_]+", rule["expr"]))
        assert used <= exported, f"{rule['alert']} uses {used - exported}"


def test_alert_rules_cover_the_four_situations() -> None:
    names = {rule["alert"] for rule in _rules()}
    assert {"TailupDown", "TailupStreamFailed", "TailupStreamStalled", "TailupLagGrowing"} <= names
    for rule in _rules():
        assert rule["labels"]["severity"] and rule["annotations"]["summary"]


def _promtool() -> str | None:
    """On PATH, or beside this interpreter (`make test-tools` unpacks it into the venv's bin)."""
    beside = Path(sys.executable).parent / "promtool"
    return shutil.which("promtool") or (str(beside) if beside.is_file() else None)


@pytest.mark.skipif(_promtool() is None, reason="promtool absent (make test-tools unpacks it)")
def test_alert_rules_pass_promtool_check_and_unit_tests() -> None:
    promtool = _promtool()
    assert promtool is not None
    for args in (
        ["check", "rules", "prometheus-alerts.yml"],
        ["test", "rules", "prometheus-alerts.test.yml"],
    ):
        result = subprocess.run(
            [promtool, *args], cwd=DEPLOY, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stdout + result.stderr


def _dockerfile() -> list[str]:
    text = (DEPLOY / "Dockerfile").read_text()
    # Join continuation lines so each instruction is one line.
    return [line for line in text.replace("\\\n", " ").splitlines() if line and line[0] != "#"]


def test_dockerfile_runs_tailup_as_a_non_root_user_with_a_healthcheck() -> None:
    lines = _dockerfile()
    assert lines[0] == "FROM python:3.11-slim"
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert json.loads(next(line for line in lines if line.startswith("ENTRYPOINT"))[11:]) == [
        "tailup",
        "run",
    ]
    assert any(line.startswith("RUN pip install /tmp/tailup") for line in lines)
    argv = dockerfile_healthcheck_argv()
    assert argv[:2] == ["python", "-c"] and "/healthz" in argv[2]
    # Every TAILUP_ variable the image sets is a real setting.
    set_vars = re.findall(r"\bTAILUP_([A-Z_]+)=", " ".join(lines))
    assert set_vars and {v.lower() for v in set_vars} <= set(Settings.model_fields)


def test_systemd_unit_starts_tailup_with_the_config_and_stops_gracefully() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read_string((DEPLOY / "tailup.service").read_text())
    service = unit["Service"]
    assert service["ExecStart"].split()[1:] == ["run", "--config", "/etc/tailup/tailup.toml"]
    assert service["User"] != "root"
    assert service["KillSignal"] == "SIGTERM"
    # systemd must wait longer than tailup lets in-flight parts finish.
    grace = Settings.model_fields["shutdown_grace"].default
    assert int(service["TimeoutStopSec"]) > grace
    assert service["RestartPreventExitStatus"] == "2"  # config errors: restarting cannot help
