"""An LMS download becomes submitted/<student>/<assignment>/, and nothing is lost on the way.

Every file of a download is written by a student: the hostile cases below try to put files in
another student's folder, stop collection for the class, or exhaust disk, memory and time. Each
asserts the exact files that result and the reason printed.
"""
from __future__ import annotations

import io
import os
import random
import socket
import stat
import struct
import unicodedata
import zipfile
from pathlib import Path

import pytest

from autograder.collect.lms import (CHUNK_BYTES, MAX_ARCHIVE_MEMBERS, MAX_EXPANSION_RATIO, RATIO_FREE_BYTES,
                                    CollectLimits, Collected, Opened, Refused, assign_ids, collect, copy_bounded,
                                    main, open_regular, report_lines, student_id)
from autograder.course import valid_student_id

NB = b'{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'
A = "acceleration"
LOCAL_HEADER, CENTRAL_HEADER = b"PK\x03\x04", b"PK\x01\x02"
# field -> (offset in the local header, offset in the central header, struct format)
HEADER_FIELDS = {"flags": (6, 8, "<H"), "method": (8, 10, "<H"), "file_size": (22, 24, "<I")}


def zip_bytes(files, compression=zipfile.ZIP_DEFLATED) -> bytes:
    """A zip of ``{name or ZipInfo: bytes}``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def patch_headers(blob: bytes, name: bytes, **fields: int) -> bytes:
    """``blob`` with ``fields`` of member ``name``'s local and central headers set."""
    data = bytearray(blob)
    for signature, name_at, which in ((LOCAL_HEADER, 30, 0), (CENTRAL_HEADER, 46, 1)):
        start = data.find(signature)
        while start >= 0:
            if data[start + name_at:start + name_at + len(name)] == name:
                for key, value in fields.items():
                    struct.pack_into(HEADER_FIELDS[key][2], data, start + HEADER_FIELDS[key][which], value)
            start = data.find(signature, start + 1)
    return bytes(data)


def files_under(root: Path) -> dict[str, bytes]:
    """Every file below ``root`` (``.grading`` included) -> its bytes; links shown as ``-> target``."""
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            found[path.relative_to(root).as_posix()] = b"-> " + os.fsencode(os.readlink(path))
        elif path.is_file():
            found[path.relative_to(root).as_posix()] = path.read_bytes()
    return found


def run(download: Path, root: Path, capsys, fmt: str = "canvas") -> tuple[int, str, str]:
    code = main([str(download), "--root", str(root), "--assignment", A, "--format", fmt])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def printed_problems(result: Collected) -> list[str]:
    """The lines ``make collect`` prints to stderr for ``result``, its summary line left out."""
    return report_lines(result, Path("course"), A, "canvas")[1][:-1]


def one_zip(tmp_path: Path, files: dict) -> Path:
    download = tmp_path / "submissions.zip"
    download.write_bytes(zip_bytes(files))
    return download


@pytest.fixture(scope="module")
def zeros_50mb_zip() -> bytes:
    """A student's zip, about 50 kB on disk, whose ``zeros.bin`` expands to 50 MB."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("zeros.bin", "w") as member:
            for _ in range(50):
                member.write(bytes(10**6))
        archive.writestr("01_loops_and_blocking.ipynb", NB)
    return buffer.getvalue()


# -- the formats --------------------------------------------------------------------------------
def test_canvas_zip_with_notebooks_student_zips_and_late_marks(tmp_path, capsys):
    download = one_zip(tmp_path, {
        "smithjane_1234_5678_01_loops_and_blocking (1).ipynb": NB,
        "doejohn_LATE_2222_3333_02_vectorization_and_fusion.ipynb": NB,
        "leeann_4444_5555_work.zip": zip_bytes({"hw/03_quantization.ipynb": NB, "__MACOSX/._x": b"",
                                                "hw/.ipynb_checkpoints/03_quantization-checkpoint.ipynb": NB,
                                                "hw/.DS_Store": b"", "hw/": b""}),
        "__MACOSX/._smithjane_1234_5678_x.ipynb": b"",
        "readme.txt": b"not a submission",
    })
    code, out, err = run(download, tmp_path / "course", capsys)
    assert files_under(tmp_path / "course") == {
        f"submitted/doejohn/{A}/02_vectorization_and_fusion.ipynb": NB,
        f"submitted/leeann/{A}/03_quantization.ipynb": NB,
        f"submitted/smithjane/{A}/01_loops_and_blocking (1).ipynb": NB,
    }
    assert code == 1
    assert out.startswith("collected 3 files for 3 students into ")
    assert err.splitlines() == ["unmatched readme.txt: its name does not match --format 'canvas'",
                                "0 refused and 1 unmatched; every other file was collected"]


def test_moodle_folders_and_a_custom_pattern(tmp_path, capsys):
    download = tmp_path / "moodle"
    (download / "Jane Smith_77_assignsubmission_file_").mkdir(parents=True)
    (download / "Jane Smith_77_assignsubmission_file_" / "01_loops_and_blocking.ipynb").write_bytes(NB)
    (download / "Jane Smith_77_assignsubmission_onlinetext_").mkdir()
    (download / "Jane Smith_77_assignsubmission_onlinetext_" / "onlinetext.html").write_bytes(b"<p>hi</p>")
    assert run(download, tmp_path / "course", capsys, "moodle")[0] == 0
    other = tmp_path / "flat"
    other.mkdir()
    (other / "s123--01_loops_and_blocking.ipynb").write_bytes(NB)
    assert run(other, tmp_path / "course", capsys, r"^(?P<student>s\d+)--(?P<file>.+)$")[0] == 0
    assert files_under(tmp_path / "course") == {
        f"submitted/Jane_Smith/{A}/01_loops_and_blocking.ipynb": NB,
        f"submitted/Jane_Smith/{A}/onlinetext.html": b"<p>hi</p>",
        f"submitted/s123/{A}/01_loops_and_blocking.ipynb": NB,
    }


def test_a_changed_resubmission_keeps_the_earlier_file(tmp_path, capsys):
    download = tmp_path / "d"
    download.mkdir()
    (download / "smithjane_1_2_01_loops_and_blocking.ipynb").write_bytes(NB)
    collect(download, tmp_path / "course", A, "canvas")
    changed = NB.replace(b"[]", b"[ ]")
    (download / "smithjane_1_2_01_loops_and_blocking.ipynb").write_bytes(changed)
    result = collect(download, tmp_path / "course", A, "canvas")
    assert len(result.replaced) == 1
    assert (tmp_path / "course" / result.replaced[0]).read_bytes() == NB
    assert (tmp_path / "course/submitted/smithjane" / A / "01_loops_and_blocking.ipynb").read_bytes() == changed
    assert collect(download, tmp_path / "course", A, "canvas").replaced == []   # unchanged: nothing moved


def test_two_files_of_one_name_in_one_zip_keep_both(tmp_path, capsys):
    work = zip_bytes({"a/01.ipynb": b"first", "b/01.ipynb": b"second"})
    download = one_zip(tmp_path, {"smithjane_1_2_work.zip": work})
    code, out, _ = run(download, tmp_path / "course", capsys)
    found = files_under(tmp_path / "course")
    assert code == 0 and found.pop(f"submitted/smithjane/{A}/01.ipynb") == b"second"
    [(backup, data)] = found.items()
    assert backup.startswith(".grading/replaced/") and backup.endswith(f"/smithjane/{A}/01.ipynb")
    assert data == b"first" and f"kept the earlier version at {backup}" in out


def test_bad_pattern_and_unmatched_files_are_errors(tmp_path, capsys):
    download = tmp_path / "d"
    download.mkdir()
    (download / "random.ipynb").write_bytes(NB)
    with pytest.raises(ValueError, match="named groups"):
        collect(download, tmp_path, A, r"(?P<student>.+)")
    assert main([str(download), "--root", str(tmp_path)]) == 1
    assert "unmatched random.ipynb" in capsys.readouterr().err
    assert main([str(tmp_path / "missing"), "--root", str(tmp_path)]) == 1
    not_a_zip = tmp_path / "download.txt"
    not_a_zip.write_bytes(b"hello")
    assert main([str(not_a_zip), "--root", str(tmp_path)]) == 1
    assert "neither a folder nor a zip" in capsys.readouterr().err


# -- 1. a file stays with the student whose upload it came from -----------------------------------
def test_a_name_inside_a_canvas_zip_never_routes_to_another_student(tmp_path, capsys):
    download = one_zip(tmp_path, {
        "smithjane_1_2_work.zip": zip_bytes({
            "doejohn_3_4_01_loops_and_blocking.ipynb": b"from jane",
            "doejohn_3_4_sub/doejohn_3_4_02.ipynb": b"also from jane",
            "doejohn_3_4_inner.zip": zip_bytes({"doejohn_3_4_03.ipynb": b"nested"}),
        }),
        "doejohn_3_4_01_loops_and_blocking.ipynb": NB,
    })
    code, _, err = run(download, tmp_path / "course", capsys)
    assert code == 0 and err == ""
    assert files_under(tmp_path / "course") == {
        f"submitted/doejohn/{A}/01_loops_and_blocking.ipynb": NB,
        f"submitted/smithjane/{A}/doejohn_3_4_01_loops_and_blocking.ipynb": b"from jane",
        f"submitted/smithjane/{A}/doejohn_3_4_02.ipynb": b"also from jane",
        f"submitted/smithjane/{A}/doejohn_3_4_inner.zip": zip_bytes({"doejohn_3_4_03.ipynb": b"nested"}),
    }


@pytest.mark.parametrize("fmt, layout, expected, unmatched", [
    # a file pattern without "/" used to fall back to the inner base name: s2 got s1's file
    (r"^(?P<student>s\d+)--(?P<file>[^/]+)$",
     {"s1--hw.zip": zip_bytes({"s2--01.ipynb": b"s1's"})}, {"s1/s2--01.ipynb": b"s1's"}, []),
    ("moodle", {"Jane Smith_77_assignsubmission_file_/Bob Jones_88_assignsubmission_file_/01.ipynb": b"jane's"},
     {"Jane_Smith/01.ipynb": b"jane's"}, []),
    ("folders", {"alice/bob/01.ipynb": b"alice's", "alice/bob.zip": zip_bytes({"bob/02.ipynb": b"alice's too"})},
     {"alice/01.ipynb": b"alice's", "alice/02.ipynb": b"alice's too"}, []),
    # a wrapper folder the pattern does not expect: nothing is routed by the inner names
    ("canvas", {"wrapper/smithjane_1_2_work.zip": zip_bytes({"doejohn_3_4_01.ipynb": b"jane's"}),
                "wrapper/doejohn_3_4_01.ipynb": b"?"}, {},
     ["wrapper/doejohn_3_4_01.ipynb", "wrapper/smithjane_1_2_work.zip"]),
], ids=["regex", "moodle", "folders", "wrapper"])
def test_the_owner_is_the_top_level_entry_in_every_format(tmp_path, capsys, fmt, layout, expected, unmatched):
    download = tmp_path / "download"
    for name, data in layout.items():
        (download / name).parent.mkdir(parents=True, exist_ok=True)
        (download / name).write_bytes(data)
    code, _, err = run(download, tmp_path / "course", capsys, fmt)
    assert files_under(tmp_path / "course") == {"submitted/{}/{}/{}".format(k.split("/")[0], A, k.split("/")[1]): v
                                                for k, v in expected.items()}
    assert code == (1 if unmatched else 0)
    assert [line.split(":")[0] for line in err.splitlines()[:-1]] == [f"unmatched {path}" for path in unmatched]


def test_a_pattern_taking_the_student_from_below_the_top_is_refused(tmp_path, capsys):
    download = tmp_path / "download"
    (download / "alice" / "bob").mkdir(parents=True)
    (download / "alice" / "bob" / "01.ipynb").write_bytes(NB)
    (download / "carol_2--x" / "y--01.ipynb").parent.mkdir(parents=True)
    (download / "carol_2--x" / "y--01.ipynb").write_bytes(NB)
    code, _, err = run(download, tmp_path / "course", capsys, r"^[^/]+/(?P<student>[^/]+)/(?P<file>.+)$")
    assert code == 1 and files_under(tmp_path / "course") == {}
    assert ("refused alice/bob/01.ipynb: the pattern takes the student from below the top-level entry; "
            "only the top-level file or folder may name the student") in err.splitlines()
    code, _, err = run(download, tmp_path / "course", capsys, r"^(?P<student>.+)--(?P<file>.+)$")
    assert code == 1 and "refused carol_2--x/y--01.ipynb: the pattern takes the student from below" in err


def test_zip_member_paths_keep_only_a_safe_base_name(tmp_path, capsys):
    download = one_zip(tmp_path, {
        "smithjane_1_2_work.zip": zip_bytes({
            "../../doejohn/acceleration/climb.ipynb": b"1",
            "..\\..\\back.ipynb": b"2",
            "sub/../../up.ipynb": b"3",
            "/etc/cron.d/absolute.ipynb": b"4",
            "C:\\Users\\jane\\windows.ipynb": b"5",
            "ctrl\x1b[2J\u2028name.ipynb": b"6",
            "\x1b[31mred/../x.ipynb": b"7",
            "x" * 300 + ".ipynb": b"8",
        }),
        "../doejohn_3_4_outer.ipynb": b"8",
        "smithjane_1_2_/tmp/evil.ipynb": b"9",
    })
    code, _, err = run(download, tmp_path / "course", capsys)
    assert files_under(tmp_path) == {
        "submissions.zip": download.read_bytes(),
        f"course/submitted/smithjane/{A}/absolute.ipynb": b"4",
        f"course/submitted/smithjane/{A}/windows.ipynb": b"5",
        f"course/submitted/smithjane/{A}/ctrl_[2J_name.ipynb": b"6",
        f"course/submitted/smithjane/{A}/evil.ipynb": b"9",
    }
    climbs = "its path climbs out of the archive with '..'"
    assert code == 1 and set(err.splitlines()[:-1]) == {
        f"refused ../doejohn_3_4_outer.ipynb: {climbs}",
        f"refused smithjane_1_2_work.zip/../../doejohn/acceleration/climb.ipynb: {climbs}",
        f"refused smithjane_1_2_work.zip/..\\..\\back.ipynb: {climbs}",
        f"refused smithjane_1_2_work.zip/sub/../../up.ipynb: {climbs}",
        f"refused smithjane_1_2_work.zip/\\x1b[31mred/../x.ipynb: {climbs}",
        f"refused smithjane_1_2_work.zip/{'x' * 174}...: its file name is longer than 255 bytes",
    }


def test_nothing_is_written_through_a_link_in_submitted(tmp_path, capsys):
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "course" / "submitted").mkdir(parents=True)
    (tmp_path / "course" / "submitted" / "smithjane").symlink_to(outside)
    download = one_zip(tmp_path, {"smithjane_1_2_01.ipynb": NB, "doejohn_3_4_01.ipynb": NB})
    code, _, err = run(download, tmp_path / "course", capsys)
    assert code == 1 and list(outside.iterdir()) == []
    assert files_under(tmp_path / "course") == {"submitted/smithjane": b"-> " + os.fsencode(outside),
                                                f"submitted/doejohn/{A}/01.ipynb": NB}
    assert ("refused smithjane_1_2_01.ipynb: submitted/smithjane is a symbolic link (never written through)"
            in err.splitlines())


# -- 2. ids: Unicode kept, NFC, never merged ------------------------------------------------------
@pytest.mark.parametrize("raw, expected", [
    ("Jane Smith", "Jane_Smith"), ("smithjane", "smithjane"), ("12345", "12345"),
    ("José", "José"), ("Josë", "Josë"), ("Jose\u0301", "José"), ("李小龍", "李小龍"),
    ("jane.smith@uni.edu", "jane.smith_uni.edu"), (".hidden", "hidden"), ("a/b\\c", "a_b_c"),
    ("\u202egnp.ipynb", "gnp.ipynb"), ("-rf", "rf"),
])
def test_student_ids_keep_unicode_letters_and_digits(raw, expected):
    assert student_id(raw) == expected
    assert valid_student_id(student_id(raw)) is None


def test_names_without_letters_get_a_stable_hash_id():
    ids = [student_id(raw) for raw in ["", ".", "..", "!!!", "._.", "\x00\x1b"]]
    assert all(i.startswith("student-") and len(i) == len("student-") + 10 for i in ids)
    assert len(set(ids)) == len(ids) and ids == [student_id(raw) for raw in ["", ".", "..", "!!!", "._.", "\x00\x1b"]]
    assert all(valid_student_id(i) is None for i in ids)
    long_id = student_id("é" * 300)
    assert len(long_id.encode()) <= 100 and valid_student_id(long_id) is None


def test_ids_never_merge_different_names_and_do_not_depend_on_order():
    names = [("Jane Smith", ""), ("Jane_Smith", ""), ("jane_smith", ""), ("Jane  Smith", ""), ("!!!", ""),
             ("smithjane", "11"), ("smithjane", "22")]
    ids, warnings = assign_ids(names)
    assert assign_ids(reversed(names)) == (ids, warnings)
    assert len(set(ids.values())) == len(names)
    assert len({i.casefold() for i in ids.values()}) == len(names)    # a case-insensitive disk keeps them apart
    assert ids[("Jane_Smith", "")] == "Jane_Smith" and ids[("smithjane", "11")] == "smithjane"
    assert ids[("Jane Smith", "")].startswith("Jane_Smith-") and ids[("jane_smith", "")].startswith("jane_smith-")
    assert ids[("smithjane", "22")].startswith("smithjane-") and ids[("!!!", "")].startswith("student-")
    assert len(warnings) == 5
    assert (f"'Jane Smith' gives the id Jane_Smith, which 'Jane_Smith' already has: "
            f"collected as {ids[('Jane Smith', '')]}") in warnings
    # a student who names themselves after another's suffixed id still gets a folder of their own
    taken = ids[("Jane Smith", "")]
    ids2, _ = assign_ids([*names, (taken, "")])
    assert ids2[(taken, "")] == taken and ids2[("Jane Smith", "")] != taken
    assert len(set(ids2.values())) == len(names) + 1


def test_nfc_and_nfd_folders_merge_and_different_letters_do_not(tmp_path, capsys):
    download = tmp_path / "download"
    for folder, name in [("José", "01.ipynb"), (unicodedata.normalize("NFD", "José"), "02.ipynb"),
                         ("Josë", "01.ipynb"), ("!!!", "01.ipynb")]:
        (download / folder).mkdir(parents=True)
        (download / folder / name).write_bytes(folder.encode())
    code, out, err = run(download, tmp_path / "course", capsys, "folders")
    hashed = student_id("!!!")
    assert files_under(tmp_path / "course") == {        # both spellings of José: one student
        f"submitted/José/{A}/01.ipynb": "José".encode(), f"submitted/José/{A}/02.ipynb": "Jose\u0301".encode(),
        f"submitted/Josë/{A}/01.ipynb": "Josë".encode(), f"submitted/{hashed}/{A}/01.ipynb": b"!!!"}
    assert code == 0 and err == ""
    assert f"warning: '!!!' has no letter or digit: collected as {hashed}" in out.splitlines()


def test_two_canvas_accounts_with_one_name_get_two_folders(tmp_path, capsys):
    download = one_zip(tmp_path, {"smithjane_11_1_01.ipynb": b"first", "smithjane_22_2_01.ipynb": b"second",
                                  "smithjane_LATE_11_3_02.ipynb": b"first late"})
    code, out, _ = run(download, tmp_path / "course", capsys)
    ids, _ = assign_ids([("smithjane", "11"), ("smithjane", "22")])
    assert code == 0 and files_under(tmp_path / "course") == {
        f"submitted/smithjane/{A}/01.ipynb": b"first", f"submitted/smithjane/{A}/02.ipynb": b"first late",
        f"submitted/{ids[('smithjane', '22')]}/{A}/01.ipynb": b"second"}
    assert (f"warning: 'smithjane' (account 22) gives the id smithjane, which 'smithjane' already has: "
            f"collected as {ids[('smithjane', '22')]}") in out.splitlines()


# -- 3. one bad entry never stops the class -------------------------------------------------------
def stored_zip(name: str, data: bytes) -> bytes:
    return zip_bytes({name: data}, zipfile.ZIP_STORED)


def crc_error_zip() -> bytes:
    return stored_zip("01.ipynb", b"a notebook of jane").replace(b"of jane", b"of joan")


def bad_deflate_zip() -> bytes:
    blob = bytearray(zip_bytes({"01.ipynb": NB}))
    _, _, _, _, _, _, _, size, _, name_len, extra_len = struct.unpack_from("<IHHHHHIIIHH", blob, 0)
    start = 30 + name_len + extra_len
    blob[start:start + size] = b"\xff" * size        # deflate block type 3 does not exist
    return bytes(blob)


def non_utf8_name_zip(flagged: bool) -> bytes:
    blob = zip_bytes({"good.ipynb": NB, "bad_XX.ipynb": b"x"}).replace(b"bad_XX", b"bad_\xe9\xff")
    return patch_headers(blob, b"bad_\xe9\xff", flags=0x800) if flagged else blob


@pytest.mark.parametrize("upload, refusal, collected", [
    (b"PK\x03\x04 not really a zip", ": not a readable zip (BadZipFile: File is not a zip file)", {}),
    (zip_bytes({"01.ipynb": NB, "02.ipynb": NB})[:60], ": not a readable zip (BadZipFile: File is not a zip file)", {}),
    (crc_error_zip(), "/01.ipynb: cannot be collected (BadZipFile: Bad CRC-32 for file '01.ipynb')", {}),
    (patch_headers(zip_bytes({"01.ipynb": NB, "02.ipynb": NB}), b"01.ipynb", method=99),
     "/01.ipynb: cannot be collected (NotImplementedError: That compression method is not supported)",
     {"02.ipynb": NB}),
    (bad_deflate_zip(),
     "/01.ipynb: cannot be collected (error: Error -3 while decompressing data: invalid block type)", {}),
    (patch_headers(zip_bytes({"01.ipynb": NB, "02.ipynb": NB}), b"01.ipynb", flags=0x1),
     "/01.ipynb: encrypted", {"02.ipynb": NB}),
    (non_utf8_name_zip(flagged=False), "/bad_\\xe9\\xff.ipynb: its file name is not valid UTF-8", {"good.ipynb": NB}),
    (non_utf8_name_zip(flagged=True), ": not a readable zip: a member name marked UTF-8 is not UTF-8", {}),
], ids=["garbage", "truncated", "crc", "method", "deflate", "encrypted", "name-not-utf8", "name-marked-utf8"])
def test_a_broken_student_zip_is_refused_and_the_class_collected(tmp_path, capsys, upload, refusal, collected):
    download = one_zip(tmp_path, {"smithjane_1_2_work.zip": upload, "doejohn_3_4_01.ipynb": NB})
    code, _, err = run(download, tmp_path / "course", capsys)
    assert code == 1
    assert files_under(tmp_path / "course") == {f"submitted/doejohn/{A}/01.ipynb": NB,
                                                **{f"submitted/smithjane/{A}/{k}": v for k, v in collected.items()}}
    assert err.splitlines() == [f"refused smithjane_1_2_work.zip{refusal}",
                                "1 refused and 0 unmatched; every other file was collected"]


def test_bad_names_and_unreadable_files_in_a_folder_are_refused(tmp_path, capsys, monkeypatch):
    download = tmp_path / "download"
    download.mkdir()
    (download / "doejohn_3_4_01.ipynb").write_bytes(NB)
    (download / "smithjane_1_2_locked.ipynb").write_bytes(NB)
    (download / os.fsdecode(b"leeann_5_6_\xff.ipynb")).write_bytes(NB)
    (download / os.fsdecode(b"Bob\xff_7_assignsubmission_file_")).mkdir()
    (download / os.fsdecode(b"Bob\xff_7_assignsubmission_file_") / "01.ipynb").write_bytes(NB)
    deep = download.joinpath("leeann_5_6_deep", *["d"] * 40)
    deep.mkdir(parents=True)
    (deep / "01.ipynb").write_bytes(NB)
    real_open = os.open

    def open_refusing_one(path, flags, *args, **kwargs):
        if path == "smithjane_1_2_locked.ipynb":
            raise PermissionError(13, "Permission denied")
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_refusing_one)
    code, _, err = run(download, tmp_path / "course", capsys)
    assert code == 1 and files_under(tmp_path / "course") == {f"submitted/doejohn/{A}/01.ipynb": NB}
    assert err.splitlines() == [
        "refused Bob\\xff_7_assignsubmission_file_: its file name is not valid UTF-8",
        "refused leeann_5_6_\\xff.ipynb: its file name is not valid UTF-8",
        "refused leeann_5_6_deep" + "/d" * 32 + ": folders nested more than 32 deep",
        "refused smithjane_1_2_locked.ipynb: cannot be collected (PermissionError: [Errno 13] Permission denied)",
        "4 refused and 0 unmatched; every other file was collected",
    ]


# -- 4. bounded bytes, members, ratio ---------------------------------------------------------------
@pytest.mark.parametrize("where", ["student zip", "download zip"])
def test_a_zip_bomb_is_refused_for_its_ratio_before_it_is_expanded(tmp_path, capsys, zeros_50mb_zip, where):
    assert len(zeros_50mb_zip) < 100_000
    if where == "student zip":
        download = one_zip(tmp_path, {"smithjane_1_2_work.zip": zeros_50mb_zip})
        shown, kept = "smithjane_1_2_work.zip/zeros.bin", f"submitted/smithjane/{A}/01_loops_and_blocking.ipynb"
    else:   # the same members straight in the download, renamed to Canvas names of the same length
        download = tmp_path / "submissions.zip"
        download.write_bytes(zeros_50mb_zip.replace(b"zeros.bin", b"s_1_2_z.b")
                             .replace(b"01_loops_and_blocking.ipynb", b"s_1_2_loops_and_blocking.nb"))
        shown, kept = "s_1_2_z.b", f"submitted/s/{A}/loops_and_blocking.nb"
    code, _, err = run(download, tmp_path / "course", capsys)
    assert code == 1 and files_under(tmp_path / "course") == {kept: NB}
    [line, _] = err.splitlines()
    assert line.startswith(f"refused {shown}: it expands more than {MAX_EXPANSION_RATIO} times (")
    assert line.endswith(" bytes compressed): a zip bomb?")


@pytest.mark.parametrize("claimed_bytes, reason", [
    (1000, "cannot be collected (BadZipFile: Bad CRC-32 for file 'zeros.bin')"),     # read 1000 bytes, then caught
    (0x7FFFFFFF, f"it expands more than {MAX_EXPANSION_RATIO} times"),                # refused before reading
])
def test_a_zip_header_that_lies_about_the_size_is_not_trusted(tmp_path, capsys, zeros_50mb_zip, claimed_bytes, reason):
    download = one_zip(tmp_path, {"smithjane_1_2_work.zip": patch_headers(zeros_50mb_zip, b"zeros.bin",
                                                                          file_size=claimed_bytes)})
    code, _, err = run(download, tmp_path / "course", capsys)
    assert code == 1
    assert files_under(tmp_path / "course") == {f"submitted/smithjane/{A}/01_loops_and_blocking.ipynb": NB}
    assert err.splitlines()[0].startswith(f"refused smithjane_1_2_work.zip/zeros.bin: {reason}")


class EndlessZeros:
    """A stream of zeros that never ends, counting what was read."""

    def __init__(self):
        self.read_bytes = 0

    def read(self, n: int) -> bytes:
        self.read_bytes += n
        return bytes(n)


@pytest.mark.parametrize("compressed_bytes, limit_bytes, stop_bytes, reason", [
    (None, 5 * 2**20, 5 * 2**20, "too large"),                            # a file that grows while read
    (1000, 25 * 2**20, RATIO_FREE_BYTES, "expands more than"),           # a member whose header says 10 bytes
])
def test_reading_stops_at_the_first_chunk_past_a_limit(compressed_bytes, limit_bytes, stop_bytes, reason):
    stream = EndlessZeros()
    with pytest.raises(Refused, match=reason):
        copy_bounded(Opened(stream, 10, compressed_bytes), io.BytesIO(), limit_bytes, "too large", CollectLimits())
    assert stop_bytes < stream.read_bytes <= stop_bytes + CHUNK_BYTES


def test_bytes_and_files_per_student_and_per_file_are_bounded(tmp_path):
    a, b, c, big = b"a" * 1500, b"b" * 1500, b"c" * 1500, random.Random(0).randbytes(2500)
    download = one_zip(tmp_path, {"smithjane_1_2_work.zip": zip_bytes({"a.bin": a, "b.bin": b, "c.bin": c}),
                                  "smithjane_1_2_big.bin": big, "doejohn_3_4_big.bin": big,
                                  "leeann_5_6_work.zip": zip_bytes({f"{i}.txt": b"x" for i in range(3)}),
                                  "leeann_5_6_x.txt": b"y"})
    limits = CollectLimits(student_bytes=3000, file_bytes=2000, student_files=3)
    result = collect(download, tmp_path / "course", A, "canvas", limits)
    assert files_under(tmp_path / "course") == {
        f"submitted/smithjane/{A}/a.bin": a, f"submitted/smithjane/{A}/b.bin": b,
        **{f"submitted/leeann/{A}/{i}.txt": b"x" for i in range(3)}}
    assert printed_problems(result) == [
        "refused doejohn_3_4_big.bin: larger than 2000 bytes, the limit for one file",
        "refused leeann_5_6_x.txt: the student has more than 3 files",
        "refused smithjane_1_2_big.bin: larger than 2000 bytes, the limit for one file",
        "refused smithjane_1_2_work.zip/c.bin: the student's files pass 3000 bytes uncompressed in total",
    ]


def overlapping_zip(data: bytes, copies: int) -> bytes:
    """A zip whose one member is listed ``copies`` times in its table of contents (the "better
    zip bomb": every entry points at the same compressed bytes)."""
    one = zip_bytes({"a.bin": data})
    table_start, end_start = one.index(CENTRAL_HEADER), one.index(b"PK\x05\x06")
    table = one[table_start:end_start] * copies
    end = bytearray(one[end_start:])
    struct.pack_into("<HHII", end, 8, copies, copies, len(table), table_start)
    return one[:table_start] + table + bytes(end)


def test_entries_sharing_compressed_bytes_cost_no_more_than_the_student_budget(tmp_path):
    data = random.Random(0).randbytes(300_000).translate(bytes(range(16)) * 16)   # compresses about 2:1
    download = one_zip(tmp_path, {"smithjane_1_2_work.zip": overlapping_zip(data, 50)})
    limits = CollectLimits(student_bytes=1_000_000, file_bytes=400_000)
    result = collect(download, tmp_path / "course", A, "canvas", limits)
    assert files_under(tmp_path / "course") == {f"submitted/smithjane/{A}/a.bin": data}
    # 3 x 300 kB read, then refused on the declared size; newer Pythons refuse overlapping entries themselves
    lines = printed_problems(result)
    assert all(line in ("refused smithjane_1_2_work.zip/a.bin: the student's files pass 1000000 bytes "
                        "uncompressed in total") or "(BadZipFile: Overlapped entries" in line for line in lines)
    assert len(lines) >= 47 and len(lines) + len(result.files["smithjane"]) == 50


def test_archives_with_too_many_members_or_too_large_a_table_are_refused(tmp_path, capsys):
    many = zip_bytes({f"{i}.txt": b"" for i in range(MAX_ARCHIVE_MEMBERS + 1)})
    download = one_zip(tmp_path, {"smithjane_1_2_many.zip": many, "doejohn_3_4_01.ipynb": NB})
    code, _, err = run(download, tmp_path / "course", capsys)
    assert code == 1 and files_under(tmp_path / "course") == {f"submitted/doejohn/{A}/01.ipynb": NB}
    assert err.splitlines()[0] == (f"refused smithjane_1_2_many.zip: the zip holds {MAX_ARCHIVE_MEMBERS + 1} "
                                   f"members, more than {MAX_ARCHIVE_MEMBERS}")
    result = collect(download, tmp_path / "course2", A, "canvas", CollectLimits(archive_index_bytes=4000))
    assert printed_problems(result) == [
        "refused smithjane_1_2_many.zip: its table of contents is larger than 4000 bytes"]


def test_a_zip_inside_a_student_zip_is_kept_as_a_file(tmp_path, capsys, zeros_50mb_zip):
    inner = zip_bytes({"bomb.zip": zeros_50mb_zip, "02.ipynb": NB})
    download = one_zip(tmp_path, {"smithjane_1_2_outer.zip": zip_bytes({"inner.zip": inner, "01.ipynb": NB})})
    code, _, err = run(download, tmp_path / "course", capsys)
    assert code == 0 and err == ""
    assert files_under(tmp_path / "course") == {f"submitted/smithjane/{A}/01.ipynb": NB,
                                                f"submitted/smithjane/{A}/inner.zip": inner}


# -- 5. links, FIFOs, sockets, devices ------------------------------------------------------------
def test_links_fifos_and_sockets_in_a_folder_are_never_followed(tmp_path, capsys):
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"the instructor's key")
    download = tmp_path / "download"
    download.mkdir()
    (download / "doejohn_3_4_01.ipynb").write_bytes(NB)
    (download / "smithjane_1_2_key.ipynb").symlink_to(secret)
    (download / "smithjane_1_2_dir").symlink_to(tmp_path)
    os.mkfifo(download / "smithjane_1_2_pipe.ipynb")
    os.link(secret, download / "smithjane_1_2_hard.ipynb")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(download / "smithjane_1_2_sock.ipynb"))
        code, _, err = run(download, tmp_path / "course", capsys)
    assert code == 1 and files_under(tmp_path / "course") == {f"submitted/doejohn/{A}/01.ipynb": NB}
    assert err.splitlines() == [
        "refused smithjane_1_2_dir: a symbolic link (never followed)",
        "refused smithjane_1_2_hard.ipynb: a hard link to another file",
        "refused smithjane_1_2_key.ipynb: a symbolic link (never followed)",
        "refused smithjane_1_2_pipe.ipynb: not a regular file (a FIFO, socket or device)",
        "refused smithjane_1_2_sock.ipynb: not a regular file (a FIFO, socket or device)",
        "5 refused and 0 unmatched; every other file was collected",
    ]


def test_a_fifo_or_link_swapped_in_after_the_walk_is_not_opened(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "link").symlink_to(tmp_path / "pipe")
    root_fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(Refused, match="no longer a regular file"):
            open_regular(root_fd, ("pipe",))                  # O_NONBLOCK: does not wait for a writer
        with pytest.raises(OSError):
            open_regular(root_fd, ("link",))                  # O_NOFOLLOW
    finally:
        os.close(root_fd)


def link_member(name: str, mode: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = mode << 16
    return info


def test_link_and_device_members_of_zips_are_refused(tmp_path, capsys):
    download = one_zip(tmp_path, {
        "smithjane_1_2_work.zip": zip_bytes({link_member("key.ipynb", stat.S_IFLNK | 0o777): b"/etc/shadow",
                                             link_member("pipe.ipynb", stat.S_IFIFO | 0o644): b"",
                                             link_member("01.ipynb", stat.S_IFREG | 0o644): NB}),
        link_member("doejohn_3_4_key.ipynb", stat.S_IFLNK | 0o777): b"/etc/shadow",
    })
    code, _, err = run(download, tmp_path / "course", capsys)
    assert code == 1 and files_under(tmp_path / "course") == {f"submitted/smithjane/{A}/01.ipynb": NB}
    assert err.splitlines() == [
        "refused doejohn_3_4_key.ipynb: a symbolic link (never followed)",
        "refused smithjane_1_2_work.zip/key.ipynb: a symbolic link (never followed)",
        "refused smithjane_1_2_work.zip/pipe.ipynb: not a regular file (a FIFO, socket or device)",
        "3 refused and 0 unmatched; every other file was collected",
    ]
