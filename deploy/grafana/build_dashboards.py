"""Build bordermon's Grafana dashboards with grafana-foundation-sdk and write them as JSON.

The JSON in deploy/grafana/dashboards is generated: change a dashboard here, then regenerate.
From the repository root, with the dev extras installed (`pip install -e '.[dev]'`):

    python deploy/grafana/build_dashboards.py          # rewrite deploy/grafana/dashboards/*.json
    python deploy/grafana/build_dashboards.py --check  # exit 1, naming each file that differs

Metric names come from `bordermon.metrics` (the metric objects, not strings), so renaming a metric
renames it in every panel; the two recording rules are named as deploy/prometheus/rules records
them. The SDK lays panels out left to right, top to bottom, in the order they are added, and a
row starts a new line. It does not wrap a panel wider than what is left of a line (the grid
checks of tests/unit/test_observability_files.py catch that): keep each line at 24 columns.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol, Self, TypeVar

try:
    from grafana_foundation_sdk.builders import bargauge, stat, statetimeline, table, timeseries
    from grafana_foundation_sdk.builders import common as common_builders
    from grafana_foundation_sdk.builders import dashboard as dashboard_builders
    from grafana_foundation_sdk.builders import prometheus as prometheus_builders
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models import common
    from grafana_foundation_sdk.models import dashboard as dashboard_models
    from grafana_foundation_sdk.models import prometheus as prometheus_models
except ModuleNotFoundError as missing:  # a user's error: one line that says what to do
    raise SystemExit(
        f"build_dashboards: {missing.name} is not installed; run: pip install -e '.[dev]'"
    ) from missing
from prometheus_client import Counter, Gauge, Histogram, Info
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.utils import floatToGoString

from bordermon import metrics

DASHBOARDS_DIR = Path(__file__).resolve().parent / "dashboards"

DATASOURCE = dashboard_models.DataSourceRef(type_val="prometheus", uid="bordermon-prometheus")
"""deploy/grafana/provisioning/datasources/prometheus.yml provisions it with this fixed uid."""
WORKER_JOB = "bordermon-worker"
"""The scrape job of the workers (deploy/prometheus/prometheus.yml)."""
TAG = "bordermon"
GRID_COLUMNS = 24


# --- series names, from the metric objects of bordermon.metrics ---------------------------------


def _family(metric: MetricWrapperBase) -> str:
    """The metric's name as declared, without the suffixes of the series it exposes."""
    [family] = metric.describe()
    return family.name


def total(counter: Counter) -> str:
    return f"{_family(counter)}_total"


def gauge(metric: Gauge) -> str:
    return _family(metric)


def bucket(histogram: Histogram) -> str:
    return f"{_family(histogram)}_bucket"


def sum_of(histogram: Histogram) -> str:
    return f"{_family(histogram)}_sum"


def count_of(histogram: Histogram) -> str:
    return f"{_family(histogram)}_count"


def info(metric: Info) -> str:
    return f"{_family(metric)}_info"


EVENTS_CONSUMED = total(metrics.EVENTS_CONSUMED)
EVENTS_REJECTED = total(metrics.EVENTS_REJECTED)
EVENTS_DUPLICATE = total(metrics.EVENTS_DUPLICATE)
FLAGS = total(metrics.FLAGS)
FLAGS_BY_ORIGIN = total(metrics.FLAGS_BY_ORIGIN)
FLAGS_BY_HS_CHAPTER = total(metrics.FLAGS_BY_HS_CHAPTER)
DEAD_LETTERS = total(metrics.DEAD_LETTERS)
STORE_ERRORS = total(metrics.STORE_ERRORS)
SAVES_REFUSED = total(metrics.SAVES_REFUSED)
STATES_QUARANTINED = total(metrics.STATES_QUARANTINED)
FLAG_DWELL_BUCKET = bucket(metrics.FLAG_DWELL)
SCAN_TO_FLAG_BUCKET = bucket(metrics.SCAN_TO_FLAG)
REDIS_ROUND_TRIP_BUCKET = bucket(metrics.REDIS_ROUND_TRIP)
BATCH_DURATION_BUCKET = bucket(metrics.BATCH_DURATION)
BATCH_SIZE_BUCKET = bucket(metrics.BATCH_SIZE)
BATCH_SIZE_SUM = sum_of(metrics.BATCH_SIZE)
BATCH_SIZE_COUNT = count_of(metrics.BATCH_SIZE)
CONSIGNMENTS_IN_STATE = gauge(metrics.CONSIGNMENTS_IN_STATE)
CONSUMER_LAG = gauge(metrics.CONSUMER_LAG)
BUILD_INFO = info(metrics.BUILD_INFO)
CONFIG_INFO = info(metrics.CONFIG_INFO)
# Recording rules of deploy/prometheus/rules/bordermon.rules.yml.
LAG_BY_TOPIC = "bordermon:consumer_lag_messages:by_topic"
DEAD_LETTER_RATIO = "bordermon:dead_letter_ratio:rate10m"

BY_CHECKPOINT = 'checkpoint=~"$checkpoint"'
BY_INSTANCE = 'instance=~"$instance"'
WORKERS_UP = f'up{{job="{WORKER_JOB}", {BY_INSTANCE}}}'


def select(series: str, matchers: str) -> str:
    """A PromQL selector: `series{matchers}`."""
    return f"{series}{{{matchers}}}"


def by_value(values: Sequence[str], colors: Mapping[str, str], what: str) -> dict[str, str]:
    """`colors` for each of `values` (a label's values in bordermon.metrics), in their order:
    a value added there without a color here stops the build rather than going grey."""
    if set(colors) != set(values):
        raise SystemExit(
            f"build_dashboards: colors for {what} {sorted(colors)} do not match"
            f" bordermon.metrics {sorted(values)}: give each one a color"
        )
    return {value: colors[value] for value in values}


RULE_COLORS = by_value(
    metrics.RULES,
    {"transit-to-ru": "blue", "relabel-to-ru": "purple", "export-without-permit": "red"},
    "rules",
)
SEVERITY_COLORS = by_value(
    metrics.SEVERITIES, {"high": "red", "medium": "orange", "low": "yellow"}, "severities"
)


def dwell_bucket_names() -> dict[str, str]:
    """Each `le` of the dwell histogram (seconds, as Prometheus writes it) -> its bound in days."""
    names: dict[str, str] = {}
    for bound in metrics.DWELL_BUCKETS:
        days = bound / metrics.DAY_S
        shown = "½" if days == 0.5 else f"{days:g}"
        names[floatToGoString(bound)] = f"≤ {shown} d"  # type: ignore[no-untyped-call]
    names["+Inf"] = f"> {metrics.DWELL_BUCKETS[-1] / metrics.DAY_S:g} d"
    return names


# --- building blocks -----------------------------------------------------------------------------


def query(
    expr: str,
    legend: str | None = None,
    *,
    ref_id: str = "A",
    instant: bool = False,
    query_format: prometheus_models.PromQueryFormat | None = None,
) -> prometheus_builders.Dataquery:
    """A PromQL target in code mode: instant for values over the dashboard range, else range."""
    target = (
        prometheus_builders.Dataquery()
        .datasource(DATASOURCE)
        .ref_id(ref_id)
        .expr(expr)
        .editor_mode(prometheus_models.QueryEditorMode.CODE)
    )
    target = target.instant() if instant else target.range()
    if legend is not None:
        target = target.legend_format(legend)
    if query_format is not None:
        target = target.format(query_format)
    return target


def queries(*targets: tuple[str, str]) -> list[prometheus_builders.Dataquery]:
    """Range targets A, B, C... from (expr, legend) pairs."""
    return [
        query(expr, legend, ref_id=chr(ord("A") + index))
        for index, (expr, legend) in enumerate(targets)
    ]


def thresholds(base: str, *steps: tuple[float, str]) -> dashboard_builders.ThresholdsConfig:
    """Absolute thresholds: `base` below the first step, then each (value, color)."""
    return (
        dashboard_builders.ThresholdsConfig()
        .mode(dashboard_models.ThresholdsMode.ABSOLUTE)
        .steps(
            [dashboard_models.Threshold(value=None, color=base)]
            + [dashboard_models.Threshold(value=value, color=color) for value, color in steps]
        )
    )


def fixed_color(color: str) -> dashboard_models.DynamicConfigValue:
    return dashboard_models.DynamicConfigValue(
        id_val="color", value={"mode": "fixed", "fixedColor": color}
    )


class _Overridable(Protocol):
    def override_by_name(
        self, name: str, properties: list[dashboard_models.DynamicConfigValue]
    ) -> Self: ...


PanelT = TypeVar("PanelT", bound=_Overridable)


def colored_series(panel: PanelT, colors: Mapping[str, str]) -> PanelT:
    """Give each series named in `colors` its fixed color."""
    for name, color in colors.items():
        panel = panel.override_by_name(name, [fixed_color(color)])
    return panel


def last_value() -> common_builders.ReduceDataOptions:
    return common_builders.ReduceDataOptions().calcs(["lastNotNull"]).fields("").values(False)


def row(panel_id: int, title: str) -> dashboard_builders.Row:
    return dashboard_builders.Row(title).id(panel_id).collapsed(False)


def stat_panel(
    panel_id: int,
    title: str,
    description: str,
    *,
    width: int,
    unit: str,
    colors: dashboard_builders.ThresholdsConfig,
    target: prometheus_builders.Dataquery,
    graph: common.BigValueGraphMode = common.BigValueGraphMode.NONE,
    color_mode: common.BigValueColorMode = common.BigValueColorMode.VALUE,
) -> stat.Panel:
    """A single number, 4 rows high."""
    return (
        stat.Panel()
        .id(panel_id)
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .height(4)
        .span(width)
        .unit(unit)
        .thresholds(colors)
        .reduce_options(last_value())
        .orientation(common.VizOrientation.AUTO)
        .text_mode(common.BigValueTextMode.AUTO)
        .color_mode(color_mode)
        .graph_mode(graph)
        .justify_mode(common.BigValueJustifyMode.AUTO)
        .wide_layout(True)
        .show_percent_change(False)
        .with_target(target)
    )


def graph_panel(
    panel_id: int,
    title: str,
    description: str,
    *,
    height: int,
    width: int,
    unit: str,
    axis: str,
    targets: list[prometheus_builders.Dataquery],
    stacked: bool = False,
    bars: bool = False,
) -> timeseries.Panel:
    """A time series: lines (stacked areas if `stacked`, bars if `bars`), multi-series tooltip."""
    if bars:
        style, fill = common.GraphDrawStyle.BARS, 80
    else:
        style, fill = common.GraphDrawStyle.LINE, (40 if stacked else 10)
    return (
        timeseries.Panel()
        .id(panel_id)
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .height(height)
        .span(width)
        .unit(unit)
        .draw_style(style)
        .line_width(1)
        .fill_opacity(fill)
        .show_points(common.VisibilityMode.NEVER)
        .span_nulls(False)
        .axis_label(axis)
        .axis_placement(common.AxisPlacement.AUTO)
        .stacking(
            common_builders.StackingConfig()
            .mode(common.StackingMode.NORMAL if stacked else common.StackingMode.NONE)
            .group("A")
        )
        .thresholds_style(
            common_builders.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.OFF)
        )
        .legend(legend_list())
        .tooltip(
            common_builders.VizTooltipOptions()
            .mode(common.TooltipDisplayMode.MULTI)
            .sort(common.SortOrder.DESCENDING)
        )
        .targets(list(targets))
    )


def legend_list() -> common_builders.VizLegendOptions:
    return (
        common_builders.VizLegendOptions()
        .display_mode(common.LegendDisplayMode.LIST)
        .placement(common.LegendPlacement.BOTTOM)
        .show_legend(True)
        .calcs([])
    )


def bar_gauge_panel(
    panel_id: int,
    title: str,
    description: str,
    *,
    height: int,
    width: int,
    color: str,
    target: prometheus_builders.Dataquery,
    orientation: common.VizOrientation = common.VizOrientation.HORIZONTAL,
) -> bargauge.Panel:
    """Counts over the dashboard range, one bar per series, largest first if the query sorts."""
    return (
        bargauge.Panel()
        .id(panel_id)
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .height(height)
        .span(width)
        .unit("short")
        .decimals(0)
        .min(0)
        .thresholds(thresholds(color))
        .reduce_options(last_value())
        .orientation(orientation)
        .display_mode(common.BarGaugeDisplayMode.GRADIENT)
        .value_mode(common.BarGaugeValueMode.COLOR)
        .name_placement(common.BarGaugeNamePlacement.AUTO)
        .show_unfilled(True)
        .sizing(common.BarGaugeSizing.AUTO)
        .min_viz_height(16)
        .min_viz_width(8)
        .max_viz_height(300)
        .with_target(target)
    )


def query_variable(
    name: str, label: str, description: str, values_of: str
) -> dashboard_builders.QueryVariable:
    """A multi-select variable, All by default, whose values are `label_values(...)`."""
    return (
        dashboard_builders.QueryVariable(name)
        .label(label)
        .description(description)
        .datasource(DATASOURCE)
        .query(
            {
                "query": values_of,
                "refId": "PrometheusVariableQueryEditor-VariableQuery",
                "qryType": 1,
            }
        )
        .refresh(dashboard_models.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .include_all(True)
        .multi(True)
        .all_value(".*")
        .current(dashboard_models.VariableOption(selected=True, text=["All"], value=["$__all"]))
        .options([])
        .sort(dashboard_models.VariableSort.ALPHABETICAL_ASC)
        .hide(dashboard_models.VariableHide.DONT_HIDE)
    )


class _PrometheusAnnotationModel(dashboard_models.AnnotationQuery):
    """The SDK's annotation model lacks the Prometheus fields Grafana reads to label an event."""

    def __init__(self) -> None:
        super().__init__()
        self.step = ""
        self.title_format = ""
        self.text_format = ""

    def to_json(self) -> dict[str, object]:
        return super().to_json() | {
            "step": self.step,
            "titleFormat": self.title_format,
            "textFormat": self.text_format,
            "useValueForTime": False,
        }


class PrometheusAnnotation(dashboard_builders.AnnotationQuery):
    """Events from a PromQL query (one per series while it is non-zero), with their titles."""

    def __init__(self, name: str, expr: str) -> None:
        super().__init__()
        self._prometheus = _PrometheusAnnotationModel()
        self._internal = self._prometheus
        self.name(name).datasource(DATASOURCE).expr(expr)

    def step(self, step: str) -> Self:
        self._prometheus.step = step
        return self

    def title_format(self, title_format: str) -> Self:
        self._prometheus.title_format = title_format
        return self

    def text_format(self, text_format: str) -> Self:
        self._prometheus.text_format = text_format
        return self


def bordermon_dashboard(
    uid: str, title: str, description: str, *, time_from: str, refresh: str
) -> dashboard_builders.Dashboard:
    """The settings both dashboards share: UTC, shared crosshair, a link to the other ones."""
    return (
        dashboard_builders.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags([TAG])
        .editable()
        .tooltip(dashboard_models.DashboardCursorSync.CROSSHAIR)
        .version(1)
        .timezone("utc")
        .time(time_from, "now")
        .timepicker(dashboard_builders.TimePicker())
        .refresh(refresh)
        .fiscal_year_start_month(0)
        .live_now(False)
        .week_start("")
        .link(
            dashboard_builders.DashboardLink("bordermon dashboards")
            .type(dashboard_models.DashboardLinkType.DASHBOARDS)
            .tags([TAG])
            .as_dropdown(False)
            .include_vars(False)
            .keep_time(True)
            .target_blank(False)
            .icon("external link")
            .tooltip("")
            .url("")
        )
        .annotation(
            dashboard_builders.AnnotationQuery()
            .name("Annotations & Alerts")
            .built_in(1)
            .datasource(dashboard_models.DataSourceRef(type_val="grafana", uid="-- Grafana --"))
            .enable(True)
            .hide(True)
            .icon_color("rgba(0, 211, 255, 1)")
            .type("dashboard")
        )
    )


# --- Border flow ---------------------------------------------------------------------------------


def border_flow() -> dashboard_builders.Dashboard:
    crossings = select(EVENTS_CONSUMED, BY_CHECKPOINT)
    exits = select(EVENTS_CONSUMED, 'direction="exit"')
    return (
        bordermon_dashboard(
            "bordermon-border-flow",
            "Border flow",
            "What crosses Kazakhstan's borders and what bordermon flags: crossings by checkpoint"
            " and direction, flags by rule and severity, origins, HS chapters and dwell times.",
            time_from="now-24h",
            refresh="1m",
        )
        .with_variable(
            query_variable(
                "checkpoint",
                "Checkpoint",
                "Filters the crossing panels; flags carry no checkpoint label.",
                f"label_values({EVENTS_CONSUMED}, checkpoint)",
            )
        )
        .with_row(row(1, "Traffic"))
        .with_panel(
            stat_panel(
                2,
                "Crossings in range",
                "Valid crossing scans processed in the selected time range (re-sent duplicates"
                " included), for the selected checkpoints.",
                width=6,
                unit="short",
                colors=thresholds("blue"),
                target=query(f"sum(increase({crossings}[$__range]))", "crossings", instant=True),
            )
        )
        .with_panel(
            colored_series(
                stat_panel(
                    3,
                    "Flags in range by severity",
                    "Flags raised in the selected time range, by severity, all rules together"
                    ' (all checkpoints: flags are not labelled by checkpoint). "Flags in range'
                    ' by rule and severity" below splits them by rule.',
                    width=6,
                    unit="short",
                    colors=thresholds("text"),
                    color_mode=common.BigValueColorMode.BACKGROUND,
                    target=query(
                        f"sum by (severity) (increase({FLAGS}[$__range]))",
                        "{{severity}}",
                        instant=True,
                    ),
                ),
                SEVERITY_COLORS,
            )
        )
        .with_panel(
            stat_panel(
                4,
                "Flagged share of exits",
                "Flags divided by exit scans in the selected time range, over all checkpoints:"
                " how much of what leaves Kazakhstan is flagged (relabel-to-ru raises one flag"
                " per exit consignment and link key, so a consignment may count more than"
                " once).",
                width=6,
                unit="percentunit",
                colors=thresholds("green", (0.2, "orange"), (0.4, "red")),
                target=query(
                    f"sum(increase({FLAGS}[$__range])) / sum(increase({exits}[$__range]))",
                    "flagged / exits",
                    instant=True,
                ),
            ).decimals(1)
        )
        .with_panel(
            stat_panel(
                5,
                "Median dwell of flagged goods",
                "Median time between the reported entry into Kazakhstan and exit to Russia of"
                " the flags raised in the selected time range that have an entry (transit-to-ru"
                " and relabel-to-ru; export-without-permit flags have none).",
                width=6,
                unit="d",
                colors=thresholds("blue"),
                target=query(
                    "histogram_quantile(0.5, sum by (le)"
                    f" (increase({FLAG_DWELL_BUCKET}[$__range]))) / 86400",
                    "median dwell",
                    instant=True,
                ),
            ).decimals(1)
        )
        .with_panel(
            graph_panel(
                6,
                "Crossings per checkpoint and direction",
                "Crossing scans processed per minute, by checkpoint and direction (entry into or"
                " exit from Kazakhstan). Checkpoints outside the reference list are shown as"
                " `other`.",
                height=9,
                width=GRID_COLUMNS,
                unit="short",
                axis="crossings / min",
                targets=queries(
                    (
                        "60 * sum by (checkpoint, direction)"
                        f" (rate({crossings}[$__rate_interval]))",
                        "{{checkpoint}} {{direction}}",
                    )
                ),
            ).legend(
                legend_list()
                .display_mode(common.LegendDisplayMode.TABLE)
                .placement(common.LegendPlacement.RIGHT)
                .calcs(["mean", "max", "lastNotNull"])
            )
        )
        .with_panel(
            graph_panel(
                7,
                "Entries and exits",
                "All selected checkpoints together: crossings per minute into and out of"
                " Kazakhstan.",
                height=7,
                width=GRID_COLUMNS,
                unit="short",
                axis="crossings / min",
                targets=queries(
                    (
                        f"60 * sum by (direction) (rate({crossings}[$__rate_interval]))",
                        "{{direction}}",
                    )
                ),
            )
        )
        .with_row(row(8, "Flags"))
        .with_panel(
            colored_series(
                graph_panel(
                    14,
                    "Flags per rule",
                    "Flags raised per hour, by rule: transit-to-ru (the same consignment entered"
                    " and left for Russia within 30 days), relabel-to-ru (another consignment"
                    " left for Russia with the same container, seal or goods batch within 90"
                    " days), export-without-permit (CHPL tier 1-2 goods left for Russia without"
                    " a permit_id). A burst of export-without-permit flags raises"
                    " BordermonExportWithoutPermitBurst.",
                    height=9,
                    width=12,
                    unit="short",
                    axis="flags / h",
                    stacked=True,
                    targets=queries(
                        (f"3600 * sum by (rule) (rate({FLAGS}[$__rate_interval]))", "{{rule}}")
                    ),
                ),
                RULE_COLORS,
            )
        )
        .with_panel(
            colored_series(
                graph_panel(
                    9,
                    "Flags per severity",
                    "Flags raised per hour, by severity, all rules together: high = CHPL tier 1"
                    " or 2 goods, medium = tier 3.A-4.B, low = other goods. A sudden rise of"
                    " high flags raises BordermonHighSeverityFlagSpike.",
                    height=9,
                    width=12,
                    unit="short",
                    axis="flags / h",
                    stacked=True,
                    targets=queries(
                        (
                            f"3600 * sum by (severity) (rate({FLAGS}[$__rate_interval]))",
                            "{{severity}}",
                        )
                    ),
                ),
                SEVERITY_COLORS,
            )
        )
        .with_panel(
            bar_gauge_panel(
                15,
                "Flags in range by rule and severity",
                "Flags raised in the selected time range for each rule and severity (pairs with"
                " no flag are left out). Severity comes from the watchlists: for transit-to-ru"
                " and export-without-permit from all the consignment's HS codes, for"
                " relabel-to-ru from the goods the entry and the exit share.",
                height=9,
                width=12,
                color="red",
                target=query(
                    f"sort_desc(sum by (rule, severity) (increase({FLAGS}[$__range])) > 0)",
                    "{{rule}} {{severity}}",
                    instant=True,
                ),
            )
        )
        .with_panel(
            bar_gauge_panel(
                10,
                "Top origins of flagged goods",
                "The 10 countries the flagged goods entered Kazakhstan from (the reported"
                " entry's from_country), over the selected time range. export-without-permit"
                " flags have no entry and are not counted.",
                height=9,
                width=6,
                color="orange",
                target=query(
                    f"topk(10, sum by (origin) (increase({FLAGS_BY_ORIGIN}[$__range])) > 0)",
                    "{{origin}}",
                    instant=True,
                ),
            )
        )
        .with_panel(
            bar_gauge_panel(
                11,
                "Top HS chapters of flagged goods",
                "The 10 HS chapters (first two digits of the code: 85 = electrical machinery and"
                " chips, 84 = machinery, 90 = optical and navigation instruments) in flagged"
                " consignments over the selected time range; a flag counts once per chapter it"
                " holds.",
                height=9,
                width=6,
                color="purple",
                target=query(
                    f"topk(10, sum by (chapter) (increase({FLAGS_BY_HS_CHAPTER}[$__range])) > 0)",
                    "HS {{chapter}}",
                    instant=True,
                ),
            )
        )
        .with_panel(dwell_distribution())
        .with_panel(
            graph_panel(
                13,
                "Dwell time of flagged goods over time, by rule",
                "Median and 90th percentile of days between the reported entry and exit, for"
                " each rule that reports an entry (transit-to-ru: window 30 days; relabel-to-ru:"
                " 90 days).",
                height=9,
                width=12,
                unit="d",
                axis="days",
                targets=queries(
                    *(
                        (
                            f"histogram_quantile({quantile}, sum by (le, rule)"
                            f" (rate({FLAG_DWELL_BUCKET}[$__rate_interval]))) / 86400",
                            f"{name} {{{{rule}}}}",
                        )
                        for quantile, name in (("0.5", "median"), ("0.9", "90th percentile"))
                    )
                ),
            )
        )
    )


def dwell_distribution() -> bargauge.Panel:
    panel = bar_gauge_panel(
        12,
        "Dwell-time distribution of flagged goods",
        "How long flagged goods stayed in Kazakhstan between the reported entry and the exit to"
        " Russia (histogram over the selected time range, transit-to-ru and relabel-to-ru"
        " together; each bar counts the flags with a dwell up to its bound, above the previous"
        " one). Short dwells are straight transit, long ones warehouse re-exports.",
        height=9,
        width=12,
        color="blue",
        orientation=common.VizOrientation.VERTICAL,
        target=query(
            f"sum by (le) (increase({FLAG_DWELL_BUCKET}[$__range]))",
            "{{le}}",
            instant=True,
            query_format=prometheus_models.PromQueryFormat.HEATMAP,
        ),
    )
    for le, shown in dwell_bucket_names().items():
        panel = panel.override_by_name(
            le, [dashboard_models.DynamicConfigValue(id_val="displayName", value=shown)]
        )
    return panel


# --- Pipeline health -----------------------------------------------------------------------------


def pipeline_health() -> dashboard_builders.Dashboard:
    def of_instances(series: str) -> str:
        return select(series, BY_INSTANCE)

    def quantiles(series: str, by: str, *levels: tuple[str, str]) -> list[tuple[str, str]]:
        """(expr, legend) for each (quantile, legend) of a histogram, summed by `le, by`."""
        grouping = f"le, {by}" if by else "le"
        rate = f"rate({of_instances(series)}[$__rate_interval])"
        return [
            (f"histogram_quantile({level}, sum by ({grouping}) ({rate}))", legend)
            for level, legend in levels
        ]

    def per_second(series: str) -> str:
        return f"rate({of_instances(series)}[$__rate_interval])"

    def per_minute_bars(
        panel_id: int, title: str, description: str, counter: str, by: str
    ) -> timeseries.Panel:
        """Red bars, 6 wide: how often per minute something went wrong, one series per `by`."""
        return graph_panel(
            panel_id,
            title,
            description,
            height=8,
            width=6,
            unit="short",
            axis="per minute",
            bars=True,
            targets=queries((f"60 * sum by ({by}) ({per_second(counter)})", "{{" + by + "}}")),
        ).color_scheme(red())

    return (
        bordermon_dashboard(
            "bordermon-pipeline-health",
            "Pipeline health",
            "Is bordermon keeping up, and is it healthy: throughput, consumer lag, scan-to-flag"
            " latency, bad input, Redis and batch timings, workers.",
            time_from="now-1h",
            refresh="30s",
        )
        .annotation(
            PrometheusAnnotation(
                "bordermon alerts", 'ALERTS{alertname=~"Bordermon.*", alertstate="firing"}'
            )
            .enable(True)
            .hide(False)
            .icon_color("red")
            .step("60s")
            .title_format("{{alertname}}")
            .text_format("{{severity}} {{instance}}{{topic}}{{kind}}{{store}}")
        )
        .with_variable(
            query_variable(
                "instance",
                "Worker",
                f"Workers (scrape targets of job {WORKER_JOB}).",
                f'label_values(up{{job="{WORKER_JOB}"}}, instance)',
            )
        )
        .with_row(row(1, "Now"))
        .with_panel(
            stat_panel(
                2,
                "Workers up",
                f"Workers Prometheus can scrape (job {WORKER_JOB}). 0 means no crossing is"
                " checked: see BordermonWorkerDown.",
                width=4,
                unit="short",
                colors=thresholds("red", (1, "green")),
                color_mode=common.BigValueColorMode.BACKGROUND,
                target=query(f"sum({WORKERS_UP})", "workers up"),
            ).decimals(0)
        )
        .with_panel(
            stat_panel(
                3,
                "Events per second",
                "Valid crossing events processed per second, all selected workers.",
                width=4,
                unit="short",
                colors=thresholds("blue"),
                graph=common.BigValueGraphMode.AREA,
                target=query(f"sum({per_second(EVENTS_CONSUMED)})", "events/s"),
            ).decimals(1)
        )
        .with_panel(
            stat_panel(
                4,
                "Lag now",
                "Messages on the crossings topic not processed yet, all partitions (each"
                " counted once).",
                width=4,
                unit="short",
                colors=thresholds("green", (1000, "orange"), (10000, "red")),
                graph=common.BigValueGraphMode.AREA,
                target=query(f"sum({LAG_BY_TOPIC})", "lag"),
            ).decimals(0)
        )
        .with_panel(
            stat_panel(
                5,
                "Scan-to-flag p95 (5m)",
                "95% of flags were acknowledged within this time of the scan that completed the"
                " pair (SPEC: within a second).",
                width=4,
                unit="s",
                colors=thresholds("green", (0.5, "orange"), (1, "red")),
                graph=common.BigValueGraphMode.AREA,
                target=query(
                    "histogram_quantile(0.95, sum by (le)"
                    f" (rate({of_instances(SCAN_TO_FLAG_BUCKET)}[5m])))",
                    "p95",
                ),
            )
        )
        .with_panel(
            stat_panel(
                6,
                "Dead-letter ratio (10m)",
                "Share of the messages read that went to the dead-letter topic over the last 10"
                " minutes (BordermonDeadLetterRatioHigh above 5%).",
                width=4,
                unit="percentunit",
                colors=thresholds("green", (0.01, "orange"), (0.05, "red")),
                graph=common.BigValueGraphMode.AREA,
                target=query(DEAD_LETTER_RATIO, "dead-lettered"),
            ).decimals(2)
        )
        .with_panel(
            stat_panel(
                7,
                "Consignments in state",
                "Consignment states held in Redis (sampled by the workers; all workers share one"
                " store).",
                width=4,
                unit="short",
                colors=thresholds("blue"),
                graph=common.BigValueGraphMode.AREA,
                target=query(f"max({CONSIGNMENTS_IN_STATE})", "consignments"),
            ).decimals(0)
        )
        .with_row(row(8, "Throughput and lag"))
        .with_panel(
            graph_panel(
                9,
                "Throughput",
                "Per second: valid events processed per worker, and over all selected workers"
                " rejected messages, re-sent duplicates and flags raised.",
                height=8,
                width=12,
                unit="short",
                axis="per second",
                targets=queries(
                    (f"sum by (instance) ({per_second(EVENTS_CONSUMED)})", "events {{instance}}"),
                    (f"sum({per_second(EVENTS_REJECTED)})", "rejected"),
                    (f"sum({per_second(EVENTS_DUPLICATE)})", "duplicates"),
                    (f"sum({per_second(FLAGS)})", "flags"),
                ),
            )
        )
        .with_panel(
            graph_panel(
                10,
                "Consumer lag",
                "Messages between the end of each crossings partition and the position of the"
                " worker that owns it. Growing lag means the workers do not keep up"
                " (BordermonConsumerLagGrowing).",
                height=8,
                width=12,
                unit="short",
                axis="messages",
                stacked=True,
                targets=queries(
                    (
                        f"max by (topic, partition) ({of_instances(CONSUMER_LAG)})",
                        "{{topic}} [{{partition}}]",
                    )
                ),
            ).fill_opacity(30)
        )
        .with_row(row(11, "Latency"))
        .with_panel(
            graph_panel(
                12,
                "Scan-to-flag latency",
                "From the Kafka timestamp of the scan that raised a flag (the one that completed"
                " a pair, or the exit of an export-without-permit) to the flag acknowledged by"
                " the flags topic: 50th, 95th and 99th percentiles over all rules, and the 95th"
                " for each rule. The SPEC promises a flag within a second (red line).",
                height=8,
                width=12,
                unit="s",
                axis="seconds",
                targets=queries(
                    *quantiles(
                        SCAN_TO_FLAG_BUCKET, "", ("0.5", "p50"), ("0.95", "p95"), ("0.99", "p99")
                    ),
                    *quantiles(SCAN_TO_FLAG_BUCKET, "rule", ("0.95", "p95 {{rule}}")),
                ),
            )
            .thresholds_style(
                common_builders.GraphThresholdsStyleConfig().mode(
                    common.GraphThresholdsStyleMode.LINE
                )
            )
            .thresholds(thresholds("transparent", (1, "red")))
        )
        .with_panel(
            graph_panel(
                13,
                "Redis round-trip latency",
                "One pipelined Redis round trip per batch to load the consignment states, and"
                " one (or two, with flags) to save them: 50th and 99th percentiles by operation.",
                height=8,
                width=12,
                unit="s",
                axis="seconds",
                targets=queries(
                    *quantiles(
                        REDIS_ROUND_TRIP_BUCKET,
                        "operation",
                        ("0.5", "p50 {{operation}}"),
                        ("0.99", "p99 {{operation}}"),
                    )
                ),
            )
        )
        .with_panel(
            graph_panel(
                14,
                "Batch duration",
                "Wall time to process one batch (validate, load state, apply, save, produce):"
                " 50th, 95th and 99th percentiles. One line per stage: `consignments` (the"
                " crossings topic) and `links` (the link sightings of relabel-to-ru).",
                height=8,
                width=12,
                unit="s",
                axis="seconds",
                targets=queries(
                    *quantiles(
                        BATCH_DURATION_BUCKET,
                        "stage",
                        ("0.5", "p50 {{stage}}"),
                        ("0.95", "p95 {{stage}}"),
                        ("0.99", "p99 {{stage}}"),
                    )
                ),
            )
        )
        .with_panel(
            graph_panel(
                15,
                "Batch size",
                "Messages per batch: mean and 95th percentile. Batches fill up to"
                " batch_max_events (500) under load and stay small when traffic is light. One"
                " line per stage: `consignments` (the crossings topic) and `links` (the link"
                " sightings of relabel-to-ru).",
                height=8,
                width=12,
                unit="short",
                axis="messages",
                targets=queries(
                    (
                        f"sum by (stage) ({per_second(BATCH_SIZE_SUM)})"
                        f" / sum by (stage) ({per_second(BATCH_SIZE_COUNT)})",
                        "mean {{stage}}",
                    ),
                    *quantiles(BATCH_SIZE_BUCKET, "stage", ("0.95", "p95 {{stage}}")),
                ),
            )
        )
        .with_row(row(16, "Bad input and errors"))
        .with_panel(
            graph_panel(
                17,
                "Dead letters by reason",
                "Messages written to the dead-letter topic per minute, by SPEC reason. The"
                " originals are in the dead-letter topic with `error`, `detail` and source"
                " offset headers.",
                height=8,
                width=12,
                unit="short",
                axis="per minute",
                stacked=True,
                targets=queries(
                    (f"60 * sum by (reason) ({per_second(DEAD_LETTERS)})", "{{reason}}")
                ),
            )
        )
        .with_panel(
            bar_gauge_panel(
                18,
                "Rejects by reason in range",
                "Messages rejected by validation in the selected time range, by reason.",
                height=8,
                width=6,
                color="orange",
                target=query(
                    "sort_desc(sum by (reason)"
                    f" (increase({of_instances(EVENTS_REJECTED)}[$__range])))",
                    "{{reason}}",
                    instant=True,
                ),
            )
        )
        .with_panel(
            per_minute_bars(
                19,
                "State store errors",
                "Failed Redis operations per minute, by kind; each is retried, and the batch is"
                " not committed until it succeeds (BordermonStateStoreErrors).",
                STORE_ERRORS,
                "kind",
            )
        )
        .with_row(row(20, "Workers"))
        .with_panel(worker_availability())
        .with_panel(versions_and_configuration())
        .with_panel(
            per_minute_bars(
                23,
                "State saves refused (single writer)",
                "Saves the state store refused: `fenced` = a worker found its partition claimed"
                " by another after a rebalance and stopped processing it (expected around"
                " rebalances, a few at most); `conflict` = another writer changed a state between"
                " load and save, the batch was re-applied (expected only when one consignment is"
                " scanned through differently partitioned producers).",
                SAVES_REFUSED,
                "reason",
            )
        )
        .with_panel(
            per_minute_bars(
                24,
                "States quarantined (undecodable)",
                "Stored states the workers could not decode, per minute, by store"
                " (`consignments`, `links`): corrupt bytes, or a state format of a newer bordermon"
                " read by an older worker during a rolling upgrade. Each restarted from empty,"
                " so a flag may have been missed; the raw bytes are at"
                " bordermon:state-corrupt:<id> or bordermon:link-corrupt:<link key>"
                " (BordermonStatesQuarantined).",
                STATES_QUARANTINED,
                "store",
            )
        )
    )


def red() -> dashboard_builders.FieldColor:
    return (
        dashboard_builders.FieldColor()
        .mode(dashboard_models.FieldColorModeId.FIXED)
        .fixed_color("red")
    )


def worker_availability() -> statetimeline.Panel:
    return (
        statetimeline.Panel()
        .id(21)
        .title("Worker availability")
        .description("Each worker's scrape status over time: up (green) or down (red).")
        .datasource(DATASOURCE)
        .height(7)
        .span(12)
        .fill_opacity(80)
        .line_width(0)
        .hide_from(common_builders.HideSeriesConfig().legend(False).tooltip(False).viz(False))
        .mappings(
            [
                dashboard_models.ValueMap(
                    options={
                        "0": dashboard_models.ValueMappingResult(text="down", color="red", index=0),
                        "1": dashboard_models.ValueMappingResult(text="up", color="green", index=1),
                    }
                )
            ]
        )
        .thresholds(thresholds("red", (1, "green")))
        .merge_values(True)
        .show_value(common.VisibilityMode.NEVER)
        .align_value(common.TimelineValueAlignment.LEFT)
        .row_height(0.9)
        .legend(
            common_builders.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.LIST)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
        .tooltip(
            common_builders.VizTooltipOptions()
            .mode(common.TooltipDisplayMode.SINGLE)
            .sort(common.SortOrder.NONE)
        )
        .with_target(query(WORKERS_UP, "{{instance}}"))
    )


def versions_and_configuration() -> table.Panel:
    config_labels = (
        "window_seconds, monitored_country, destinations_of_concern, watchlist_codes,"
        " crossings_topic, flags_topic"
    )
    return (
        table.Panel()
        .id(22)
        .title("Versions and configuration")
        .description(
            "Each worker's bordermon version and the detection configuration in force (window,"
            " monitored country, destinations of concern, watchlist size, topics)."
        )
        .datasource(DATASOURCE)
        .height(7)
        .span(12)
        .show_header(True)
        .cell_height(common.TableCellHeight.SM)
        .footer(
            common_builders.TableFooterOptions()
            .show(False)
            .reducer(["sum"])
            .count_rows(False)
            .fields([])
        )
        .with_target(
            query(
                f"{select(BUILD_INFO, BY_INSTANCE)} * on (job, instance)"
                f" group_left ({config_labels}) {CONFIG_INFO}",
                instant=True,
                query_format=prometheus_models.PromQueryFormat.TABLE,
            )
        )
        .with_transformation(
            dashboard_models.DataTransformerConfig(
                id_val="organize",
                options={
                    "excludeByName": {"Time": True, "Value": True, "__name__": True, "job": True},
                    "indexByName": {},
                    "renameByName": {},
                },
            )
        )
    )


# --- writing and checking ------------------------------------------------------------------------

DASHBOARDS: dict[str, Callable[[], dashboard_builders.Dashboard]] = {
    "border-flow.json": border_flow,
    "pipeline-health.json": pipeline_health,
}
"""File name in deploy/grafana/dashboards -> the function that builds it."""


def render(board: dashboard_builders.Dashboard) -> str:
    """Stable JSON: sorted keys, 2-space indent, non-ASCII kept (≤, ½), trailing newline."""
    encoder = JSONEncoder(sort_keys=True, indent=2, ensure_ascii=False)
    return encoder.encode(board.build()) + "\n"


def rendered() -> dict[str, str]:
    """File name -> the JSON the builders make for it now."""
    return {name: render(build()) for name, build in DASHBOARDS.items()}


def write(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in rendered().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def stale(directory: Path) -> list[str]:
    """The dashboard files of `directory` that differ from what the builders make (or are
    missing), and JSON files there that no builder makes."""
    expected = rendered()
    differ = [
        name
        for name, text in expected.items()
        if not (directory / name).is_file()
        or (directory / name).read_text(encoding="utf-8") != text
    ]
    unknown = [path.name for path in directory.glob("*.json") if path.name not in expected]
    return sorted(differ + unknown)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Generate bordermon's Grafana dashboards (JSON) from their Python builders.",
        epilog="examples:\n  python deploy/grafana/build_dashboards.py\n"
        "  python deploy/grafana/build_dashboards.py --check",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 and name each file that differs from what the builders make",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DASHBOARDS_DIR,
        help="the dashboards folder (default: %(default)s)",
    )
    arguments = parser.parse_args(argv)
    if arguments.check:
        differ = stale(arguments.out)
        for name in differ:
            print(
                f"{arguments.out / name} is not what the builders make:"
                " run python deploy/grafana/build_dashboards.py",
                file=sys.stderr,
            )
        return 1 if differ else 0
    for path in write(arguments.out):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
