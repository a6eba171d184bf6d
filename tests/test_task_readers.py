"""tasks/readers.py: raw task files parse, and every malformed case is an error naming file, row/line and problem."""
from __future__ import annotations

from pathlib import Path

import pytest

from tasks.readers import TaskDataError, check_label, read_conll, read_lines, read_table, read_text


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_bytes(text.encode("utf-8"))
    return path


def error(fn, *args, **kwargs) -> str:
    with pytest.raises(TaskDataError) as info:
        fn(*args, **kwargs)
    assert isinstance(info.value, ValueError)
    return str(info.value)


# -- read_text ------------------------------------------------------------------------------------------------------

def test_read_text_utf8_and_bom(tmp_path):
    assert read_text(write(tmp_path, "a.txt", "\ufeffhéllo\n日本\n")) == "héllo\n日本\n"
    assert read_text(write(tmp_path, "b.txt", "plain")) == "plain"


def test_read_text_bad_byte_names_file_line_column_and_byte(tmp_path):
    # line 3, after 4 characters ("αβ", 2 bytes each, then "cd"): the bad byte is the 5th character of the line
    path = write(tmp_path, "latin.txt", "first line\nsecond\nαβcd".encode() + b"\xe9t\xe9\nlast\n")
    msg = error(read_text, path, task="crade")
    assert "latin.txt" in msg
    assert "line 3, column 5" in msg
    assert "0xe9" in msg
    assert "UTF-8" in msg
    assert "scd data fetch crade" in msg


def test_read_text_bad_byte_on_first_line_after_bom(tmp_path):
    path = write(tmp_path, "bom.txt", b"\xef\xbb\xbfab\xff\n")
    msg = error(read_text, path)
    assert "bom.txt: line 1, column 3: byte 0xff" in msg


def test_read_text_missing_file(tmp_path):
    path = tmp_path / "nowhere" / "train.tsv"
    msg = error(read_text, path, task="sib200_eng")
    assert str(path) in msg and "not found" in msg
    assert "scd data fetch sib200_eng" in msg


# -- read_table -----------------------------------------------------------------------------------------------------

CSV = 'tag,question,answer\nt1,"a question\nover, two lines",A\nt2,plain,B\n\nt3,"with ""quotes""",C\n'


def test_read_table_csv_quoted_multiline_cells_and_line_numbers(tmp_path):
    rows = read_table(write(tmp_path, "q.csv", CSV), ["tag", "answer"])
    assert rows == [
        {"tag": "t1", "question": "a question\nover, two lines", "answer": "A", "_line": 2},
        {"tag": "t2", "question": "plain", "answer": "B", "_line": 4},
        {"tag": "t3", "question": 'with "quotes"', "answer": "C", "_line": 6},
    ]


def test_read_table_tsv_keeps_quotes(tmp_path):
    tsv = 'index_id\tcategory\ttext\n1\tgeography\tThe "Black" Sea\n2\thealth\t"quoted" start\n'
    rows = read_table(write(tmp_path, "t.tsv", tsv), ["index_id", "category", "text"], delimiter="\t")
    assert [r["text"] for r in rows] == ['The "Black" Sea', '"quoted" start']
    assert [r["_line"] for r in rows] == [2, 3]


def test_read_table_crlf(tmp_path):
    rows = read_table(write(tmp_path, "w.csv", "a,b\r\n1,2\r\n3,4\r\n"), ["a", "b"])
    assert rows == [{"a": "1", "b": "2", "_line": 2}, {"a": "3", "b": "4", "_line": 3}]


def test_read_table_missing_column(tmp_path):
    path = write(tmp_path, "JMMLU-Med.csv", "tag,question,solution\nx,y,A\n")
    msg = error(read_table, path, ["tag", "question", "answer"], task="jmmlu_med")
    assert "JMMLU-Med.csv" in msg
    assert "missing required column(s) ['answer']" in msg
    assert "['tag', 'question', 'solution']" in msg  # the header found
    assert "scd data fetch jmmlu_med" in msg


def test_read_table_extra_field(tmp_path):
    tsv = "index_id\tcategory\ttext\n1\thealth\tfine\n2\thealth\tone\textra\n"
    msg = error(read_table, write(tmp_path, "train.tsv", tsv), ["text"], delimiter="\t")
    assert "train.tsv" in msg
    assert "data row 2 (line 3)" in msg
    assert "has 4 fields, more than the 3" in msg


def test_read_table_short_row_after_multiline_cell(tmp_path):
    text = 'tag,question,answer\nt1,"two\nlines",A\nt2,B\n'
    msg = error(read_table, write(tmp_path, "short.csv", text), ["tag"])
    assert "short.csv" in msg
    assert "data row 2 (line 4)" in msg
    assert "has 2 fields, fewer than the 3" in msg


def test_read_table_row_numbers_skip_blank_lines(tmp_path):
    text = "a,b\n1,2\n\n\n3\n"
    msg = error(read_table, write(tmp_path, "gaps.csv", text), ["a"])
    assert "data row 2 (line 5)" in msg


def test_read_table_header_only_is_empty(tmp_path):
    msg = error(read_table, write(tmp_path, "test.tsv", "index_id\tcategory\ttext\n"), ["text"], delimiter="\t")
    assert "test.tsv" in msg and "empty" in msg and "no data rows" in msg


def test_read_table_empty_file(tmp_path):
    msg = error(read_table, write(tmp_path, "nothing.csv", ""), ["a"])
    assert "nothing.csv" in msg and "no header" in msg


def test_read_table_unterminated_quote(tmp_path):
    msg = error(read_table, write(tmp_path, "open.csv", 'a,b\n1,2\n3,"never closed\n5,6\n'), ["a"])
    assert "open.csv" in msg and "line 3" in msg and "quote" in msg


def test_read_table_non_utf8_reported_like_read_text(tmp_path):
    path = write(tmp_path, "cp.csv", b"a,b\n1,2\n3,\x93x\x94\n")
    msg = error(read_table, path, ["a"])
    assert "cp.csv: line 3, column 3: byte 0x93" in msg


def test_read_table_missing_file(tmp_path):
    msg = error(read_table, tmp_path / "CRADE.csv", ["a"], task="crade")
    assert "CRADE.csv" in msg and "not found" in msg and "scd data fetch crade" in msg


# -- read_lines -----------------------------------------------------------------------------------------------------

def test_read_lines(tmp_path):
    assert read_lines(write(tmp_path, "a.txt", "one\ntwo \n\nfour\n")) == ["one", "two ", "", "four"]
    assert read_lines(write(tmp_path, "b.txt", "no final newline")) == ["no final newline"]
    assert read_lines(write(tmp_path, "c.txt", "x\r\ny\r\n")) == ["x", "y"]
    # only \n ends a line: a Unicode line separator inside a tweet stays in it
    assert read_lines(write(tmp_path, "d.txt", "a\u2028b\nc\n")) == ["a\u2028b", "c"]


# -- read_conll -----------------------------------------------------------------------------------------------------

LABELS = ["O", "B-Disease", "I-Disease"]


def test_read_conll_sentences_and_lines(tmp_path):
    text = "Identification\tO\nof\tO\nAPC2\tB-Disease\n\n\nA\tO\nB\tI-Disease\n"  # I- after O is kept
    sentences = read_conll(write(tmp_path, "train.tsv", text), LABELS)
    assert sentences == [
        {"tokens": ["Identification", "of", "APC2"], "tags": ["O", "O", "B-Disease"], "_line": 1},
        {"tokens": ["A", "B"], "tags": ["O", "I-Disease"], "_line": 6},
    ]


def test_read_conll_bad_line(tmp_path):
    text = "a\tO\nb\tO\n\nc O\n"
    msg = error(read_conll, write(tmp_path, "devel.tsv", text), LABELS, task="ncbi_disease")
    assert "devel.tsv" in msg
    assert "line 4" in msg
    assert "got 1 field(s) in 'c O'" in msg
    assert "scd data fetch ncbi_disease" in msg


def test_read_conll_three_fields(tmp_path):
    msg = error(read_conll, write(tmp_path, "x.tsv", "a\tO\nb\tO\textra\n"))
    assert "x.tsv: line 2" in msg and "got 3 field(s)" in msg


def test_read_conll_unknown_tag(tmp_path):
    text = "a\tO\n\nb\tO\nc\tB-Chemical\n"
    msg = error(read_conll, write(tmp_path, "test.tsv", text), LABELS)
    assert "test.tsv" in msg
    assert "line 4" in msg
    assert "'B-Chemical'" in msg
    assert str(LABELS) in msg  # the allowed set
    # without labels any tag is accepted
    assert read_conll(tmp_path / "test.tsv")[1]["tags"] == ["O", "B-Chemical"]


def test_read_conll_empty(tmp_path):
    msg = error(read_conll, write(tmp_path, "blank.tsv", "\n\n"), LABELS)
    assert "blank.tsv" in msg and "no sentences" in msg


# -- check_label ----------------------------------------------------------------------------------------------------

def test_check_label():
    assert check_label("B", ["A", "B"], "x.csv:3") == "B"
    with pytest.raises(TaskDataError) as info:
        check_label("Z", ["A", "B"], "CRADE.csv:17")
    msg = str(info.value)
    assert msg.startswith("CRADE.csv:17: label 'Z' is not one of the declared labels ['A', 'B']; ")


# -- the real files -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, columns, n", [
    ("JMMLU-Med", ["tag", "question", "optionA", "optionB", "optionC", "optionD", "answer"], 681),
    ("CRADE", ["tag", "question", "optionA", "optionB", "optionC", "optionD", "answer"], 1630),
    ("RRTNM", ["tag", "question", "optionA", "optionB", "optionC", "optionD", "optionE", "answer"], 324),
    ("NRNER", ["tag", "question", "answer"], 1539),
])
def test_real_jmed_llm(shared_data, name, columns, n):
    path = shared_data / "jmed_llm" / "all" / f"{name}.csv"
    rows = read_table(path, columns)
    assert len(rows) == n
    lines = read_text(path).split("\n")
    assert all(lines[r["_line"] - 1].startswith(r["tag"] + ",") for r in rows)  # _line is where the row starts


def test_real_sib200(shared_data):
    counts = [len(read_table(shared_data / "sib200" / "eng_Latn" / f"{s}.tsv", ["index_id", "category", "text"],
                             delimiter="\t")) for s in ("train", "dev", "test")]
    assert counts == [701, 99, 204]


def test_real_ncbi_disease(shared_data):
    counts = [len(read_conll(shared_data / "ncbi_disease" / f"{s}.tsv", LABELS)) for s in ("train", "devel", "test")]
    assert counts == [5432, 923, 940]


def test_real_tweets(shared_data):
    folder = shared_data / "tweet_sentiment_multilingual" / "english"
    counts = [len(read_lines(folder / f"{s}_text.txt")) for s in ("train", "val", "test")]
    assert counts == [1839, 324, 870]
    assert counts == [len(read_lines(folder / f"{s}_labels.txt")) for s in ("train", "val", "test")]
