"""The results, laid out like the methods' papers: J&F, J, F per benchmark, as a Markdown table
and as a bar chart (PNG) drawn from the same rows and columns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from rvos.io import atomic_open

BENCHMARKS = {"ytvos": "Ref-YouTube-VOS", "davis": "Ref-DAVIS17", "mevis": "MeViS"}
SPLIT_NAMES = {"holdout": "held-out train"}
BASELINE_NAMES = {
    "all_background": "All background (trivial)",
    "all_objects": "Every object in the frame (trivial)",
}
METHOD_NAMES = {
    "refvos": "RefVOS",
    "referformer": "ReferFormer",
    "bifit": "BIFIT",
    "dmformer": "DMFormer",
    "vlp_rvos": "VLP-RVOS",
}
FRAME_BY_FRAME = "RefVOS"  # the ablation's reference: a model that never sees two frames
MOTION_ONLY = "motion_only"

Column = tuple[str, str]  # (dataset, split) as the reports name them
Row = tuple[str, str]  # (method or baseline display name, backbone)


class KindScore(NamedTuple):
    """One method's scores on the demo expressions of one kind in one benchmark column."""

    row: Row
    column: Column
    kind: str
    entry: dict  # {"expressions": n, "model": {...}, "all_objects": {...}, ...}


@dataclass
class Results:
    """The table's columns and rows, computed once so the Markdown and the chart agree."""

    columns: list[Column] = field(default_factory=list)
    rows: dict[Row, dict[Column, dict]] = field(default_factory=dict)
    kinds: list[KindScore] = field(default_factory=list)


def collect_results(reports: list[dict]) -> Results:
    """Scored splits of evaluate reports (metrics/evaluate/*.json) as columns × rows, methods in
    METHOD_NAMES order and benchmarks in BENCHMARKS order, baselines after their first method."""
    results = Results()
    for r in _ordered(reports):
        key = (METHOD_NAMES.get(r["method"], r["method"]), r["backbone"])
        for split, result in r["splits"].items():
            column = (r["dataset"], split)
            results.kinds += [
                KindScore(key, column, kind, entry)
                for kind, entry in sorted(result.get("by_kind", {}).items())
            ]
            if not result.get("scored"):
                continue
            if column not in results.columns:
                results.columns.append(column)
            results.rows.setdefault(key, {})[column] = result["model"]
            for name, scores in result.get("baselines", {}).items():
                results.rows.setdefault((BASELINE_NAMES[name], "—"), {})[column] = scores
    return results


def _ordered(reports: list[dict]) -> list[dict]:
    """Reports in the papers' order, so table rows and chart bars read the same way."""
    order = {name: i for i, name in enumerate(BENCHMARKS)}
    methods = {name: i for i, name in enumerate(METHOD_NAMES)}
    return sorted(
        reports,
        key=lambda r: (methods.get(r["method"], len(methods)), order.get(r["dataset"], len(order))),
    )


def column_title(column: Column) -> str:
    """A benchmark column as readers know it, e.g. "Ref-YouTube-VOS (held-out train)"."""
    bench, split = column
    return f"{BENCHMARKS.get(bench, bench)} ({SPLIT_NAMES.get(split, split)})"


def results_table(reports: list[dict]) -> str:
    """Markdown for a list of evaluate reports (metrics/evaluate/*.json)."""
    results = collect_results(reports)
    header = ["Method", "Backbone"]
    for column in results.columns:
        header += [f"{column_title(column)} J&F", "J", "F"]
    lines = [
        "# Results",
        "",
        "J&F, J and F are means over expressions (×100). Produced by `dvc repro`.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for (method, backbone), scores in results.rows.items():
        cells = [method, backbone]
        for column in results.columns:
            s = scores.get(column)
            cells += [f"{100 * s[k]:.1f}" for k in ("J&F", "J", "F")] if s else ["—"] * 3
        lines.append("| " + " | ".join(cells) + " |")
    tables = _motion_only_table(results.kinds) + _kinds_table(results.kinds)
    return "\n".join(lines + tables) + "\n"


def _motion_only_table(kinds: list[KindScore]) -> list[str]:
    """The ablation on the expressions only motion resolves ("the one moving left" among
    look-alikes): each method's J&F, J, F and its gain over the frame-by-frame RefVOS."""
    entries = [k for k in kinds if k.kind == MOTION_ONLY]
    if not entries:
        return []
    reference = {k.column: k.entry["model"]["J&F"] for k in entries if k.row[0] == FRAME_BY_FRAME}
    lines = []
    for (method, backbone), column, _, entry in entries:
        scores = entry["model"]
        cells = [method, backbone, column_title(column), entry["expressions"]]
        cells += [f"{100 * scores[k]:.1f}" for k in ("J&F", "J", "F")]
        gain = 100 * (scores["J&F"] - reference[column]) if column in reference else None
        cells.append("—" if gain is None or method == FRAME_BY_FRAME else f"{gain:+.1f}")
        cells.append(f"{100 * entry['all_objects']['J&F']:.1f}")
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    header = (
        "| Method | Backbone | Benchmark | Count | J&F | J | F | J&F gain over RefVOS "
        "| Every object J&F |"
    )
    intro = (
        "Expressions that name no appearance, only a motion, and refer to one object, often "
        "one of several identical ones. RefVOS segments frame by frame and cannot see motion, "
        "so its score is what guessing among the objects gives."
    )
    return ["", "## Motion-only expressions", "", intro, "", header, "|" + "---|" * 9, *lines]


def _kinds_table(kinds: list[KindScore]) -> list[str]:
    """J&F per kind of demo expression (appearance, motion, motion only, ...), where the
    evaluation knew the kinds: it shows what a method can tell apart."""
    lines = []
    for (method, backbone), column, kind, entry in kinds:
        cells = [method, backbone, column_title(column), _kind_name(kind), entry["expressions"]]
        cells += [f"{100 * entry[name]['J&F']:.1f}" for name in ("model", "all_objects")]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    if not lines:
        return []
    header = (
        "| Method | Backbone | Benchmark | Expressions of kind | Count | J&F | Every object J&F |"
    )
    intro = "J&F by the kind of expression the demo generator wrote."
    return ["", "## Demo expressions by kind", "", intro, "", header, "|" + "---|" * 7, *lines]


def _kind_name(kind: str) -> str:
    return kind.replace("_", " ")


Group = tuple[Column, str]  # a benchmark column and a kind of expression


def kinds_grid(results: Results) -> tuple[list[Group], dict[Row, dict[Group, dict]]]:
    """The kind panel's groups, in the table's column order, and its bars: each method's model
    J&F and the "every object" baseline (the same for every method, so drawn once)."""
    rows: dict[Row, dict[Group, dict]] = {}
    baseline = (BASELINE_NAMES["all_objects"], "—")
    for row, column, kind, entry in results.kinds:
        rows.setdefault(row, {})[(column, kind)] = entry["model"]
        rows.setdefault(baseline, {})[(column, kind)] = entry["all_objects"]
    order = {column: i for i, column in enumerate(results.columns)}
    groups = {(k.column, k.kind) for k in results.kinds}
    return sorted(groups, key=lambda g: (order.get(g[0], len(order)), g)), rows


def results_chart(reports: list[dict], path: str | Path) -> Path:
    """Save `results_figure` as a PNG; a reader never sees a half-written file."""
    path = Path(path)
    with atomic_open(path, "wb") as handle:
        results_figure(reports).savefig(handle, format="png", dpi=100)
    return path


def results_figure(reports: list[dict]) -> Figure:
    """J&F (×100) as grouped bars per benchmark column, one bar per table row, and, where the
    reports know the demo's kinds of expression, a second panel per kind: the table at a glance.

    Uses the Agg canvas directly (no pyplot state), so it is safe in workers and tests.
    """
    results = collect_results(reports)
    groups, kind_rows = kinds_grid(results)
    labels = [_two_lines(c) for c in results.columns]
    kind_labels = [f"{_kind_name(k)}\n{_two_lines(c)}" for c, k in groups]
    bars = max(len(labels) * max(1, len(results.rows)), len(kind_labels) * max(1, len(kind_rows)))
    panels = 2 if groups else 1
    fig = Figure(figsize=(min(max(8.0, 0.45 * bars + 4.0), 40.0), 4.5 * panels), layout="tight")
    FigureCanvasAgg(fig)
    axes = fig.subplots(panels, 1, squeeze=False)[:, 0]
    styles = _styles([*results.rows, *kind_rows])
    _grouped_bars(axes[0], labels, results.rows, results.columns, styles)
    axes[0].set_title("J&F by benchmark")
    if groups:
        _grouped_bars(axes[1], kind_labels, kind_rows, groups, styles)
        axes[1].set_title("J&F by kind of demo expression")
        for g in range(1, len(groups)):
            if groups[g][0] != groups[g - 1][0]:  # a rule between benchmarks
                axes[1].axvline(g - 0.5, color="0.6", linewidth=0.8)
    return fig


def _two_lines(column: Column) -> str:
    """A column title broken before the split, so neighbouring tick labels do not overlap."""
    return column_title(column).replace(" (", "\n(", 1)


# Greys and hatches for the trivial baselines, so a trivial score is never read as a method's.
_BASELINE_STYLES = {
    BASELINE_NAMES["all_background"]: ("0.45", "//"),
    BASELINE_NAMES["all_objects"]: ("0.8", "\\\\"),
}


def _styles(rows: list[Row]) -> dict[Row, dict]:
    """One colour per method row, the same in both panels; each baseline its grey and hatch."""
    methods = [row for row in dict.fromkeys(rows) if row[0] not in _BASELINE_STYLES]
    styles = {row: {"color": f"C{i % 10}"} for i, row in enumerate(methods)}
    for row in rows:
        if row[0] in _BASELINE_STYLES:
            colour, hatch = _BASELINE_STYLES[row[0]]
            styles[row] = {"color": colour, "hatch": hatch, "edgecolor": "0.2"}
    return styles


def _label(row: Row) -> str:
    """A legend entry: "RefVOS (resnet18)", or a baseline's name alone (it has no backbone)."""
    return row[0] if row[0] in _BASELINE_STYLES else f"{row[0]} ({row[1]})"


def _grouped_bars(
    ax: Axes, labels: list[str], rows: dict[Row, dict], keys: list, styles: dict[Row, dict]
) -> None:
    """Bars of J&F ×100 for each row at each of `keys` (labelled `labels`), values on top;
    a row that lacks a key leaves a gap rather than a zero that would read as a score."""
    width = 0.8 / max(1, len(rows))
    for i, (row, scores) in enumerate(rows.items()):
        at = [(g, 100 * scores[k]["J&F"]) for g, k in enumerate(keys) if k in scores]
        x = [g - 0.4 + (i + 0.5) * width for g, _ in at]
        drawn = ax.bar(x, [v for _, v in at], width, label=_label(row), **styles[row])
        ax.bar_label(drawn, fmt="%.1f", fontsize=8, padding=1)
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlim(-0.5, max(1, len(labels)) - 0.5)
    ax.set_ylim(0, 108)
    ax.set_ylabel("J&F (×100)")
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    if rows:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
