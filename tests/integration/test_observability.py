"""Prometheus and the dashboards on a real worker: the observability files work, not just parse.

1. promtool checks the compose config and the rules, and runs the rules' unit tests;
2. a real `bordermon worker` (metrics on a free port) processes a simulated scenario, while a
   real Prometheus from the local stack (`bordermon stack up prometheus`, in a private run folder
   on a free port, scraping every second) watches it with bordermon's rules loaded;
3. then: the worker's /metrics passes `promtool check metrics`; Prometheus's counts agree with
   the flags and dead letters on the topics; every query of both dashboards is valid PromQL for
   Prometheus; the core panels have data; the rules evaluate without error.

Under CI=true a Prometheus that cannot be installed, started or reached FAILS (never skips).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from bordermon.admin.topics import apply_topics
from bordermon.core.pipeline import Reject
from bordermon.replay import replay
from bordermon.simulate import SimulationSpec, generate
from bordermon_devstack import stack
from support.builders import DEFAULT_DETECTION
from support.flags import flags_of
from support.kafka_io import delete_topics, new_test_topic_names, publish_lines, read_topic
from support.services import database_url, unavailable
from support.workers import free_port, running_worker, worker_env

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
DASHBOARDS_DIR = REPO / "deploy" / "grafana" / "dashboards"

GRAFANA_VALUES = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__interval_ms": "15000",
    "__range": "5m",
    "__range_s": "300",
}
"""Concrete values for Grafana's built-in variables; dashboard variables become `.*` (All)."""
CORE_PANELS = [
    ("border-flow.json", "Crossings per checkpoint and direction"),
    ("border-flow.json", "Flags per severity"),
    ("border-flow.json", "Flags per rule"),
    ("pipeline-health.json", "Dead letters by reason"),
    ("pipeline-health.json", "Scan-to-flag latency"),
    ("pipeline-health.json", "Batch duration"),
    ("pipeline-health.json", "Redis round-trip latency"),
    ("pipeline-health.json", "Workers up"),
]
"""Panels that must show data after a scenario. Consumer lag and consignments in state are not
here: the worker-side gauges may still be unwired (their queries must parse all the same)."""


# --- helpers -----------------------------------------------------------------------------------


def _ensure_promtool() -> str:
    ctx = stack.Context(repo=stack.find_repo(), run_dir=stack.run_dir_path(), say=print)
    try:
        return stack.ensure_debian_package("promtool", "prometheus", ctx)
    except stack.StackError as error:
        unavailable(f"promtool (Debian package prometheus) is missing: {error}")


def _run(argv: list[str], stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def grafana_to_promql(expr: str) -> str:
    """A dashboard query as Grafana would send it, with every variable at a concrete value."""

    def value(match: re.Match[str]) -> str:
        name = match[1] or match[2]
        return GRAFANA_VALUES.get(name, ".*")

    text = re.sub(r"\$\{?(\w+)(?::\w+)?\}?|\[\[(\w+)\]\]", value, expr)
    label_values = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", text)
    return label_values[1] if label_values else text


def dashboard_queries() -> list[tuple[str, str, str]]:
    """(dashboard file, where, PromQL with Grafana variables) for every query of every
    dashboard: panel targets, query variables and annotations."""
    found = []
    for path in sorted(DASHBOARDS_DIR.glob("*.json")):
        board = json.loads(path.read_text(encoding="utf-8"))
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                where = f"{panel['title']} [{target['refId']}]"
                found.append((path.name, where, target["expr"]))
        for variable in board["templating"]["list"]:
            if variable["type"] == "query":
                query = variable["query"]
                text = query["query"] if isinstance(query, dict) else query
                found.append((path.name, f"variable ${variable['name']}", text))
        for annotation in board["annotations"]["list"]:
            if "expr" in annotation:
                found.append((path.name, f"annotation {annotation['name']}", annotation["expr"]))
    return found


def panel_targets(dashboard: str, title: str) -> list[str]:
    board = json.loads((DASHBOARDS_DIR / dashboard).read_text(encoding="utf-8"))
    [panel] = [p for p in board["panels"] if p["title"] == title]
    return [target["expr"] for target in panel["targets"]]


@dataclass
class Prometheus:
    url: str

    def get(self, path: str, **params: str) -> dict[str, Any]:
        query = urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=30) as response:
                answer: dict[str, Any] = json.load(response)
        except urllib.error.HTTPError as error:  # 400/422 carry a JSON error body
            answer = json.load(error)
        return answer

    def query(self, expr: str, at: float | None = None) -> dict[str, Any]:
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        return self.get("/api/v1/query", **params)

    def vector(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        answer = self.query(expr, at)
        assert answer["status"] == "success", f"{expr}: {answer}"
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def scalar(self, expr: str) -> float | None:
        result = self.vector(expr)
        return float(result[0]["value"][1]) if result else None

    def by_label(self, expr: str, label: str, at: float) -> dict[str, float]:
        """Non-zero values by label (series pre-created at 0 from start-up are left out)."""
        values = {s["metric"].get(label, ""): float(s["value"][1]) for s in self.vector(expr, at)}
        return {key: value for key, value in values.items() if value}


def wait_for(what: str, check: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last is True:
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last})")


# --- promtool on the files -----------------------------------------------------------------------


def test_promtool_check_config_accepts_the_compose_config() -> None:
    done = _run([_ensure_promtool(), "check", "config", str(PROMETHEUS_DIR / "prometheus.yml")])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 rule files found" in done.stdout  # rules/*.yml resolved next to the config


def test_promtool_check_rules_accepts_the_rules() -> None:
    rules = PROMETHEUS_DIR / "rules" / "bordermon.rules.yml"
    done = _run([_ensure_promtool(), "check", "rules", str(rules)])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_promtool_rule_unit_tests_pass() -> None:
    tests = sorted(str(path) for path in (PROMETHEUS_DIR / "tests").glob("*.yml"))
    assert tests
    done = _run([_ensure_promtool(), "test", "rules", *tests])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "FAILED" not in done.stdout


# --- a worker watched by a real Prometheus ----------------------------------------------------


@dataclass
class Observed:
    prometheus: Prometheus
    at: float
    """Evaluation time for every query: after the scenario, whatever the tests take."""
    metrics_text: bytes
    flags: list[dict[str, Any]]
    dead_letter_reasons: list[str]
    published: int


@pytest.fixture(scope="module")
def observed(
    kafka_bootstrap: str,
    redis_url: str,
    redis_test_db: int,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Observed]:
    work = tmp_path_factory.mktemp("observability")
    names = new_test_topic_names().names
    redis_test_url = database_url(redis_url, redis_test_db)
    client: redis.Redis[bytes] = redis.Redis.from_url(redis_test_url)
    client.flushdb()

    lines = list(generate(SimulationSpec(consignments=600, seed=23, malformed_rate=0.02)))
    rejects: list[Reject] = []
    out = io.BytesIO()
    replay(io.BytesIO(b"\n".join(lines) + b"\n"), out, DEFAULT_DETECTION, on_reject=rejects.append)
    expected_flags = len(out.getvalue().splitlines())
    assert expected_flags > 50 and len(rejects) > 5

    metrics_port = free_port()
    prometheus_port = free_port()
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(client.close)
        cleanup.callback(client.flushdb)
        report = apply_topics(kafka_bootstrap, name_overrides=names)
        cleanup.callback(delete_topics, kafka_bootstrap, list(names.values()))
        assert report.ok, "\n".join(report.lines())

        env = worker_env(
            kafka_bootstrap,
            redis_test_url,
            names,
            f"g-{uuid.uuid4()}",
            BORDERMON_METRICS_PORT=str(metrics_port),
            BORDERMON_BATCH_MAX_EVENTS="100",
        )
        cleanup.enter_context(running_worker(env, work / "worker.log"))

        patch = cleanup.enter_context(pytest.MonkeyPatch.context())
        patch.setenv("BORDERMON_STACK_PROMETHEUS_PORT", str(prometheus_port))
        patch.setenv(stack.PROMETHEUS_TARGETS_ENV, f"127.0.0.1:{metrics_port}")
        patch.setenv(stack.PROMETHEUS_SCRAPE_INTERVAL_ENV, "1s")
        run_dir = work / "run"
        cleanup.callback(stack.down, ["prometheus"], run_dir=run_dir, quiet=True)
        try:
            state = stack.up(["prometheus"], run_dir=run_dir, quiet=True).get("prometheus")
        except stack.StackError as error:
            unavailable(f"the local stack could not start Prometheus: {error}")
        if not state.up:
            unavailable(f"Prometheus from the local stack at {state.url} does not answer")
        prometheus = Prometheus(state.url)
        wait_for(
            "Prometheus to scrape the worker",
            lambda: prometheus.scalar(f'up{{job="{stack.PROMETHEUS_JOB}"}}') == 1.0,
        )

        # Three waves a couple of scrapes apart, so rates and quantiles have data to work on.
        third = len(lines) // 3 + 1
        for start in range(0, len(lines), third):
            publish_lines(kafka_bootstrap, names["crossings"], lines[start : start + third])
            time.sleep(2.5)
        flags = flags_of(read_topic(kafka_bootstrap, names["flags"], until_count=expected_flags))
        dead = read_topic(kafka_bootstrap, names["dead_letter"], until_count=len(rejects))
        reasons = [dict(message.headers())["error"].decode() for message in dead]

        def caught_up() -> Any:
            seen = (
                prometheus.scalar("sum(bordermon_flags_total)"),
                prometheus.scalar(
                    "sum(bordermon_events_consumed_total) + sum(bordermon_dead_letters_total)"
                ),
            )
            return seen == (float(len(flags)), float(len(lines))) or seen

        wait_for("Prometheus to scrape the final counts", caught_up)
        time.sleep(2.5)  # a few more scrapes: the last values are in every rate window
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics") as response:
            metrics_text = response.read()
        yield Observed(prometheus, time.time(), metrics_text, flags, reasons, len(lines))


def test_worker_metrics_pass_promtool_check_metrics(observed: Observed) -> None:
    assert b"bordermon_flags_total{" in observed.metrics_text
    done = _run([_ensure_promtool(), "check", "metrics"], stdin=observed.metrics_text)
    assert done.returncode == 0, "promtool check metrics:\n" + done.stdout + done.stderr


def test_prometheus_counts_agree_with_the_topics(observed: Observed) -> None:
    prometheus, at = observed.prometheus, observed.at
    flags = prometheus.by_label("sum by (severity) (bordermon_flags_total)", "severity", at)
    assert flags == Counter(flag["severity"] for flag in observed.flags)
    dead = prometheus.by_label("sum by (reason) (bordermon_dead_letters_total)", "reason", at)
    assert dead == Counter(observed.dead_letter_reasons)
    assert prometheus.by_label("sum(bordermon_events_rejected_total)", "", at) == {
        "": float(len(observed.dead_letter_reasons))
    }
    consumed = prometheus.by_label("sum(bordermon_events_consumed_total)", "", at)
    assert consumed == {"": float(observed.published - len(observed.dead_letter_reasons))}
    origins = prometheus.by_label("sum(bordermon_flags_by_origin_total)", "", at)
    with_entry = [flag for flag in observed.flags if flag.get("entry") is not None]
    assert origins == ({"": float(len(with_entry))} if with_entry else {})  # one per entry
    rules = prometheus.by_label("sum by (rule) (bordermon_flags_total)", "rule", at)
    assert rules == Counter(flag["rule"] for flag in observed.flags)


@pytest.mark.parametrize(
    "dashboard, where, expr",
    dashboard_queries(),
    ids=[f"{d}:{w}" for d, w, _ in dashboard_queries()],
)
def test_dashboard_query_is_valid_promql(
    observed: Observed, dashboard: str, where: str, expr: str
) -> None:
    promql = grafana_to_promql(expr)
    answer = observed.prometheus.query(promql, observed.at)
    assert answer["status"] == "success", f"{dashboard} {where}: {promql}\n{answer}"
    assert not answer.get("warnings"), answer["warnings"]


@pytest.mark.parametrize("dashboard, title", CORE_PANELS, ids=[t for _, t in CORE_PANELS])
def test_core_panel_shows_data(observed: Observed, dashboard: str, title: str) -> None:
    values = []
    for expr in panel_targets(dashboard, title):
        for sample in observed.prometheus.vector(grafana_to_promql(expr), observed.at):
            values.append(float(sample["value"][1]))
    finite = [value for value in values if math.isfinite(value)]
    assert finite, f"{dashboard} {title!r}: no finite value at the end of the scenario ({values})"
    if title != "Workers up":
        assert max(finite) > 0, f"{dashboard} {title!r}: only zeros ({values})"
    else:
        assert finite == [1.0]


def test_dwell_distribution_names_the_buckets_prometheus_has(observed: Observed) -> None:
    board = json.loads((DASHBOARDS_DIR / "border-flow.json").read_text(encoding="utf-8"))
    [panel] = [
        p for p in board["panels"] if p["title"] == "Dwell-time distribution of flagged goods"
    ]
    named = {override["matcher"]["options"] for override in panel["fieldConfig"]["overrides"]}
    seen = observed.prometheus.by_label(
        "count by (le) (bordermon_flag_dwell_seconds_bucket)", "le", observed.at
    )
    assert set(seen) == named


def test_rules_are_loaded_and_evaluate_cleanly(observed: Observed) -> None:
    answer = observed.prometheus.get("/api/v1/rules")
    assert answer["status"] == "success"
    loaded = {rule["name"]: rule for g in answer["data"]["groups"] for rule in g["rules"]}
    rules_text = (PROMETHEUS_DIR / "rules" / "bordermon.rules.yml").read_text()
    declared = set(re.findall(r"^\s*- (?:alert|record): (\S+)", rules_text, re.MULTILINE))
    assert set(loaded) == declared
    errors = {
        name: rule.get("lastError") for name, rule in loaded.items() if rule["health"] == "err"
    }
    assert not errors
    # A worker is up and scraped: the alerts about workers are not even pending.
    assert loaded["BordermonWorkerDown"]["state"] == "inactive"
    assert loaded["BordermonNoWorkerTargets"]["state"] == "inactive"
    # The recording rule has data. Not exact: rate() misses the first increment of a new series.
    [ratio] = observed.prometheus.vector("bordermon:dead_letter_ratio:rate10m", observed.at)
    assert 0 < float(ratio["value"][1]) < 0.2  # 2% of the simulated lines are malformed


def test_worker_target_is_healthy(observed: Observed) -> None:
    answer = observed.prometheus.get("/api/v1/targets", state="active")
    targets = answer["data"]["activeTargets"]
    assert [t["labels"]["job"] for t in targets] == [stack.PROMETHEUS_JOB]
    assert targets[0]["health"] == "up", targets[0].get("lastError")
