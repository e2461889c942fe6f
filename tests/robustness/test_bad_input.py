"""Bad input in one place: every kind of input file crossed with the ways it goes wrong.

Each case copies a small valid tree (written by the demo writers), breaks one thing in it, runs
the code that reads that input, and checks the error type and that its one-line message names
the file (or key) and what was expected. Faults: missing, corrupt (truncated or garbage), wrong
type (e.g. a text file named .mp4), wrong shape or size, hostile (a path leading outside the
dataset, code hidden in a pickle) and oversized (a decompression bomb's header, or a size above
the limits of rvos.data.media).
"""

from __future__ import annotations

import re
import shutil

import pytest

from rvos.data import media

from .cases_clips import CASES as CLIP_CASES
from .cases_files import CASES as FILE_CASES
from .cases_videos import CASES as VIDEO_CASES
from .damage import MARKER, Case


def _params(cases: list[Case]) -> list:
    return [pytest.param(case, id=case.name) for case in cases]


CASES = FILE_CASES + VIDEO_CASES + CLIP_CASES


@pytest.mark.parametrize("case", _params(CASES))
def test_bad_input_is_refused_with_a_clear_message(case, trees, tmp_path, monkeypatch):
    root = tmp_path / case.tree
    shutil.copytree(trees[case.tree], root, symlinks=True)
    subject = case.prepare(root) if case.prepare is not None else root
    case.breaks(root)
    for name, value in case.limits.items():
        monkeypatch.setattr(media, name, value)
    with pytest.raises(case.error) as caught:
        case.reads(subject)
    message = str(caught.value)
    assert type(caught.value) is case.error, message
    assert re.search(case.message, message), message
    assert "\n" not in message
    assert not (tmp_path / MARKER).exists()
