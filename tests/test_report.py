"""The results table and chart of the report stage, on small reports shaped like
metrics/evaluate/*.json."""

from __future__ import annotations

import pytest
from PIL import Image

from rvos.report import (
    collect_results,
    column_title,
    kinds_grid,
    results_chart,
    results_figure,
    results_table,
)

EVERY_OBJECT = "Every object in the frame (trivial)"
ALL_BACKGROUND = "All background (trivial)"


def scores(jf: float) -> dict:
    return {"J&F": jf, "J": jf - 0.05, "F": jf + 0.05}


def split(model: float, kinds: dict[str, float] | None = None) -> dict:
    """A scored split with both baselines and, when `kinds` is given, a by_kind breakdown."""
    result = {
        "expressions": 10,
        "scored": True,
        "model": scores(model),
        "baselines": {"all_background": scores(0.06), "all_objects": scores(0.3)},
    }
    if kinds:
        result["by_kind"] = {
            kind: {
                "expressions": 5,
                "model": scores(jf),
                "all_background": scores(0.0),
                "all_objects": scores(0.4),
            }
            for kind, jf in kinds.items()
        }
    return result


def report(dataset: str, method: str, splits: dict) -> dict:
    return {"dataset": dataset, "method": method, "backbone": "resnet18", "splits": splits}


@pytest.fixture
def reports() -> list[dict]:
    """Given out of the papers' order: ReferFormer first, MeViS before Ref-YouTube-VOS; an
    unscored split; a DAVIS report without baselines."""
    unscored = {"expressions": 26, "scored": False, "submission": "x.zip"}
    davis = scores(0.58)
    return [
        report("ytvos", "referformer", {"valid": split(0.35)}),
        report("mevis", "refvos", {"valid_u": split(0.45), "valid": unscored}),
        report("davis", "refvos", {"valid": {"expressions": 3, "scored": True, "model": davis}}),
        report("ytvos", "refvos", {"valid": split(0.57), "holdout": split(0.6)}),
    ]


@pytest.fixture
def with_kinds(reports) -> list[dict]:
    reports[1]["splits"]["valid_u"] = split(0.45, {"appearance": 0.8, "motion_only": 0.21})
    reports[0]["splits"]["valid"] = split(0.35, {"appearance": 0.44})
    return reports


def test_rows_and_columns_in_papers_order(reports):
    results = collect_results(reports)
    assert results.columns == [
        ("ytvos", "valid"),
        ("ytvos", "holdout"),
        ("davis", "valid"),
        ("mevis", "valid_u"),
    ]
    assert list(results.rows) == [
        ("RefVOS", "resnet18"),
        (ALL_BACKGROUND, "—"),
        (EVERY_OBJECT, "—"),
        ("ReferFormer", "resnet18"),
    ]
    assert ("davis", "valid") not in results.rows[(EVERY_OBJECT, "—")]
    assert results.rows[("RefVOS", "resnet18")][("ytvos", "holdout")]["J&F"] == 0.6
    assert not results.kinds


def test_table_shows_the_shared_rows_and_columns(reports):
    results = collect_results(reports)
    lines = results_table(reports).splitlines()
    header = lines[4].strip("| ").split(" | ")
    assert header[2::3] == [f"{column_title(c)} J&F" for c in results.columns]
    body = [line.strip("| ").split(" | ") for line in lines[6:]]
    assert [tuple(cells[:2]) for cells in body] == list(results.rows)
    assert body[0][2:5] == ["57.0", "52.0", "62.0"]
    assert body[1][8:11] == ["—"] * 3  # no baselines on DAVIS: a gap, not a zero
    assert "Ref-YouTube-VOS (held-out train) J&F" in header


def test_chart_draws_the_shared_rows_and_columns(reports):
    results = collect_results(reports)
    (ax,) = results_figure(reports).axes
    assert ax.get_title() == "J&F by benchmark"
    ticks = [t.get_text().replace("\n", " ") for t in ax.get_xticklabels()]
    assert ticks == [column_title(c) for c in results.columns]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["RefVOS (resnet18)", ALL_BACKGROUND, EVERY_OBJECT, "ReferFormer (resnet18)"]
    bars = [len(c) for c in ax.containers]
    assert bars == [len(scores) for scores in results.rows.values()] == [4, 3, 3, 1]
    assert ax.containers[0].datavalues.tolist() == pytest.approx([57.0, 60.0, 58.0, 45.0])
    labels = [t.get_text() for t in ax.texts]
    assert labels.count("57.0") == 1 and "6.0" in labels and len(labels) == sum(bars)


def test_kinds_panel_only_with_by_kind(with_kinds):
    groups, rows = kinds_grid(collect_results(with_kinds))
    assert groups == [
        (("ytvos", "valid"), "appearance"),
        (("mevis", "valid_u"), "appearance"),
        (("mevis", "valid_u"), "motion_only"),
    ]
    assert list(rows) == [("RefVOS", "resnet18"), (EVERY_OBJECT, "—"), ("ReferFormer", "resnet18")]
    assert rows[(EVERY_OBJECT, "—")][groups[0]]["J&F"] == 0.4
    top, kinds = results_figure(with_kinds).axes
    assert kinds.get_title() == "J&F by kind of demo expression"
    ticks = [t.get_text().split("\n")[0] for t in kinds.get_xticklabels()]
    assert ticks == ["appearance", "appearance", "motion only"]
    assert [len(c) for c in kinds.containers] == [2, 3, 1]


def test_chart_png_decodes(tmp_path, with_kinds):
    plain = [report("ytvos", "refvos", {"valid": split(0.57)})]
    one = results_chart(plain, tmp_path / "plain.png")
    two = results_chart(with_kinds, tmp_path / "sub" / "kinds.png")
    assert one == tmp_path / "plain.png" and two.is_file()
    with Image.open(one) as a, Image.open(two) as b:
        a.load()
        b.load()
        assert a.format == b.format == "PNG"
        assert a.width >= 800 and 400 <= a.height < b.height <= 1000
    assert not [p for p in tmp_path.rglob("*.tmp")]  # written atomically, nothing left behind


def test_motion_only_table_compares_each_method_with_frame_by_frame(with_kinds):
    with_kinds.append(report("mevis", "bifit", {"valid_u": split(0.3, {"motion_only": 0.33})}))
    lines = results_table(with_kinds).splitlines()
    start = lines.index("## Motion-only expressions")
    end = lines.index("## Demo expressions by kind")
    body = [line.strip("| ").split(" | ") for line in lines[start:end] if line.startswith("| ")]
    assert body[0][:2] == ["Method", "Backbone"]
    rows = {cells[0]: cells for cells in body[1:]}
    assert list(rows) == ["RefVOS", "BIFIT"]
    assert rows["RefVOS"][4:8] == ["21.0", "16.0", "26.0", "—"]
    assert rows["BIFIT"][4:9] == ["33.0", "28.0", "38.0", "+12.0", "40.0"]


def test_no_motion_only_table_without_those_expressions(reports):
    assert "## Motion-only expressions" not in results_table(reports)
