"""Paths named by dataset files stay inside the dataset (rvos.data.paths)."""

import pytest

from rvos.data.paths import inside, plain_name, relative_path
from rvos.errors import UnsafePathError

WHERE = {"source": "meta.json", "key": "video id"}


@pytest.mark.parametrize("name", ["00000", "vid-1_a", "name with spaces", "é"])
def test_plain_names_pass(name):
    assert plain_name(name, **WHERE) == name


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "/etc", "a\\b", "a\x00b", 3, None])
def test_anything_but_a_plain_name_is_refused(name):
    with pytest.raises(UnsafePathError, match=r"meta.json: video id .*: expected a plain file"):
        plain_name(name, **WHERE)


def test_relative_paths_pass_normalised():
    assert str(relative_path("./a//b/./c.png", **WHERE)) == "a/b/c.png"


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("/etc/passwd", r"escapes the dataset root \(an absolute path\)"),
        ("a/../../b", r"escapes the dataset root \(it climbs out with '..'\)"),
        ("..", r"escapes the dataset root \(it climbs out with '..'\)"),
        ("a\\..\\b", r"expected a relative path \('/'-separated\)"),
        (".", "expected a relative path, got none"),
        (7, r"expected a relative path \('/'-separated\)"),
    ],
)
def test_paths_leaving_the_root_are_refused(value, why):
    with pytest.raises(UnsafePathError, match=r"meta.json: video id .*" + why):
        relative_path(value, **WHERE)


@pytest.fixture
def dataset(tmp_path):
    """<tmp>/data/videos/{kept/, inner -> kept, outer -> <tmp>/secret/, file.jpg -> ../secret}"""
    base = tmp_path / "data" / "videos"
    (base / "kept").mkdir(parents=True)
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "x.jpg").write_bytes(b"")
    (base / "inner").symlink_to(base / "kept", target_is_directory=True)
    (base / "outer").symlink_to(tmp_path / "secret", target_is_directory=True)
    (base / "file.jpg").symlink_to(tmp_path / "secret" / "x.jpg")
    return base


@pytest.mark.parametrize("value", ["kept", "inner", "file.jpg", "kept/00000.jpg", "not/yet"])
def test_links_that_stay_inside_and_linked_files_pass(dataset, value):
    assert inside(dataset, value, **WHERE) == dataset / value


@pytest.mark.parametrize("value", ["outer", "outer/x.jpg"])
def test_a_folder_linked_outside_is_refused(dataset, value):
    with pytest.raises(UnsafePathError) as err:
        inside(dataset, value, **WHERE)
    assert f"meta.json: video id {value!r} escapes {dataset} (a link leads to " in str(err.value)
    assert str(err.value).endswith("secret); expected a path inside it")


def test_a_linked_base_is_followed(dataset, tmp_path):
    """A dataset linked in from another disk is fine: only what lies below it is checked."""
    linked = tmp_path / "linked"
    linked.symlink_to(dataset, target_is_directory=True)
    assert inside(linked, "kept", **WHERE) == linked / "kept"
    with pytest.raises(UnsafePathError):
        inside(linked, "outer", **WHERE)
