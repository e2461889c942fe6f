"""The results table in Markdown, laid out like the methods' papers: J&F, J, F per benchmark."""

from __future__ import annotations

BENCHMARKS = {"ytvos": "Ref-YouTube-VOS"}
BASELINE_NAMES = {
    "all_background": "All background (trivial)",
    "all_objects": "Every object in the frame (trivial)",
}
METHOD_NAMES = {"refvos": "RefVOS"}


def results_table(reports: list[dict]) -> str:
    """Markdown for a list of evaluate reports (metrics/evaluate/*.json)."""
    benches = sorted({r["dataset"] for r in reports}, key=lambda d: list(BENCHMARKS).index(d))
    rows: dict[tuple[str, str], dict[str, dict]] = {}
    for r in reports:
        if not r.get("scored"):
            continue
        key = (METHOD_NAMES.get(r["method"], r["method"]), r["backbone"])
        rows.setdefault(key, {})[r["dataset"]] = r["model"]
        for name, scores in r["baselines"].items():
            rows.setdefault((BASELINE_NAMES[name], "—"), {})[r["dataset"]] = scores
    header = ["Method", "Backbone"]
    for bench in benches:
        split = next(r["split"] for r in reports if r["dataset"] == bench)
        title = f"{BENCHMARKS.get(bench, bench)} ({split})"
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
        for bench in benches:
            s = scores.get(bench)
            cells += [f"{100 * s[k]:.1f}" for k in ("J&F", "J", "F")] if s else ["—"] * 3
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
