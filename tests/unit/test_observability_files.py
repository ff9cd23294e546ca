"""The observability files agree with the code: dashboards, alert rules, provisioning, metrics.

Pure checks (no Prometheus, no Grafana): every metric a dashboard or a rule names is declared in
`bordermon.metrics` (SPEC: declared once), with the labels it is queried by; dashboards are valid
Grafana JSON with fixed uids, unique panel ids, a non-overlapping grid and the fixed datasource
uid on every query; provisioning points at the dashboards and the datasource; every alert has an
actionable summary and description and promtool tests that see it fire and stay silent; the
metrics follow Prometheus naming conventions. The same files run for real in
tests/integration/test_observability.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from bordermon import metrics
from bordermon_devstack import stack

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
RULES_FILE = PROMETHEUS_DIR / "rules" / "bordermon.rules.yml"
RULE_TESTS = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))
GRAFANA_DIR = REPO / "deploy" / "grafana"
DASHBOARDS_DIR = GRAFANA_DIR / "dashboards"
DATASOURCE_FILE = GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml"
PROVIDER_FILE = GRAFANA_DIR / "provisioning" / "dashboards" / "bordermon.yml"

DATASOURCE_UID = "bordermon-prometheus"
DASHBOARD_UIDS = {
    "border-flow.json": "bordermon-border-flow",
    "pipeline-health.json": "bordermon-pipeline-health",
}
DASHBOARDS_MOUNT = "/var/lib/grafana/dashboards"
"""Where docker-compose.yml mounts deploy/grafana/dashboards in the Grafana container."""
JOB = stack.PROMETHEUS_JOB

GRAFANA_BUILTINS = {"__rate_interval", "__interval", "__interval_ms", "__range", "__range_s"}
TARGET_LABELS = {"job", "instance"}
"""Labels Prometheus adds to every scraped series."""
ANY_LABEL = "*"
"""An Info metric's labels are the keys of the dict the code gives it at run time."""
SERIES_SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
    "info": ("_info",),
}
"""The series each type exposes; `_created` is off (metrics.py: disable_created_metrics)."""
SET_BY_THE_WORKER = {"bordermon_consumer_lag_messages", "bordermon_config"}
"""Metrics whose series appear when the worker starts (per partition, from its configuration),
not at import; every other series a query reads exists from import on."""
NON_BASE_UNITS = {
    "milliseconds",
    "microseconds",
    "nanoseconds",
    "minutes",
    "hours",
    "days",
    "weeks",
    "ms",
    "us",
    "ns",
    "kilobytes",
    "megabytes",
    "gigabytes",
    "kb",
    "mb",
    "gb",
    "bits",
    "percent",
}
ID_LABELS = {"consignment_id", "event_id", "flag_id", "scanner_id", "vehicle_id", "container_id"}


# --- what metrics.py declares ----------------------------------------------------------------


def declared_collectors() -> dict[str, MetricWrapperBase]:
    """Declared metric name (without type suffixes) -> its collector."""
    found: dict[str, MetricWrapperBase] = {}
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            [family] = value.describe()
            found[family.name] = value
    return found


def metric_type(collector: MetricWrapperBase) -> str:
    return str(collector._type)


def label_names(collector: MetricWrapperBase) -> set[str]:
    return set(collector._labelnames)


def declared_series() -> dict[str, tuple[str, set[str]]]:
    """Every series name the workers can expose -> (declared metric, its labels)."""
    series: dict[str, tuple[str, set[str]]] = {}
    for name, collector in declared_collectors().items():
        labels = label_names(collector) | TARGET_LABELS
        if metric_type(collector) == "histogram":
            labels |= {"le"}
        if metric_type(collector) == "info":
            labels |= {ANY_LABEL}
        for suffix in SERIES_SUFFIXES[metric_type(collector)]:
            series[name + suffix] = (name, labels)
    return series


# --- PromQL, roughly ---------------------------------------------------------------------------

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_MATCHER = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_BRACES = re.compile(r"\{([^}]*)\}")
_LABEL_VALUES = re.compile(r"label_values\(\s*(.*),\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*$")
_GRAFANA_VARIABLE = re.compile(r"\$\{?(\w+)(?::\w+)?\}?|\[\[(\w+)\]\]")


def without_strings(expr: str) -> str:
    return _STRING.sub('""', expr)


def metric_names(expr: str) -> set[str]:
    """bordermon metric and recording-rule names in a PromQL expression (strings ignored)."""
    names = set()
    for token in _IDENTIFIER.findall(without_strings(expr)):
        if ":" in token or token.startswith("bordermon_"):
            names.add(token)
    return names


def label_names_used(expr: str) -> set[str]:
    """Labels in matchers and in by/without/on/ignoring/group_left/group_right clauses."""
    text = without_strings(expr)
    used = set()
    for inside in _BRACES.findall(text):
        used.update(_MATCHER.findall(inside))
    for inside in _GROUPING.findall(text):
        used.update(label.strip() for label in inside.split(",") if label.strip())
    label_values = _LABEL_VALUES.match(expr.strip())
    if label_values:
        used.add(label_values[2])
    return used


def grafana_variables(expr: str) -> set[str]:
    return {a or b for a, b in _GRAFANA_VARIABLE.findall(expr)}


# --- the files ---------------------------------------------------------------------------------


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def rules() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(RULES_FILE)["groups"] for rule in group["rules"]]


def alerts() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "alert" in rule]


def recording_rules() -> dict[str, dict[str, Any]]:
    return {rule["record"]: rule for rule in rules() if "record" in rule}


def dashboards() -> dict[str, dict[str, Any]]:
    return {
        path.name: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(DASHBOARDS_DIR.glob("*.json"))
    }


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # inside collapsed rows


def query_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [panel for panel in panels(dashboard) if panel["type"] != "row"]


def dashboard_exprs(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) for every query of a dashboard: panels, variables, annotations."""
    found = []
    for panel in query_panels(dashboard):
        for target in panel.get("targets", []):
            found.append((f"panel {panel['title']!r} {target['refId']}", target["expr"]))
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            text = query["query"] if isinstance(query, dict) else query
            found.append((f"variable ${variable['name']}", text))
    for annotation in dashboard["annotations"]["list"]:
        if "expr" in annotation:
            found.append((f"annotation {annotation['name']!r}", annotation["expr"]))
    return found


def all_exprs() -> list[tuple[str, str]]:
    found = [(f"rule {r.get('alert') or r.get('record')}", r["expr"]) for r in rules()]
    for name, dashboard in dashboards().items():
        found += [(f"{name} {where}", expr) for where, expr in dashboard_exprs(dashboard)]
    return found


def labels_of_name(name: str, series: dict[str, tuple[str, set[str]]]) -> set[str] | None:
    """The labels a series or recording rule can carry; None when the name is unknown."""
    if name in series:
        return series[name][1]
    record = recording_rules().get(name)
    if record is None:
        return None
    labels: set[str] = set()
    for inner in metric_names(record["expr"]):
        labels |= labels_of_name(inner, series) or set()
    return labels


# --- metric names and labels -------------------------------------------------------------------


def test_the_extraction_sees_metrics_and_labels() -> None:
    expr = (
        'sum by (le, operation) (rate(bordermon_redis_round_trip_seconds_bucket{instance=~"$x",'
        ' job="bordermon_not_a_metric"}[5m])) / on (job) job:bordermon_flags:rate5m'
    )
    assert metric_names(expr) == {
        "bordermon_redis_round_trip_seconds_bucket",
        "job:bordermon_flags:rate5m",
    }
    assert label_names_used(expr) == {"le", "operation", "instance", "job"}
    assert grafana_variables('x{a=~"$checkpoint"}[$__rate_interval] ${b} [[c]]') == {
        "checkpoint",
        "__rate_interval",
        "b",
        "c",
    }
    assert label_names_used("label_values(bordermon_events_consumed_total, checkpoint)") == {
        "checkpoint"
    }


def test_declared_series_map_back_to_declared_metrics() -> None:
    series = declared_series()
    assert series["bordermon_flags_total"][0] == "bordermon_flags"
    assert series["bordermon_scan_to_flag_seconds_bucket"][0] == "bordermon_scan_to_flag_seconds"
    assert series["bordermon_build_info"][0] == "bordermon_build"
    assert "le" in series["bordermon_batch_duration_seconds_count"][1]
    assert "bordermon_flags" not in series  # a counter is only exposed with its suffixes


@pytest.mark.parametrize(
    "where, expr", [pytest.param(where, expr, id=where) for where, expr in all_exprs()]
)
def test_every_metric_queried_is_declared_with_the_labels_queried(where: str, expr: str) -> None:
    series = declared_series()
    names = metric_names(expr)
    unknown = sorted(name for name in names if labels_of_name(name, series) is None)
    assert not unknown, (
        f"{where} names {unknown}, which bordermon.metrics does not declare (nor a recording"
        " rule): declare it there first, or fix the name"
    )
    available = {"alertname", "alertstate", "severity", "team"} if "ALERTS" in expr else set()
    for name in names:
        available |= labels_of_name(name, series) or set()
    if not names and "up{" in expr.replace(" ", ""):
        available |= TARGET_LABELS
    missing = sorted(label_names_used(expr) - available)
    assert ANY_LABEL in available or not missing, (
        f"{where} uses label(s) {missing} that {sorted(names)} do not have"
    )


def test_every_declared_metric_is_on_a_dashboard() -> None:
    """A metric nobody can see is dead weight; this also catches a dashboard that lost one."""
    queried = {
        declared_series()[name][0]
        for _, expr in all_exprs()
        for name in metric_names(expr)
        if name in declared_series()
    }
    for record in recording_rules().values():
        queried |= {declared_series()[n][0] for n in metric_names(record["expr"])}
    assert set(declared_collectors()) - queried == set()


# --- naming conventions --------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(declared_collectors()))
def test_metric_follows_naming_conventions(name: str) -> None:
    collector = declared_collectors()[name]
    kind = metric_type(collector)
    exposed = [name + suffix for suffix in SERIES_SUFFIXES[kind]]
    assert name.startswith("bordermon_") and re.fullmatch(r"[a-z][a-z0-9_]*", name)
    if kind == "counter":
        assert exposed[0].endswith("_total")
    else:
        assert not name.endswith("_total"), f"only counters end in _total, {name} is a {kind}"
    labels = label_names(collector)
    id_like = {label for label in labels if label in ID_LABELS or re.search(r"(^|_)ids?$", label)}
    assert not id_like, f"{name} has id-like labels {id_like}: unbounded cardinality"
    units = set(name.split("_")) & NON_BASE_UNITS
    assert not units, f"{name} uses {units}: use base units (seconds, bytes, ratios)"


def test_durations_are_in_seconds() -> None:
    for name, collector in declared_collectors().items():
        if metric_type(collector) == "histogram" and re.search(r"duration|latency|trip", name):
            assert name.endswith("_seconds"), name


# --- label values and series from start-up -----------------------------------------------------

_SELECTOR = re.compile(r"\b(bordermon_[a-z0-9_]+)\s*\{([^}]*)\}")
_EQUALS = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"([^"]*)"')


def selected_label_values(expr: str) -> list[tuple[str, dict[str, str]]]:
    """(series, {label: value}) for every `series{label="literal"}` selector of `expr`."""
    found = []
    for name, inside in _SELECTOR.findall(expr):
        values = {
            label: value
            for label, value in _EQUALS.findall(inside)
            if label not in TARGET_LABELS and "$" not in value
        }
        found.append((name, values))
    return found


@pytest.fixture(scope="module")
def fresh_exposition() -> dict[str, list[dict[str, str]]]:
    """What a worker's /metrics shows right after import, before any event: series name ->
    the label sets it has (a new interpreter, so no other test's increments are in it)."""
    import subprocess
    import sys

    from prometheus_client.parser import text_string_to_metric_families

    code = "import sys; from bordermon import metrics as m; sys.stdout.buffer.write(m.exposition())"
    text = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    series: dict[str, list[dict[str, str]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            series.setdefault(sample.name, []).append(dict(sample.labels))
    return series


def test_flags_are_counted_by_rule_and_severity() -> None:
    assert label_names(metrics.FLAGS) == {"rule", "severity"}
    assert set(metrics.RULES) == {"transit-to-ru", "relabel-to-ru", "export-without-permit"}
    assert "rule" in label_names(metrics.SCAN_TO_FLAG)
    assert "rule" in label_names(metrics.FLAG_DWELL)


def test_every_literal_label_value_queried_is_one_the_code_writes() -> None:
    """A typo in `rule="export-without-permit"` would make an alert silently never fire."""
    known = {"rule": set(metrics.RULES), "severity": set(metrics.SEVERITIES)}
    for where, expr in all_exprs():
        for _, values in selected_label_values(expr):
            for label, value in values.items():
                if label in known:
                    assert value in known[label], f"{where}: {label}={value!r}"


def test_no_created_series(fresh_exposition: dict[str, list[dict[str, str]]]) -> None:
    assert not [name for name in fresh_exposition if name.endswith("_created")]


def test_quarantined_states_are_counted_per_store_from_start_up(
    fresh_exposition: dict[str, list[dict[str, str]]],
) -> None:
    """The alert's increase() must see the first quarantined state of each store."""
    series = fresh_exposition["bordermon_states_quarantined_total"]
    assert sorted(labels["store"] for labels in series) == ["consignments", "links"]


@pytest.mark.parametrize(
    "where, expr", [pytest.param(where, expr, id=where) for where, expr in all_exprs()]
)
def test_every_series_queried_exists_from_start_up(
    where: str, expr: str, fresh_exposition: dict[str, list[dict[str, str]]]
) -> None:
    """Panels show 0 rather than "No data" before the first event, and rate()/increase() see
    the first increment (a series born at 1 loses it)."""
    series = declared_series()
    for name in metric_names(expr):
        if name not in series or series[name][0] in SET_BY_THE_WORKER:
            continue
        assert name in fresh_exposition, f"{where}: {name} has no series until it is first used"
    for name, values in selected_label_values(expr):
        if name not in series or series[name][0] in SET_BY_THE_WORKER:
            continue
        have = fresh_exposition.get(name, [])
        assert any(values.items() <= labels.items() for labels in have), (
            f"{where}: no series {name}{values} from start-up"
        )


# --- alert and recording rules -------------------------------------------------------------------


def test_rules_file_has_the_alerts_operators_need() -> None:
    names = {rule["alert"] for rule in alerts()}
    assert {
        "BordermonWorkerDown",
        "BordermonConsumerLagGrowing",
        "BordermonDeadLetterRatioHigh",
        "BordermonNoCrossings",
        "BordermonHighSeverityFlagSpike",
        "BordermonExportWithoutPermitBurst",
        "BordermonStatesQuarantined",
    } <= names
    assert len(names) == len(alerts()), "alert names must be unique"


@pytest.mark.parametrize("alert", alerts(), ids=lambda rule: rule["alert"])
def test_alert_is_actionable(alert: dict[str, Any]) -> None:
    assert alert["alert"].startswith("Bordermon")
    assert alert["labels"]["severity"] in {"critical", "warning"}
    assert alert["labels"]["team"] in {"operators", "analysts"}
    assert re.fullmatch(r"\d+[smh]", alert["for"]), "every alert waits before firing"
    annotations = alert["annotations"]
    assert set(annotations) >= {"summary", "description"}
    assert 10 < len(annotations["summary"]) < 120
    # The description says what it means and what to do about it.
    assert len(annotations["description"]) > 200
    assert re.search(
        r"\b(check|start|restart|look|fix|find|add|compare)\b",
        annotations["description"],
        re.IGNORECASE,
    )
    if "up{" in alert["expr"]:
        assert f'job="{JOB}"' in alert["expr"]


def test_recording_rules_follow_the_naming_convention() -> None:
    for name, rule in recording_rules().items():
        assert re.fullmatch(r"[a-z_]+:[a-z0-9_]+:[a-z0-9_]+", name), name
        assert metric_names(rule["expr"]) - {name}, f"{name} must aggregate a bordermon metric"


def test_every_alert_has_promtool_tests_that_fire_and_stay_silent() -> None:
    assert RULE_TESTS, "deploy/prometheus/tests/*.yml: promtool rule tests are missing"
    fired: set[str] = set()
    silent: set[str] = set()
    for path in RULE_TESTS:
        document = load_yaml(path)
        for rule_file in document["rule_files"]:
            assert (path.parent / rule_file).resolve() == RULES_FILE.resolve()
        for test in document["tests"]:
            for case in test.get("alert_rule_test", []):
                (fired if case.get("exp_alerts") else silent).add(case["alertname"])
    names = {rule["alert"] for rule in alerts()}
    assert names - fired == set(), "alerts never seen firing in deploy/prometheus/tests"
    assert names - silent == set(), "alerts never seen staying silent in deploy/prometheus/tests"


# --- Prometheus configs ------------------------------------------------------------------------


def test_compose_prometheus_config_scrapes_the_workers_with_the_rules() -> None:
    config = load_yaml(PROMETHEUS_DIR / "prometheus.yml")
    [job] = [j for j in config["scrape_configs"] if j["job_name"] == JOB]
    [dns] = job["dns_sd_configs"]
    assert dns["names"] == ["worker"] and dns["port"] == 9108
    matched = [p for pattern in config["rule_files"] for p in PROMETHEUS_DIR.glob(pattern)]
    assert RULES_FILE in matched


def test_local_stack_prometheus_config_scrapes_given_targets_with_the_rules() -> None:
    text = stack.prometheus_config(["127.0.0.1:9108", "127.0.0.1:9109"], RULES_FILE, "5s")
    config = yaml.safe_load(text)
    assert config["rule_files"] == [str(RULES_FILE)]
    assert config["global"]["scrape_interval"] == "5s"
    [job] = config["scrape_configs"]
    assert job["job_name"] == JOB
    assert job["static_configs"] == [{"targets": ["127.0.0.1:9108", "127.0.0.1:9109"]}]


def test_local_stack_prometheus_settings_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(stack.PROMETHEUS_TARGETS_ENV, raising=False)
    monkeypatch.delenv(stack.PROMETHEUS_SCRAPE_INTERVAL_ENV, raising=False)
    assert stack.prometheus_targets() == ["127.0.0.1:9108"]
    assert stack.prometheus_scrape_interval() == "5s"
    monkeypatch.setenv(stack.PROMETHEUS_TARGETS_ENV, " 127.0.0.1:9108, worker-2:9109 ")
    monkeypatch.setenv(stack.PROMETHEUS_SCRAPE_INTERVAL_ENV, "1s")
    assert stack.prometheus_targets() == ["127.0.0.1:9108", "worker-2:9109"]
    assert stack.prometheus_scrape_interval() == "1s"
    for bad in ("127.0.0.1", "http://x:9108", "a:b"):
        monkeypatch.setenv(stack.PROMETHEUS_TARGETS_ENV, bad)
        with pytest.raises(stack.StackError, match=stack.PROMETHEUS_TARGETS_ENV):
            stack.prometheus_targets()
    monkeypatch.setenv(stack.PROMETHEUS_SCRAPE_INTERVAL_ENV, "5")
    with pytest.raises(stack.StackError, match="duration"):
        stack.prometheus_scrape_interval()
    assert "prometheus" in [service.name for service in stack.SERVICES]


# --- Grafana -------------------------------------------------------------------------------------


def test_dashboards_are_the_expected_files_with_fixed_uids() -> None:
    found = dashboards()
    assert {name: board["uid"] for name, board in found.items()} == DASHBOARD_UIDS
    titles = {board["title"] for board in found.values()}
    assert titles == {"Border flow", "Pipeline health"}


@pytest.mark.parametrize("name", sorted(DASHBOARD_UIDS))
def test_dashboard_is_valid_grafana_json(name: str) -> None:
    board = dashboards()[name]
    assert board["schemaVersion"] >= 36
    assert "id" not in board or board["id"] is None, "provisioned dashboards carry no id"
    assert "bordermon" in board["tags"]
    ids = [panel["id"] for panel in panels(board)]
    assert len(ids) == len(set(ids)), f"duplicate panel ids in {name}"
    titles = [panel["title"] for panel in query_panels(board)]
    assert len(titles) == len(set(titles)), f"duplicate panel titles in {name}"
    occupied: set[tuple[int, int]] = set()
    for panel in panels(board):
        grid = panel["gridPos"]
        assert {"h", "w", "x", "y"} <= set(grid) and grid["w"] > 0 and grid["h"] > 0
        assert grid["x"] + grid["w"] <= 24, f"{panel['title']!r} is wider than the dashboard"
        cells = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & occupied, f"{panel['title']!r} overlaps another panel"
        occupied |= cells


@pytest.mark.parametrize("name", sorted(DASHBOARD_UIDS))
def test_every_query_uses_the_fixed_datasource(name: str) -> None:
    board = dashboards()[name]
    for panel in query_panels(board):
        assert panel["datasource"] == {"type": "prometheus", "uid": DATASOURCE_UID}, panel["title"]
        assert panel["targets"], f"{panel['title']!r} has no query"
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids))
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == DATASOURCE_UID, panel["title"]
            assert target["expr"].strip(), panel["title"]
            assert metric_names(target["expr"]) or "up{" in target["expr"], panel["title"]
    for variable in board["templating"]["list"]:
        assert variable["datasource"]["uid"] == DATASOURCE_UID
    for annotation in board["annotations"]["list"]:
        if "expr" in annotation:
            assert annotation["datasource"]["uid"] == DATASOURCE_UID


@pytest.mark.parametrize("name", sorted(DASHBOARD_UIDS))
def test_dashboard_variables_are_defined(name: str) -> None:
    board = dashboards()[name]
    defined = {variable["name"] for variable in board["templating"]["list"]}
    for where, expr in dashboard_exprs(board):
        undefined = grafana_variables(expr) - defined - GRAFANA_BUILTINS
        assert not undefined, f"{where} uses undefined variable(s) {undefined}"


def test_dwell_distribution_names_every_bucket_in_days() -> None:
    """Buckets are in seconds (base unit); the bar chart shows each one as days."""
    from prometheus_client.utils import floatToGoString

    board = dashboards()["border-flow.json"]
    [panel] = [p for p in panels(board) if p["title"] == "Dwell-time distribution of flagged goods"]
    names = {
        override["matcher"]["options"]: override["properties"][0]["value"]
        for override in panel["fieldConfig"]["overrides"]
    }
    buckets = [floatToGoString(bound) for bound in metrics.FLAG_DWELL._upper_bounds]
    assert list(names) == buckets
    assert names["86400.0"] == "≤ 1 d" and names["+Inf"] == "> 90 d"


def test_datasource_provisioning_has_the_fixed_uid() -> None:
    [source] = load_yaml(DATASOURCE_FILE)["datasources"]
    assert source["uid"] == DATASOURCE_UID
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    assert (
        source["jsonData"]["timeInterval"]
        == load_yaml(PROMETHEUS_DIR / "prometheus.yml")["global"]["scrape_interval"]
    ), "Grafana's $__rate_interval must know the scrape interval"


def test_dashboard_provider_points_at_the_dashboards_folder() -> None:
    [provider] = load_yaml(PROVIDER_FILE)["providers"]
    assert provider["type"] == "file"
    assert provider["folder"] == "bordermon"
    assert provider["options"]["path"] == DASHBOARDS_MOUNT


def test_compose_mounts_what_provisioning_expects() -> None:
    """docker-compose.yml (written elsewhere) mounts these folders where the files expect."""
    compose_file = REPO / "docker-compose.yml"
    if not compose_file.exists():
        pytest.skip("docker-compose.yml does not exist yet")
    services = load_yaml(compose_file)["services"]
    grafana = next(s for n, s in services.items() if "grafana" in n)
    prometheus = next(s for n, s in services.items() if n.startswith("prometheus"))

    def mounts(service: dict[str, Any]) -> dict[str, str]:
        found = {}
        for volume in service.get("volumes", []):
            if isinstance(volume, dict):
                source, target = volume.get("source", ""), volume.get("target", "")
            else:
                source, target = volume.split(":")[:2]
            found[str(Path(source.removeprefix("./")))] = target
        return found

    assert mounts(grafana).get("deploy/grafana/dashboards") == DASHBOARDS_MOUNT
    assert mounts(grafana).get("deploy/grafana/provisioning") == "/etc/grafana/provisioning"
    assert mounts(prometheus).get("deploy/prometheus") == "/etc/prometheus"
