"""The numbered view cb puts in the prompt, and the version in its header, agree with what apply checks."""

from __future__ import annotations

from pathlib import Path

from tools import Journal, SingleLineEdit, accept_all, apply_batch, file_block, file_version, numbered_lines


def test_numbered_lines_align_numbers_and_keep_indentation() -> None:
    data = b"".join(b"    line %d\n" % i for i in range(1, 11))
    assert numbered_lines(data, 8).split("\n") == [" 8|     line 8", " 9|     line 9", "10|     line 10"]


def test_file_block_header_carries_path_version_and_line_count() -> None:
    data = b"import os\r\n\r\nx = 1"
    assert file_block("a.py", data) == (
        f'<file path="a.py" version="{file_version(data)}" lines="3">\n1| import os\n2|\n3| x = 1\n</file>')
    assert file_block("a.py", data, 2, 2) == (
        f'<file path="a.py" version="{file_version(data)}" lines="3" shown="2-2">\n'
        "[… 1 earlier lines of a.py not shown]\n2|\n[… 1 lines of a.py not shown]\n</file>")


def test_a_window_numbers_lines_as_wide_as_the_whole_file_and_names_what_is_left_out() -> None:
    data = b"".join(b"x%d\n" % i for i in range(1, 121))
    block = file_block("big.py", data, 1, 9).split("\n")
    assert block[0].endswith('lines="120" shown="1-9">') and block[1] == "  1| x1" and block[9] == "  9| x9"
    assert block[10:] == ["[… 111 lines of big.py not shown]", "</file>"]
    assert file_block("big.py", data, 1, 0).split("\n")[1:] == ["[… 120 lines of big.py not shown]", "</file>"]


def test_non_utf8_lines_are_shown_decoded_in_the_files_encoding() -> None:
    assert numbered_lines(b"caf\xe9\n") == "1| café"


def test_what_the_model_sees_is_what_apply_accepts(tmp_path: Path) -> None:
    f = tmp_path / "m.py"
    f.write_bytes(b"a = 1\nb = 2\n")
    header = file_block("m.py", f.read_bytes()).split("\n")[0]
    version = header.split('version="')[1].split('"')[0]
    result = apply_batch([SingleLineEdit("m.py", version, 2, "b = 3")], tmp_path, journal=Journal(tmp_path / "j"),
                         confirm=accept_all)
    assert result.status == "applied" and f.read_bytes() == b"a = 1\nb = 3\n"


def test_version_is_eight_hex_digits_of_sha256() -> None:
    assert file_version(b"") == "e3b0c442"
