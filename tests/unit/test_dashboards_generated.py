"""The Grafana dashboards are generated: deploy/grafana/build_dashboards.py builds them with
grafana-foundation-sdk, and the JSON checked in is exactly what it makes.

A hand edit of deploy/grafana/dashboards/*.json, or a builder change without regenerating,
fails here. What the dashboards query is checked in test_observability_files.py (against
bordermon.metrics and the rules) and tests/integration/test_observability.py (a real Prometheus).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
GENERATOR = REPO / "deploy" / "grafana" / "build_dashboards.py"
DASHBOARDS_DIR = REPO / "deploy" / "grafana" / "dashboards"


@pytest.fixture(scope="module")
def generator() -> ModuleType:
    """The generator script, imported in-process (deploy/ is not a package)."""
    spec = importlib.util.spec_from_file_location("build_dashboards", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_regenerating_changes_nothing(generator: ModuleType, tmp_path: Path) -> None:
    written = generator.write(tmp_path)
    checked_in = sorted(path.name for path in DASHBOARDS_DIR.glob("*.json"))
    assert sorted(path.name for path in written) == checked_in
    for path in written:
        assert path.read_bytes() == (DASHBOARDS_DIR / path.name).read_bytes(), (
            f"deploy/grafana/dashboards/{path.name} is not what the builders make: run"
            " python deploy/grafana/build_dashboards.py (and edit the builders, not the JSON)"
        )


def test_check_mode_names_the_file_that_was_edited_by_hand(
    generator: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copytree(DASHBOARDS_DIR, tmp_path, dirs_exist_ok=True)
    assert generator.main(["--check", "--out", str(tmp_path)]) == 0
    assert capsys.readouterr().err == ""

    edited = tmp_path / "pipeline-health.json"
    edited.write_text(
        edited.read_text(encoding="utf-8").replace('"Lag now"', '"Lag"'), encoding="utf-8"
    )
    assert generator.main(["--check", "--out", str(tmp_path)]) == 1
    [message] = capsys.readouterr().err.splitlines()
    assert str(edited) in message and "build_dashboards.py" in message
    assert "border-flow.json" not in message


def test_check_mode_reports_missing_and_unknown_files(
    generator: ModuleType, tmp_path: Path
) -> None:
    generator.write(tmp_path)
    (tmp_path / "border-flow.json").unlink()
    (tmp_path / "hand-made.json").write_text("{}\n", encoding="utf-8")
    assert generator.stale(tmp_path) == ["border-flow.json", "hand-made.json"]


def test_generated_json_is_stable_text(generator: ModuleType) -> None:
    """Sorted keys, 2-space indent, UTF-8 as is, a trailing newline, the same on every run: a
    rebuild diffs as nothing, and a real change diffs as only itself."""
    rendered = generator.rendered()
    assert rendered == generator.rendered()
    for name, text in rendered.items():
        canonical = json.dumps(json.loads(text), sort_keys=True, indent=2, ensure_ascii=False)
        assert text == canonical + "\n", name
    assert "≤ ½ d" in rendered["border-flow.json"]


def test_a_rule_without_a_color_stops_the_build(generator: ModuleType) -> None:
    with pytest.raises(SystemExit, match="give each one a color"):
        generator.by_value(("transit-to-ru", "new-rule"), {"transit-to-ru": "blue"}, "rules")


def test_panels_name_metrics_through_bordermon_metrics(generator: ModuleType) -> None:
    """The series names are derived from the metric objects, with the suffix of their type."""
    from bordermon import metrics

    assert generator.total(metrics.FLAGS) == "bordermon_flags_total"
    assert generator.bucket(metrics.FLAG_DWELL) == "bordermon_flag_dwell_seconds_bucket"
    assert generator.gauge(metrics.CONSUMER_LAG) == "bordermon_consumer_lag_messages"
    assert generator.info(metrics.BUILD_INFO) == "bordermon_build_info"
    assert generator.count_of(metrics.BATCH_SIZE) == "bordermon_batch_size_count"
