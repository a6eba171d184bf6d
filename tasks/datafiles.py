"""Check and download the data files that tasks declare, pinned by repository commit and sha256.

A task's `data` declaration names a folder under the data directory, the upstream repository and commit, and for
each local file its path in that repository and its sha256:

    data:
      subdir: jmed_llm
      source: {repo: sociocom/JMED-LLM, commit: 3774a34..., licence: CC-BY-4.0}
      files:
        all/CRADE.csv: {upstream: datasets/all/CRADE.csv, sha256: 238a95...}

`verify` compares the files on disk with their checksums; `fetch` downloads a task's files from
`<base>/<repo>/<commit>/<upstream>` (raw.githubusercontent.com unless told otherwise) and moves each into place
only after its checksum matched. Downloads are only ever written and hashed, never executed or unpickled.

Where the data lives (`resolve_data_dir`): a directory given explicitly ($SCD_DATA_DIR, else the config key
`data_dir`) is only read, never written; with neither, a per-user cache ($XDG_CACHE_HOME/scd-bench/data, by default
~/.cache/scd-bench/data) into which `ensure_files` fetches what is missing at the start of a run.
"""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable

from tasks import TaskDataError

RAW_BASE = "https://raw.githubusercontent.com"
BASE_URL_ENV = "SCD_FETCH_BASE_URL"
DATA_DIR_ENV = "SCD_DATA_DIR"
CACHE_SUBDIR = Path("scd-bench") / "data"
CHUNK = 1 << 20
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ChecksumError(TaskDataError):
    """A downloaded file's sha256 differs from the one its task declares; nothing was written in its place."""


class ModifiedDataError(TaskDataError):
    """A data file's sha256 differs from its task's declaration and the config does not allow modified data."""


class DownloadError(TaskDataError):
    """A download failed (HTTP error, no network, disk): `url` and `reason` say which and why."""

    def __init__(self, message: str, url: str, reason: str):
        super().__init__(message)
        self.url, self.reason = url, reason


@dataclass
class FileCheck:
    task: str            # the first task (in the order given) that declares this file
    path: Path           # data_dir / subdir / file
    status: str          # ok | missing | mismatch
    expected: str        # declared sha256
    actual: str | None   # sha256 on disk (None when missing)


@dataclass(frozen=True)
class DeclaredFile:
    task: str
    subdir: str
    name: str            # local path under subdir (posix)
    upstream: str        # path in the repository at `commit`
    sha256: str
    repo: str
    commit: str

    def path(self, data_dir: Path) -> Path:
        return Path(data_dir) / self.subdir / self.name

    def url(self, base_url: str | None = None) -> str:
        return upstream_url(self.repo, self.commit, self.upstream, base_url)


def cache_dir() -> Path:
    """The per-user data cache: $XDG_CACHE_HOME/scd-bench/data, else ~/.cache/scd-bench/data (a relative
    $XDG_CACHE_HOME is ignored, as the XDG spec says)."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / CACHE_SUBDIR


def resolve_data_dir(configured: str | os.PathLike | None) -> tuple[Path, bool]:
    """(data directory, whether missing files may be fetched into it). $SCD_DATA_DIR wins over `configured` (the
    config key data_dir); either is an explicit directory, which is never written to. With neither (unset or
    empty), the per-user cache, which is filled on demand."""
    explicit = os.environ.get(DATA_DIR_ENV) or configured
    if explicit:
        return Path(explicit).expanduser(), False
    return cache_dir(), True


def resolve_base_url(base: str | None = None) -> str:
    """The download base: the argument, else $SCD_FETCH_BASE_URL, else raw.githubusercontent.com."""
    return (base or os.environ.get(BASE_URL_ENV) or RAW_BASE).rstrip("/")


def upstream_url(repo: str, commit: str, upstream: str, base: str | None = None) -> str:
    quote = lambda s: urllib.parse.quote(s, safe="/")  # noqa: E731  (spaces and non-ASCII in paths)
    return f"{resolve_base_url(base)}/{quote(repo)}/{quote(commit)}/{quote(upstream)}"


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _relative(task: str, what: str, value) -> str:
    """A declared path that must stay inside its folder: relative, no '..', no backslashes."""
    p = PurePosixPath(str(value))
    if not isinstance(value, str) or not value or "\\" in value or p.is_absolute() or ".." in p.parts:
        raise TaskDataError(f"task {task!r}: data {what} {value!r} must be a relative path without '..'")
    return str(p)


def declared_files(task) -> list[DeclaredFile]:
    """The files a task declares, sorted by local path; [] for a task without `data` (generated examples).
    A malformed declaration raises TaskDataError naming the task and the key."""
    data = getattr(task, "data", None)
    if not data:
        return []
    name = task.name
    src = data.get("source") or {}
    if not isinstance(src, dict) or not src.get("repo") or not src.get("commit"):
        raise TaskDataError(f"task {name!r}: data.source must give repo and commit, got {src!r}")
    subdir = _relative(name, "subdir", data.get("subdir"))
    files = data.get("files") or {}
    if not isinstance(files, dict) or not files:
        raise TaskDataError(f"task {name!r}: data.files must map local paths to {{upstream, sha256}}")
    out = []
    for local in sorted(files):
        spec = files[local]
        if not isinstance(spec, dict) or not spec.get("upstream") or not spec.get("sha256"):
            raise TaskDataError(f"task {name!r}: data.files[{local!r}] must give upstream and sha256, got {spec!r}")
        sha = str(spec["sha256"]).lower()
        if not _SHA256.match(sha):
            raise TaskDataError(f"task {name!r}: data.files[{local!r}].sha256 is not 64 hex digits: {spec['sha256']!r}")
        out.append(DeclaredFile(name, subdir, _relative(name, "file", local),
                                _relative(name, "upstream path", spec["upstream"]), sha,
                                str(src["repo"]), str(src["commit"])))
    return out


def verify(tasks: Iterable, data_dir: str | Path) -> list[FileCheck]:
    """Check every declared file of `tasks` on disk: one FileCheck per (subdir, file), in task order, even when
    several tasks declare it (the first declaring task is reported). Two tasks declaring the same file with
    different checksums is an error in the declarations (TaskDataError)."""
    seen: dict[tuple[str, str], DeclaredFile] = {}
    checks = []
    for task in tasks:
        for f in declared_files(task):
            key = (f.subdir, f.name)
            if key in seen:
                if seen[key].sha256 != f.sha256:
                    raise TaskDataError(f"tasks {seen[key].task!r} and {f.task!r} declare {f.subdir}/{f.name} with "
                                        f"different sha256 ({seen[key].sha256} vs {f.sha256})")
                continue
            seen[key] = f
            path = f.path(data_dir)
            if not path.is_file():
                checks.append(FileCheck(f.task, path, "missing", f.sha256, None))
                continue
            actual = sha256_file(path)
            checks.append(FileCheck(f.task, path, "ok" if actual == f.sha256 else "mismatch", f.sha256, actual))
    return checks


ALLOW_MODIFIED_KEY = "allow_modified_data"


def _stop_if_missing(task, root: Path, checks: list[FileCheck]) -> None:
    """A TaskDataError when any of `checks` is a missing file: the task's own message (it names `scd data fetch`
    and $SCD_DATA_DIR), else one naming the files and their folder."""
    missing = [c for c in checks if c.status == "missing"]
    if not missing:
        return
    check = getattr(task, "check_files", None)
    if check is not None:
        check(root)
    folder = root / declared_files(task)[0].subdir
    names = ", ".join(str(c.path.relative_to(folder)) for c in missing)
    raise TaskDataError(f"task {task.name!r}: data not found: {names} missing in {folder.resolve()}; "
                        f"`scd data fetch {task.name}` downloads and verifies it.")


def check_pinned(task, data_dir: str | Path, allow_modified: bool = False) -> dict[str, dict[str, str]]:
    """The sha256 found for each declared file of `task` against the declared one, as {file: {expected, found}}
    with `file` its path under the data directory (subdir/name); {} for a task without data. What a prepare job
    checks before it reads the data: a missing file raises the task's own message (TaskDataError), a file that
    differs raises ModifiedDataError naming the file, both hashes and `scd data fetch`, unless `allow_modified`
    (the config key allow_modified_data: the user changed the data on purpose; the caller records what it found)."""
    root = Path(data_dir)
    checks = verify([task], root)
    _stop_if_missing(task, root, checks)
    out = {c.path.relative_to(root).as_posix(): {"expected": c.expected, "found": c.actual} for c in checks}
    bad = [c for c in checks if c.status == "mismatch"]
    if bad and not allow_modified:
        wrong = "; ".join(f"{c.path} has sha256 {c.actual}, expected {c.expected}" for c in bad)
        raise ModifiedDataError(
            f"task {task.name!r}: data differs from its task declaration: {wrong}. "
            f"`scd data fetch {task.name} --data-dir {root.resolve()}` replaces it with the pinned file; to use "
            f"data changed on purpose, set the config key {ALLOW_MODIFIED_KEY}: true (the sha256 found is recorded "
            f"in MLflow and in the prepared manifest).")
    return out


def fetch(task, data_dir: str | Path, base_url: str | None = None, timeout: float = 60,
          on_file: Callable[[str, Path], None] | None = None, keep_modified: bool = False) -> list[Path]:
    """Download the task's declared files into data_dir/subdir, in sorted order; return the paths downloaded.

    A file already present with the declared sha256 is not downloaded again (`on_file("present", path)`; a
    downloaded one gives `on_file("fetched", path)`). Each download goes to a temporary file in the target
    folder and replaces the target atomically only when its sha256 matches; otherwise the temporary file is
    deleted, an existing file stays as it was and ChecksumError is raised. A network error raises TaskDataError.
    Either stops the task at that file; the files before it stay in place. `keep_modified`: a present file whose
    sha256 differs is left as it is (`on_file("modified", path)`), only missing ones are downloaded.
    """
    files = declared_files(task)
    if not files:
        raise TaskDataError(f"task {task.name!r} declares no data files to fetch (its examples are generated)")
    done = []
    for f in files:
        path = f.path(data_dir)
        same = path.is_file() and sha256_file(path) == f.sha256
        if same or (keep_modified and path.is_file()):
            if on_file:
                on_file("present" if same else "modified", path)
            continue
        _download(f, path, f.url(base_url), timeout)
        done.append(path)
        if on_file:
            on_file("fetched", path)
    return done


def _download(f: DeclaredFile, path: Path, url: str, timeout: float) -> None:
    folder = path.parent
    hint = (f"The file can also be copied by hand to {path.resolve()} (folder {folder.resolve()}); "
            f"it is {f.upstream} of {f.repo} at commit {f.commit}.")
    tmp = None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".part")
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                while chunk := resp.read(CHUNK):
                    h.update(chunk)
                    out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        actual = h.hexdigest()
        if actual != f.sha256:
            raise ChecksumError(
                f"task {f.task!r}: {f.subdir}/{f.name} downloaded from {url} has sha256 {actual}, expected "
                f"{f.sha256}; not written{' (the existing file is unchanged)' if path.exists() else ''}. "
                f"The upstream file differs from the pinned one: check the task's data declaration. {hint}")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        tmp = None
    except urllib.error.HTTPError as e:
        why = f"HTTP {e.code} {e.reason}"
        raise DownloadError(f"task {f.task!r}: could not download {url}: {why}. {hint}", url, why) from None
    except urllib.error.URLError as e:
        why = str(e.reason)
        raise DownloadError(f"task {f.task!r}: could not download {url}: {why}. {hint}", url, why) from None
    except (OSError, HTTPException) as e:
        why = f"{type(e).__name__}: {e}"
        raise DownloadError(f"task {f.task!r}: could not download {url} to {path}: {why}. {hint}",
                            url, why) from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass


def ensure_files(task, root: str | Path, fetch_allowed: bool, base_url: str | None = None,
                 say: Callable[[str], None] = print, timeout: float = 60, allow_modified: bool = False) -> list[Path]:
    """Make sure the task's declared files are in `root` with their pinned sha256 before a run uses them; return
    the paths downloaded ([] when all were there, or the task declares none).

    Every present file is hashed (the whole data of all tasks, ~25 MB, hashes in well under a second). What is
    missing or differs is fetched when `fetch_allowed` (the per-user cache; see `resolve_data_dir`), each file
    verified before it is moved into place, and `say` gets one line naming the folder. Otherwise (an explicit data
    directory, never written to) TaskDataError says what is wrong and how to fix it. A failed download raises
    TaskDataError in one line: what failed, the URL and the ways round it.

    `allow_modified` (the config key allow_modified_data): files that differ from their pinned sha256 are used as
    they are, never replaced (`say` names them); missing ones are still fetched or reported."""
    files = declared_files(task)
    if not files:
        return []
    root = Path(root)
    folder = (root / files[0].subdir).resolve()
    bad = [c for c in verify([task], root) if c.status != "ok"]
    if allow_modified:
        changed = [c for c in bad if c.status == "mismatch"]
        if changed:
            say(f"task {task.name!r}: using {len(changed)} data file{'s' * (len(changed) != 1)} that "
                f"{'differ' if len(changed) != 1 else 'differs'} from "
                f"the pinned ones ({ALLOW_MODIFIED_KEY}: true): "
                + ", ".join(str(c.path.relative_to(root / files[0].subdir)) for c in changed))
        bad = [c for c in bad if c.status == "missing"]
    if not bad:
        return []
    if not fetch_allowed:
        _stop_if_missing(task, root, bad)
        wrong = "; ".join(f"{c.path.relative_to(root / files[0].subdir)} has sha256 {c.actual}, expected "
                          f"{c.expected}" for c in bad)
        raise TaskDataError(
            f"task {task.name!r}: data files in {folder} differ from the pinned ones: {wrong}. "
            f"The data directory {root.resolve()} was given explicitly ($SCD_DATA_DIR or the config key data_dir), "
            f"so it is not changed here: `scd data fetch {task.name} --data-dir {root.resolve()}` replaces them "
            f"with the pinned files, `scd data verify {task.name}` lists them; to use data changed on purpose, set "
            f"the config key {ALLOW_MODIFIED_KEY}: true.")
    try:
        got = fetch(task, root, base_url, timeout, keep_modified=allow_modified)
    except DownloadError as e:
        src = files[0]
        raise TaskDataError(
            f"task {task.name!r}: could not fetch its data ({e.reason}) from {e.url} into {folder}. Without access "
            f"to {src.repo} here, run `scd data fetch {task.name}` on a machine with internet and copy the "
            f"'{src.subdir}/' folder it fills into {root.resolve()}, or set $SCD_DATA_DIR to a folder holding "
            f"'{src.subdir}/'.") from None
    say(f"task {task.name!r}: fetched {len(got)} data file{'s' * (len(got) != 1)} from {files[0].repo} at commit "
        f"{files[0].commit[:12]} (sha256 verified) into {folder}")
    return got
