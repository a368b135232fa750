"""An LMS download becomes submitted/<student>/<assignment>/, and nothing is lost on the way."""
from __future__ import annotations

import io
import zipfile

import pytest

from autograder.collect import collect, main

NB = b'{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'


def zip_bytes(files):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_canvas_zip_with_notebooks_student_zips_and_late_marks(tmp_path):
    download = tmp_path / "submissions.zip"
    download.write_bytes(zip_bytes({
        "smithjane_1234_5678_01_loops_and_blocking (1).ipynb": NB,
        "doejohn_LATE_2222_3333_02_vectorization_and_fusion.ipynb": NB,
        "leeann_4444_5555_work.zip": zip_bytes({"hw/03_quantization.ipynb": NB, "__MACOSX/._x": b""}),
        "readme.txt": b"not a submission",
    }))
    result = collect(download, tmp_path / "course", "acceleration", "canvas")
    submitted = tmp_path / "course" / "submitted"
    assert (submitted / "smithjane" / "acceleration" / "01_loops_and_blocking (1).ipynb").read_bytes() == NB
    assert (submitted / "doejohn" / "acceleration" / "02_vectorization_and_fusion.ipynb").is_file()
    assert (submitted / "leeann" / "acceleration" / "03_quantization.ipynb").is_file()
    assert result.unmatched == ["readme.txt"]


def test_moodle_folders_and_a_custom_pattern(tmp_path):
    download = tmp_path / "moodle"
    (download / "Jane Smith_77_assignsubmission_file_").mkdir(parents=True)
    (download / "Jane Smith_77_assignsubmission_file_" / "01_loops_and_blocking.ipynb").write_bytes(NB)
    collect(download, tmp_path / "course", "acceleration", "moodle")
    assert (tmp_path / "course/submitted/Jane_Smith/acceleration/01_loops_and_blocking.ipynb").is_file()
    other = tmp_path / "flat"
    other.mkdir()
    (other / "s123--01_loops_and_blocking.ipynb").write_bytes(NB)
    collect(other, tmp_path / "course", "acceleration", r"^(?P<student>s\d+)--(?P<file>.+)$")
    assert (tmp_path / "course/submitted/s123/acceleration/01_loops_and_blocking.ipynb").is_file()


def test_a_changed_resubmission_keeps_the_earlier_file(tmp_path):
    download = tmp_path / "d"
    download.mkdir()
    (download / "smithjane_1_2_01_loops_and_blocking.ipynb").write_bytes(NB)
    collect(download, tmp_path / "course", "acceleration", "canvas")
    (download / "smithjane_1_2_01_loops_and_blocking.ipynb").write_bytes(NB.replace(b"[]", b"[ ]"))
    result = collect(download, tmp_path / "course", "acceleration", "canvas")
    assert len(result.replaced) == 1
    assert (tmp_path / "course" / result.replaced[0]).read_bytes() == NB


def test_bad_pattern_and_unmatched_files_are_errors(tmp_path, capsys):
    download = tmp_path / "d"
    download.mkdir()
    (download / "random.ipynb").write_bytes(NB)
    with pytest.raises(ValueError, match="named groups"):
        collect(download, tmp_path, "acceleration", r"(?P<student>.+)")
    assert main([str(download), "--root", str(tmp_path)]) == 1
    assert "random.ipynb" in capsys.readouterr().err
