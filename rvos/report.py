"""The results table in Markdown, laid out like the methods' papers: J&F, J, F per benchmark."""

from __future__ import annotations

BENCHMARKS = {"ytvos": "Ref-YouTube-VOS", "davis": "Ref-DAVIS17", "mevis": "MeViS"}
SPLIT_NAMES = {"holdout": "held-out train"}
BASELINE_NAMES = {
    "all_background": "All background (trivial)",
    "all_objects": "Every object in the frame (trivial)",
}
METHOD_NAMES = {"refvos": "RefVOS", "referformer": "ReferFormer"}


def results_table(reports: list[dict]) -> str:
    """Markdown for a list of evaluate reports (metrics/evaluate/*.json)."""
    order = {name: i for i, name in enumerate(BENCHMARKS)}
    methods = {name: i for i, name in enumerate(METHOD_NAMES)}
    reports = sorted(
        reports,
        key=lambda r: (methods.get(r["method"], len(methods)), order.get(r["dataset"], len(order))),
    )
    columns: list[tuple[str, str]] = []
    rows: dict[tuple[str, str], dict[tuple[str, str], dict]] = {}
    for r in reports:
        for split, result in r["splits"].items():
            if not result.get("scored"):
                continue
            column = (r["dataset"], split)
            if column not in columns:
                columns.append(column)
            key = (METHOD_NAMES.get(r["method"], r["method"]), r["backbone"])
            rows.setdefault(key, {})[column] = result["model"]
            for name, scores in result.get("baselines", {}).items():
                rows.setdefault((BASELINE_NAMES[name], "—"), {})[column] = scores
    header = ["Method", "Backbone"]
    for bench, split in columns:
        title = f"{BENCHMARKS.get(bench, bench)} ({SPLIT_NAMES.get(split, split)})"
        header += [f"{title} J&F", "J", "F"]
    lines = [
        "# Results",
        "",
        "J&F, J and F are means over expressions (×100). Produced by `dvc repro`.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for (method, backbone), scores in rows.items():
        cells = [method, backbone]
        for column in columns:
            s = scores.get(column)
            cells += [f"{100 * s[k]:.1f}" for k in ("J&F", "J", "F")] if s else ["—"] * 3
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines + _kinds_table(reports)) + "\n"


def _kinds_table(reports: list[dict]) -> list[str]:
    """J&F per kind of demo expression (appearance, motion, motion only, ...), where the
    evaluation knew the kinds: it shows what a method can tell apart."""
    lines = []
    for r in reports:
        method = METHOD_NAMES.get(r["method"], r["method"])
        for split, result in r["splits"].items():
            bench = (
                f"{BENCHMARKS.get(r['dataset'], r['dataset'])} ({SPLIT_NAMES.get(split, split)})"
            )
            for kind, entry in sorted(result.get("by_kind", {}).items()):
                cells = [method, r["backbone"], bench, kind.replace("_", " "), entry["expressions"]]
                cells += [f"{100 * entry[name]['J&F']:.1f}" for name in ("model", "all_objects")]
                lines.append("| " + " | ".join(map(str, cells)) + " |")
    if not lines:
        return []
    header = (
        "| Method | Backbone | Benchmark | Expressions of kind | Count | J&F | Every object J&F |"
    )
    intro = "J&F by the kind of expression the demo generator wrote."
    return ["", "## Demo expressions by kind", "", intro, "", header, "|" + "---|" * 7, *lines]
