"""tasks.datafiles and `scd data`: checksummed downloads from a local HTTP server laid out like
raw.githubusercontent.com (<repo>/<commit>/<path>), holding copies of small real data files."""
from __future__ import annotations

import hashlib
import http.server
import os
import shutil
import threading
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest
from conftest import dry_run, unavailable

from scd.cli import main
from scd.config import data_dir
from tasks import TaskDataError, get_task
from tasks.datafiles import (
    ChecksumError,
    declared_files,
    ensure_files,
    fetch,
    resolve_data_dir,
    sha256_file,
    upstream_url,
    verify,
)

REPO, COMMIT = "example/bench-data", "0123456789abcdef0123456789abcdef01234567"
UPSTREAM = {  # local path under the data directory -> upstream path (the real files come from `shared_data`)
    "pubmedqa/test_ground_truth.json": "data/test_ground_truth.json",
    "sib200/labels.txt": "data/labels.txt",
    "sib200/eng_Latn/dev.tsv": "data/annotated/eng_Latn/dev.tsv",
}
CORRUPT = "sib200/eng_Latn/dev.tsv"  # the server holds a copy with changed bytes


@pytest.fixture(scope="module")
def originals(shared_data) -> dict[str, Path]:
    """Local path -> the real file in the task data ($SCD_DATA_DIR); a missing file skips, or fails in CI."""
    files = {local: shared_data / local for local in UPSTREAM}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        unavailable(f"real data files not found: {missing}")
    return files


@dataclass
class StandIn:
    """What tasks.datafiles reads of a Task: its name and data declaration."""
    name: str
    data: dict | None = None


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def server(tmp_path, originals):
    """A threaded HTTP server on a free port serving tmp/www; yields (base URL, list of requested paths)."""
    www = tmp_path / "www"
    for local, upstream in UPSTREAM.items():
        src = originals[local]
        dst = www / REPO / COMMIT / upstream
        dst.parent.mkdir(parents=True, exist_ok=True)
        data = src.read_bytes()
        if local == CORRUPT:
            data = data[:100] + bytes([data[100] ^ 0x01]) + data[101:]
            assert _sha(data) != sha256_file(src)
        dst.write_bytes(data)
    yield from _serve(www)


def _serve(www: Path):
    """Serve `www` over HTTP on a free port: yields (base URL, list of requested paths), then stops."""
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(www)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", requests
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


@pytest.fixture
def make_task(originals):
    def _task(name: str, subdir: str, locals_: list[str], extra: dict | None = None) -> StandIn:
        """A stand-in task declaring the given files (of UPSTREAM, keys without the subdir) with their true
        sha256."""
        files = {local: {"upstream": UPSTREAM[f"{subdir}/{local}"],
                         "sha256": sha256_file(originals[f"{subdir}/{local}"])} for local in locals_}
        files.update(extra or {})
        return StandIn(name, {"subdir": subdir, "source": {"repo": REPO, "commit": COMMIT, "licence": "MIT"},
                              "files": files})

    return _task


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith(".part"))


def test_sha256_file_matches_hashlib(tmp_path):
    p = tmp_path / "x.bin"
    data = os.urandom(3 << 20)  # more than one read chunk
    p.write_bytes(data)
    assert sha256_file(p) == _sha(data)


def test_upstream_url_base_precedence(monkeypatch):
    monkeypatch.delenv("SCD_FETCH_BASE_URL", raising=False)
    assert upstream_url("o/r", "abc", "d/f.csv") == "https://raw.githubusercontent.com/o/r/abc/d/f.csv"
    monkeypatch.setenv("SCD_FETCH_BASE_URL", "http://mirror/")
    assert upstream_url("o/r", "abc", "d/f.csv") == "http://mirror/o/r/abc/d/f.csv"
    assert upstream_url("o/r", "abc", "d/a b.csv", "http://x") == "http://x/o/r/abc/d/a%20b.csv"


def test_fetch_writes_good_files_and_refetch_downloads_nothing(server, tmp_path, make_task, originals):
    base, requests = server
    data = tmp_path / "data"
    task = make_task("pubmedqa_like", "pubmedqa", ["test_ground_truth.json"])
    got = fetch(task, data, base_url=base)
    target = data / "pubmedqa" / "test_ground_truth.json"
    assert got == [target]
    assert target.read_bytes() == originals["pubmedqa/test_ground_truth.json"].read_bytes()
    assert requests == [f"/{REPO}/{COMMIT}/data/test_ground_truth.json"]

    seen = []
    assert fetch(task, data, base_url=base, on_file=lambda s, p: seen.append((s, p))) == []
    assert seen == [("present", target)]
    assert len(requests) == 1  # nothing downloaded again
    assert _leftovers(data) == []


def test_fetch_uses_env_base_url(server, tmp_path, monkeypatch, make_task, originals):
    base, requests = server
    monkeypatch.setenv("SCD_FETCH_BASE_URL", base)
    fetch(make_task("sib_labels", "sib200", ["labels.txt"]), tmp_path / "data")
    assert (tmp_path / "data" / "sib200" / "labels.txt").read_bytes() == originals["sib200/labels.txt"].read_bytes()
    assert len(requests) == 1


def test_corrupted_download_raises_and_leaves_nothing(server, tmp_path, make_task, originals):
    base, requests = server
    data = tmp_path / "data"
    # sorted order: eng_Latn/dev.tsv (corrupt) comes before labels.txt, so labels.txt is never reached
    task = make_task("sib200_eng_latn", "sib200", ["eng_Latn/dev.tsv", "labels.txt"])
    with pytest.raises(ChecksumError) as err:
        fetch(task, data, base_url=base)
    msg = str(err.value)
    expected = sha256_file(originals[CORRUPT])
    assert "sib200_eng_latn" in msg and "eng_Latn/dev.tsv" in msg and expected in msg
    assert f"{base}/{REPO}/{COMMIT}/data/annotated/eng_Latn/dev.tsv" in msg
    served = (tmp_path / "www" / REPO / COMMIT / "data/annotated/eng_Latn/dev.tsv").read_bytes()
    assert _sha(served) in msg  # the actual sha256
    assert not (data / "sib200" / "eng_Latn" / "dev.tsv").exists()
    assert not (data / "sib200" / "labels.txt").exists()
    assert _leftovers(data) == []
    assert isinstance(err.value, TaskDataError)
    assert len(requests) == 1


def test_corrupted_download_names_actual_sha_and_keeps_existing_file(server, tmp_path, originals):
    base, _ = server
    data = tmp_path / "data"
    target = data / "sib200" / "eng_Latn" / "dev.tsv"
    target.parent.mkdir(parents=True)
    # an existing good file (declared with a different sha256, so fetch must try to replace it) stays untouched
    good = originals[CORRUPT].read_bytes()
    target.write_bytes(good)
    stale = "0" * 64
    task = StandIn("t", {"subdir": "sib200", "source": {"repo": REPO, "commit": COMMIT},
                         "files": {"eng_Latn/dev.tsv": {"upstream": "data/annotated/eng_Latn/dev.tsv",
                                                        "sha256": stale}}})
    with pytest.raises(ChecksumError) as err:
        fetch(task, data, base_url=base)
    corrupt = (tmp_path / "www" / REPO / COMMIT / "data/annotated/eng_Latn/dev.tsv").read_bytes()
    assert stale in str(err.value) and _sha(corrupt) in str(err.value)
    assert target.read_bytes() == good
    assert _leftovers(data) == []


def test_failure_keeps_files_already_fetched(server, tmp_path, make_task, originals):
    base, _ = server
    data = tmp_path / "data"
    task = make_task("sib", "sib200", ["labels.txt"],
                 extra={"zz_missing.txt": {"upstream": "data/nope.txt", "sha256": "1" * 64}})
    with pytest.raises(TaskDataError):
        fetch(task, data, base_url=base)
    assert sha256_file(data / "sib200" / "labels.txt") == sha256_file(originals["sib200/labels.txt"])


def test_404_gives_clear_error(server, tmp_path):
    base, _ = server
    data = tmp_path / "data"
    task = StandIn("gone", {"subdir": "gone", "source": {"repo": REPO, "commit": COMMIT},
                            "files": {"x.csv": {"upstream": "data/x.csv", "sha256": "a" * 64}}})
    with pytest.raises(TaskDataError) as err:
        fetch(task, data, base_url=base)
    msg = str(err.value)
    assert not isinstance(err.value, ChecksumError)
    assert f"{base}/{REPO}/{COMMIT}/data/x.csv" in msg and "404" in msg and "'gone'" in msg
    assert "by hand" in msg and str((data / "gone").resolve()) in msg
    assert not (data / "gone" / "x.csv").exists() and _leftovers(data) == []


def test_unreachable_server_gives_clear_error(tmp_path):
    task = StandIn("t", {"subdir": "s", "source": {"repo": REPO, "commit": COMMIT},
                         "files": {"x.csv": {"upstream": "x.csv", "sha256": "a" * 64}}})
    with pytest.raises(TaskDataError, match=r"could not download http://127\.0\.0\.1:9/.*by hand"):
        fetch(task, tmp_path, base_url="http://127.0.0.1:9", timeout=5)


def test_declarations_are_checked(tmp_path):
    bad_path = StandIn("t", {"subdir": "s", "source": {"repo": REPO, "commit": COMMIT},
                             "files": {"../escape.txt": {"upstream": "x", "sha256": "a" * 64}}})
    with pytest.raises(TaskDataError, match="relative path"):
        fetch(bad_path, tmp_path)
    bad_sha = StandIn("t", {"subdir": "s", "source": {"repo": REPO, "commit": COMMIT},
                            "files": {"x": {"upstream": "x", "sha256": "abc"}}})
    with pytest.raises(TaskDataError, match="64 hex"):
        verify([bad_sha], tmp_path)
    with pytest.raises(TaskDataError, match="no data files"):
        fetch(StandIn("synthetic"), tmp_path)


def test_verify_ok_missing_mismatch_and_shared_files(tmp_path, make_task, originals):
    data = tmp_path / "data"
    (data / "sib200" / "eng_Latn").mkdir(parents=True)
    shutil.copy(originals["sib200/labels.txt"], data / "sib200" / "labels.txt")
    dev = originals[CORRUPT].read_bytes()
    (data / "sib200" / "eng_Latn" / "dev.tsv").write_bytes(dev[:-1])
    a = make_task("sib_a", "sib200", ["labels.txt", "eng_Latn/dev.tsv"])
    b = make_task("sib_b", "sib200", ["labels.txt"])  # shares labels.txt: checked once, reported for sib_a
    p = make_task("pub", "pubmedqa", ["test_ground_truth.json"])
    checks = verify([StandIn("generated"), a, b, p], data)
    got = {(c.task, c.path.relative_to(data).as_posix()): c for c in checks}
    assert sorted(got) == [("pub", "pubmedqa/test_ground_truth.json"), ("sib_a", "sib200/eng_Latn/dev.tsv"),
                           ("sib_a", "sib200/labels.txt")]
    assert got["sib_a", "sib200/labels.txt"].status == "ok"
    assert got["sib_a", "sib200/labels.txt"].actual == got["sib_a", "sib200/labels.txt"].expected
    m = got["sib_a", "sib200/eng_Latn/dev.tsv"]
    assert (m.status, m.actual, m.expected) == ("mismatch", _sha(dev[:-1]), _sha(dev))
    assert (got["pub", "pubmedqa/test_ground_truth.json"].status,
            got["pub", "pubmedqa/test_ground_truth.json"].actual) == ("missing", None)


def test_verify_rejects_conflicting_declarations(tmp_path, make_task):
    a = make_task("a", "sib200", ["labels.txt"])
    b = make_task("b", "sib200", [], extra={"labels.txt": {"upstream": "data/labels.txt", "sha256": "b" * 64}})
    with pytest.raises(TaskDataError, match="different sha256"):
        verify([a, b], tmp_path)


@pytest.fixture
def registered(monkeypatch, make_task):
    """Stand-in tasks behind `get_task` / `list_tasks` as the CLI sees them."""
    import tasks

    reg = {t.name: t for t in (make_task("sib_labels", "sib200", ["labels.txt"]),
                               make_task("pub", "pubmedqa", ["test_ground_truth.json"]), StandIn("generated"))}

    def get_task(name):
        from scd.registry import Registry

        r = Registry("task")
        for k, v in reg.items():
            r.add(k, v)
        return r.get(name)

    monkeypatch.setattr(tasks, "get_task", get_task)
    monkeypatch.setattr(tasks, "list_tasks", lambda: list(reg.values()))
    return reg


def test_cli_verify_and_fetch(server, tmp_path, monkeypatch, capsys, registered):
    base, requests = server
    data = tmp_path / "data"
    monkeypatch.setenv("SCD_DATA_DIR", str(data))
    monkeypatch.delenv("SCD_FETCH_BASE_URL", raising=False)

    assert main(["data", "verify"]) == 1
    out, err = capsys.readouterr()
    assert "missing" in out and "sib_labels" in out and "0 of 2 files ok" in out
    assert "scd data fetch sib_labels pub" in err

    assert main(["data", "fetch", "sib_labels", "pub", "--base-url", base]) == 0
    assert len(requests) == 2
    assert main(["data", "verify"]) == 0
    assert "2 of 2 files ok" in capsys.readouterr().out
    assert main(["data", "fetch", "pub", "--base-url", base]) == 0
    assert "present" in capsys.readouterr().out and len(requests) == 2

    (data / "pubmedqa" / "test_ground_truth.json").unlink()
    assert main(["data", "verify", "sib_labels"]) == 0  # only the named task
    assert main(["data", "verify", "pub", "--data-dir", str(data)]) == 1
    capsys.readouterr()

    assert main(["data", "verify", "sib_label"]) == 2  # unknown name: the registry's error with a suggestion
    assert "Did you mean 'sib_labels'" in capsys.readouterr().err
    assert main(["data", "fetch", "generated"]) == 2
    assert "no data files" in capsys.readouterr().err


# -- a run's start-up on a machine without the data: the per-user cache, filled from upstream ------------------

@pytest.fixture
def upstream(tmp_path, monkeypatch, shared_data):
    """The real pubmedqa task's upstream files (copies from the shared data), served as raw.githubusercontent.com
    lays them out, with $SCD_FETCH_BASE_URL pointing at it, no $SCD_DATA_DIR and $XDG_CACHE_HOME in tmp.
    Yields (base URL, requested paths, the cache's data directory)."""

    files = declared_files(get_task("pubmedqa"))
    missing = [str(shared_data / f.subdir / f.name) for f in files if not (shared_data / f.subdir / f.name).is_file()]
    if missing:
        unavailable(f"real data files not found: {missing}")
    www = tmp_path / "upstream"
    for f in files:
        dst = www / f.repo / f.commit / f.upstream
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shared_data / f.subdir / f.name, dst)
    monkeypatch.delenv("SCD_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    serving = _serve(www)
    base, requests = next(serving)
    monkeypatch.setenv("SCD_FETCH_BASE_URL", base)
    yield base, requests, tmp_path / "cache" / "scd-bench" / "data"
    next(serving, None)


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_resolve_data_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("SCD_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert resolve_data_dir(None) == (tmp_path / "xdg" / "scd-bench" / "data", True)
    assert resolve_data_dir("") == (tmp_path / "xdg" / "scd-bench" / "data", True)
    assert data_dir({"data_dir": None}) == data_dir({}) == tmp_path / "xdg" / "scd-bench" / "data"
    assert resolve_data_dir("~/d") == (Path.home() / "d", False)  # a configured directory: read only
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")  # ignored, as the XDG spec says
    assert resolve_data_dir(None) == (Path.home() / ".cache" / "scd-bench" / "data", True)
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert resolve_data_dir(None) == (Path.home() / ".cache" / "scd-bench" / "data", True)
    monkeypatch.setenv("SCD_DATA_DIR", str(tmp_path / "env"))  # wins over the config key
    assert resolve_data_dir("elsewhere") == (tmp_path / "env", False)
    assert data_dir({"data_dir": "elsewhere"}) == tmp_path / "env"
    monkeypatch.setenv("SCD_DATA_DIR", "")  # empty counts as unset
    assert resolve_data_dir("elsewhere") == (Path("elsewhere"), False)


def test_startup_fetches_missing_data_into_the_cache(upstream):
    _, requests, cache = upstream
    task = get_task("pubmedqa")
    root, fetch_allowed = resolve_data_dir(None)
    assert (root, fetch_allowed) == (cache, True)
    said = []
    got = ensure_files(task, root, fetch_allowed, say=said.append)
    assert _files(cache) == ["pubmedqa/ori_pqal.json", "pubmedqa/test_ground_truth.json"] == \
        sorted(p.relative_to(cache).as_posix() for p in got)
    assert [c.status for c in verify([task], cache)] == ["ok", "ok"]
    assert len(said) == 1 and str(cache / "pubmedqa") in said[0] and "sha256 verified" in said[0]
    assert len(requests) == 2
    task.load(cache, {"max_train": 4, "max_test": 4})  # the prepare stage reads it there

    # the next start finds it all in place: hashed, not downloaded, nothing said
    assert ensure_files(task, root, fetch_allowed, say=said.append) == [] and len(said) == 1 and len(requests) == 2
    # a file changed in the cache is fetched again
    (cache / "pubmedqa" / "test_ground_truth.json").write_text("{}")
    assert ensure_files(task, root, fetch_allowed, say=said.append) == [cache / "pubmedqa" / "test_ground_truth.json"]
    assert [c.status for c in verify([task], cache)] == ["ok", "ok"] and len(requests) == 3


def test_startup_refuses_a_tampered_upstream_file(server, tmp_path, monkeypatch, make_task, originals):
    base, requests = server
    monkeypatch.delenv("SCD_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("SCD_FETCH_BASE_URL", base)
    task = make_task("sib200_eng_latn", "sib200", ["eng_Latn/dev.tsv", "labels.txt"])  # the server's dev.tsv is corrupt
    root, fetch_allowed = resolve_data_dir(None)
    said = []
    with pytest.raises(ChecksumError) as err:
        ensure_files(task, root, fetch_allowed, say=said.append)
    expected = sha256_file(originals[CORRUPT])
    served = (tmp_path / "www" / REPO / COMMIT / "data/annotated/eng_Latn/dev.tsv").read_bytes()
    assert expected in str(err.value) and _sha(served) in str(err.value) and "sha256" in str(err.value)
    assert _files(root) == [] and said == [] and len(requests) == 1


def test_explicit_data_dir_is_never_written(upstream, tmp_path, monkeypatch, shared_data):
    _, requests, cache = upstream
    task = get_task("pubmedqa")
    given = tmp_path / "given"
    given.mkdir()
    for how in ("env", "config"):
        if how == "env":
            monkeypatch.setenv("SCD_DATA_DIR", str(given))
            root, fetch_allowed = resolve_data_dir(None)
        else:
            monkeypatch.delenv("SCD_DATA_DIR")
            root, fetch_allowed = resolve_data_dir(str(given))
        assert (root, fetch_allowed) == (given, False)
        with pytest.raises(TaskDataError) as err:
            ensure_files(task, root, fetch_allowed)
        msg = str(err.value)
        assert "data not found" in msg and "scd data fetch pubmedqa" in msg and str(given / "pubmedqa") in msg
    # a file that differs from the pinned one is reported, not replaced
    (given / "pubmedqa").mkdir()
    for f in ("ori_pqal.json", "test_ground_truth.json"):
        shutil.copy(shared_data / "pubmedqa" / f, given / "pubmedqa" / f)
    (given / "pubmedqa" / "ori_pqal.json").write_text("{}")
    with pytest.raises(TaskDataError, match=r"differ from the pinned ones: ori_pqal\.json has sha256 "
                                            + _sha(b"{}")) as err:
        ensure_files(task, given, False)
    assert "scd data fetch pubmedqa --data-dir" in str(err.value)
    assert (given / "pubmedqa" / "ori_pqal.json").read_text() == "{}"
    assert requests == [] and _files(cache) == []


def test_startup_without_network_says_how_to_fix_it(tmp_path, monkeypatch):
    monkeypatch.delenv("SCD_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("SCD_FETCH_BASE_URL", "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(TaskDataError) as err:
        ensure_files(get_task("pubmedqa"), *resolve_data_dir(None), timeout=5)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("task 'pubmedqa': could not fetch its data")
    assert "http://127.0.0.1:9/pubmedqa/pubmedqa/" in msg and "SCD_DATA_DIR" in msg
    assert "`scd data fetch pubmedqa` on a machine with internet" in msg
    assert _files(tmp_path / "cache") == []


def test_dry_run_fetches_into_the_cache(upstream, tmp_path):
    base, requests, cache = upstream
    env = {"SCD_DATA_DIR": "", "XDG_CACHE_HOME": str(tmp_path / "cache"), "SCD_FETCH_BASE_URL": base}
    code, out = dry_run(tmp_path / "work", "--config", "tasks=[pubmedqa]", env=env)
    assert code == 0, out
    assert _files(cache) == ["pubmedqa/ori_pqal.json", "pubmedqa/test_ground_truth.json"]
    assert f"(sha256 verified) into {cache / 'pubmedqa'}" in out
    assert len(requests) == 2
