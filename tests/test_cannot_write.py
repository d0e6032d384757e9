"""One table of failed-write sentences (core.fileio.CANNOT_WRITE), the same from every caller."""

from __future__ import annotations

import os

import pytest

from core.data.download import DownloadError, _writing_to
from core.fileio import CANNOT_WRITE
from core.runs.store import RunsFolderError, writing_to
from pages._common.errors import cannot


def failed_write(code: int) -> OSError:
    return OSError(code, os.strerror(code), "/home/pawlab/file")


@pytest.mark.parametrize("code", sorted(CANNOT_WRITE))
def test_each_code_gets_its_sentence_from_each_caller(code, tmp_path):
    wording = CANNOT_WRITE[code]
    with pytest.raises(DownloadError) as download, _writing_to(tmp_path):
        raise failed_write(code)
    assert str(download.value) == f"PawLab cannot write to {tmp_path} ({wording.reason})."

    with pytest.raises(RunsFolderError) as runs, writing_to(tmp_path):
        raise failed_write(code)
    assert str(runs.value) == f"PawLab cannot write to {tmp_path} ({wording.reason})."
    assert runs.value.errno == code

    assert cannot("save", failed_write(code)) == f"Could not save: {wording.page} (`/home/pawlab/file`)."


def test_other_errors_keep_their_own_words(tmp_path):
    with pytest.raises(FileExistsError), writing_to(tmp_path):
        raise FileExistsError(17, "File exists")
    with pytest.raises(DownloadError, match=r"\(file exists\)\.$"), _writing_to(tmp_path):
        raise FileExistsError(17, "File exists")
