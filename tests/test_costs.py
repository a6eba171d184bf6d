"""What a job records of its costs (scd/stages/costs.py): peak memory, bytes written, time in a wrapped object."""
import time

from scd.stages.costs import Stopwatch, disk_bytes, peak_rss_bytes


def test_peak_rss_is_in_bytes_and_grows_with_what_the_process_holds():
    before = peak_rss_bytes()
    assert before > 10e6  # a Python process with its imports: tens of MB, not kilobytes
    block = bytearray(64 * 2**20)
    block[::4096] = b"x" * len(block[::4096])  # touch every page
    assert peak_rss_bytes() >= before + 32 * 2**20 or before > 64 * 2**20


def test_disk_bytes_counts_files_and_trees_and_missing_paths_as_zero(tmp_path):
    (tmp_path / "d" / "e").mkdir(parents=True)
    (tmp_path / "d" / "a").write_bytes(b"1" * 10)
    (tmp_path / "d" / "e" / "b").write_bytes(b"2" * 5)
    (tmp_path / "f").write_bytes(b"3" * 7)
    assert disk_bytes(tmp_path / "d") == 15 and disk_bytes(tmp_path / "f") == 7
    assert disk_bytes(tmp_path / "d", tmp_path / "f", tmp_path / "missing") == 22


def test_stopwatch_sums_the_time_of_the_wrapped_methods_only():
    class Teacher:
        def forward(self, x):
            time.sleep(0.05)
            return x + 1

        def head(self):
            time.sleep(0.05)
            return "h"

    teacher = Teacher()
    watch = Stopwatch().wrap(teacher, "forward")
    assert teacher.forward(1) == 2 and teacher.forward(2) == 3 and teacher.head() == "h"
    assert 0.1 <= watch.seconds < 0.15
    assert Teacher().forward(1) == 2 and watch.seconds < 0.15  # other objects are untouched
