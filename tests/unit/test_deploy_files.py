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


# -- the Grafana dashboard -------------------------------------------------------------------------

DASHBOARD = DEPLOY / "grafana-dashboard.json"
_PROMQL_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
    "offset", "atan2", "inf", "nan",
}  # fmt: skip


def promql_metric_names(expr: str) -> set[str]:
    """The metric names an expression selects: identifiers that are not functions, aggregation
    labels, label matchers, keywords, durations, numbers or Grafana variables."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)  # string literals
    text = re.sub(r"\$\{?\w+\}?", "", text)  # Grafana variables: $__rate_interval, ${instance}
    text = re.sub(r"\{[^{}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\[\]]*\]", "", text)  # range and subquery selectors
    # The label lists of by/without/on/ignoring/group_left/group_right.
    text = re.sub(
        r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", "", text, flags=re.I
    )
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        name, rest = match.group(0), text[match.end() :].lstrip()
        if rest.startswith("(") or name.lower() in _PROMQL_KEYWORDS:
            continue  # a function or aggregation, or a keyword
        if match.start() > 0 and (
            text[match.start() - 1].isdigit() or text[match.start() - 1] == "."
        ):
            continue  # the exponent or unit of a number (1e3, 5m)
        names.add(name)
    return names


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("rate(tailup_bytes_uploaded_total[5m])", {"tailup_bytes_uploaded_total"}),
        (
            'sum by (kind, instance) (rate(tailup_upload_errors_total{kind="x", a=~"b|c"}[1m]))',
            {"tailup_upload_errors_total"},
        ),
        (
            "histogram_quantile(0.95, sum by (le) "
            "(rate(tailup_finalize_seconds_bucket[$__rate_interval])))",
            {"tailup_finalize_seconds_bucket"},
        ),
        ("a / on (instance) group_left (version) b > 1e3", {"a", "b"}),
        ('time() - x{instance=~"$instance"} offset 5m', {"x"}),
        ("topk(10, tailup_nope_bytes)", {"tailup_nope_bytes"}),
        ('sum(rate(y[5m:1m])) > bool 0 and z{s="by (q)"}', {"y", "z"}),
    ],
)
def test_promql_metric_names(expr: str, names: set[str]) -> None:
    assert promql_metric_names(expr) == names


def _exported_series_names() -> set[str]:
    """Every series name tailup's registry exports, from its metric families: counters with
    _total (and _created), histograms with _bucket/_sum/_count (and _created), info with _info,
    gauges as named. The scrape-time families come from a DaemonCollector as the daemon runs it."""
    from tailup.server import declare_known_labels

    declare_known_labels()
    collector = DaemonCollector(_Owner(), _Health())  # type: ignore[arg-type]
    REGISTRY.register(collector)
    try:
        families = list(REGISTRY.collect())
    finally:
        REGISTRY.unregister(collector)
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("", "_sum", "_count", "_created"),
        "info": ("_info",),
        "gauge": ("",),
    }
    names = {f.name + suffix for f in families for suffix in suffixes.get(f.type, ("",))}
    # What the suffix rules give is what the registry really exposes (a check of the rules).
    assert _exported_names() <= names
    return names


def _dashboard() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return document


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))  # a collapsed row holds its panels
    return out


def _dashboard_expressions() -> dict[str, str]:
    """Where -> PromQL, for every target of every panel and every query variable."""
    dashboard = _dashboard()
    exprs = {
        f"{panel['title']} [{target['refId']}]": target["expr"]
        for panel in _panels(dashboard)
        for target in panel.get("targets", [])
    }
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            query = query["query"] if isinstance(query, dict) else query
            inner = re.fullmatch(r"label_values\((.+),\s*\w+\)", query)
            exprs[f"variable {variable['name']}"] = inner.group(1) if inner else query
    return exprs


def test_dashboard_expressions_name_only_metrics_tailup_exports() -> None:
    exported = _exported_series_names()
    exprs = _dashboard_expressions()
    assert len(exprs) >= 10
    for where, expr in exprs.items():
        used = promql_metric_names(expr)
        assert used, f"{where}: no metric in {expr!r}"
        assert used <= exported, f"{where} uses {sorted(used - exported)}, not exported by tailup"


def test_dashboard_is_a_grafana_dashboard_over_a_datasource_variable() -> None:
    dashboard = _dashboard()
    assert dashboard["title"] and dashboard["uid"] and dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    reference = {"type": "prometheus", "uid": "${datasource}"}
    ids = [panel["id"] for panel in _panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    cells: set[tuple[int, int]] = set()
    for panel in _panels(dashboard):
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        taken = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"])
                 for y in range(grid["y"], grid["y"] + grid["h"])}  # fmt: skip
        assert not taken & cells, f"{panel['title']} overlaps another panel"
        cells |= taken
        if panel["type"] == "row":
            continue
        assert panel["type"] in {"timeseries", "stat", "table", "gauge", "bargauge"}
        assert panel["title"] and panel["datasource"] == reference, panel["title"]
        targets = panel["targets"]
        assert targets, f"{panel['title']} has no target"
        refs = [t["refId"] for t in targets]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in targets:
            assert target["expr"].strip() and target["datasource"] == reference
    assert variables["instance"]["datasource"] == reference


def test_dashboard_shows_what_an_operator_watches() -> None:
    exprs = list(_dashboard_expressions().values())

    def some(pattern: str) -> bool:
        return any(re.search(pattern, e) for e in exprs)

    assert some(r"rate\(tailup_bytes_uploaded_total\b")  # throughput
    assert some(r"\btailup_stream_lag_bytes\b")  # lag
    assert some(r"sum by \(state\) \(tailup_streams\b")  # streams by state
    assert some(r"sum by \(kind\) \(rate\(tailup_upload_errors_total\b")  # errors by kind
    assert some(r"histogram_quantile\(0\.95, sum by \(le\) \(rate\(tailup_finalize_seconds_bucket")
    assert some(r"rate\(tailup_retries_total\b")  # retries


@pytest.mark.skipif(_promtool() is None, reason="promtool absent (make test-tools unpacks it)")
def test_dashboard_expressions_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses each expression (Grafana's variables given values), as recording rules."""
    promtool = _promtool()
    assert promtool is not None
    values = {"$__rate_interval": "5m", "$__interval": "1m", "$instance": ".*"}
    rules = []
    for i, expr in enumerate(_dashboard_expressions().values()):
        for name, value in values.items():
            expr = expr.replace(name, value)
        rules.append({"record": f"dashboard:expr_{i}", "expr": expr})
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
