"""The results table in Markdown, laid out like the methods' papers: J&F, J, F per benchmark."""

from __future__ import annotations

BENCHMARKS = {"ytvos": "Ref-YouTube-VOS", "davis": "Ref-DAVIS17", "mevis": "MeViS"}
SPLIT_NAMES = {"holdout": "held-out train"}
BASELINE_NAMES = {
    "all_background": "All background (trivial)",
    "all_objects": "Every object in the frame (trivial)",
}
METHOD_NAMES = {"refvos": "RefVOS"}


def results_table(reports: list[dict]) -> str:
    """Markdown for a list of evaluate reports (metrics/evaluate/*.json)."""
    order = {name: i for i, name in enumerate(BENCHMARKS)}
    reports = sorted(reports, key=lambda r: order.get(r["dataset"], len(order)))
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
    return "\n".join(lines) + "\n"
