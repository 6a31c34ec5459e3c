"""Where a study lives: the tune folder, its journal, or a database; which study is whose.

In: the tune folder (`runs/<model>-tune/`), an optional `--storage` URL, the study's name
and identity. Out: an Optuna storage and the study, created once or loaded; refusals as
``NetspecError``s (a folder of another spec or storage, a URL that cannot connect, a
missing database driver) with no traceback.

- The default storage is Optuna's JournalStorage on `study.journal` in the tune folder,
  locked with flock(2): the kernel drops the lock of a killed process, so a `kill -9` never
  leaves a stale lock that stalls the other workers (Optuna's own file locks wait out a
  30 s grace period). Safe for any number of processes on one machine (a local disk).
- `--storage URL` is any SQLAlchemy URL (`postgresql://user@host/db`, `sqlite:///s.db`):
  an RDBStorage with a connect timeout and heartbeats, so a worker on another machine that
  dies has its trial failed and retried by the others after the grace period.
- A study remembers the spec and search space it was made from (its identity, in the
  study's user attributes); a spec or space that differs is refused rather than mixed in.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from netspec.errors import NetspecError, error
from netspec.util import atomic_write_text, ensure_folder, write_error

TUNE_FORMAT = "netspec-tune-1"
TUNE_FILE = "tune.json"
JOURNAL = "study.journal"
CONNECT_TIMEOUT_S = 10
HEARTBEAT_S = (10, 60)  # RDB heartbeat interval and grace period; NETSPEC_TUNE_HEARTBEAT="1,4" in tests
MAX_RETRY = 3  # a killed trial is retried this many times (then its values are given up)


class FlockLock:
    """A lock for Optuna's JournalFileBackend (acquire/release) on flock(2). Local file
    systems only; the journal is for one machine (a database shares a study between many)."""

    def __init__(self, path: str):
        self.path = path + ".flock"  # not Optuna's `.lock` name: its own locks create and delete that one
        self.fd: int | None = None

    def acquire(self) -> bool:
        if self.fd is not None:  # an interrupt landed between an acquire and its release
            self.release()
        fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self.fd = fd
        return True

    def release(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def journal_backend(path: str) -> Any:
    """Optuna's journal file on `FlockLock`, whose appends leave no torn line: a write that
    fails (a full disk, the file-size limit) is cut back off under the lock and raised as an
    OSError naming the journal (Optuna's own append would leave half a line, which the next
    append turns into a line no reader can decode, and a study that cannot be continued)."""
    from optuna.storages.journal import JournalFileBackend

    class UntornJournal(JournalFileBackend):
        def append_logs(self, logs: list[dict[str, Any]]) -> None:
            data = "".join(json.dumps(log, separators=(",", ":")) + "\n" for log in logs).encode("utf-8")
            lock.acquire()
            try:
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    start = os.lseek(fd, 0, os.SEEK_END)
                    try:
                        view = memoryview(data)
                        while view:
                            view = view[os.write(fd, view):]
                        os.fsync(fd)
                    except OSError as e:
                        with contextlib.suppress(OSError):
                            os.ftruncate(fd, start)
                        raise OSError(e.errno, e.strerror, path) from None
                finally:
                    os.close(fd)
            finally:
                lock.release()

    lock = FlockLock(path)
    return UntornJournal(path, lock_obj=lock)  # type: ignore[arg-type]


def journal_failure(e: BaseException) -> OSError | None:
    """The journal append that failed somewhere in `e`'s chain (Optuna re-raises it from its
    trial bookkeeping as `AssertionError: Should not reach.`), or None."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [e]
    while todo:
        x = todo.pop()
        if x is None or id(x) in seen:
            continue
        seen.add(id(x))
        if isinstance(x, OSError) and x.errno and isinstance(x.filename, str) and x.filename.endswith(JOURNAL):
            return x
        todo += [x.__cause__, x.__context__]
    return None


@contextlib.contextmanager
def journal_writes() -> Iterator[None]:
    """A failed journal append, however deep in Optuna, as the user error it is: the journal's
    path and what the disk said ("no space left on device", "file too large")."""
    try:
        yield
    except NetspecError:
        raise
    except Exception as e:
        failed = journal_failure(e)
        if failed is None:
            raise
        raise write_error(str(failed.filename), failed) from None


# ---------------------------------------------------------------- the tune folder


def prepare_folder(folder: Path, spec_path: str, storage_url: str | None) -> None:
    """Make `folder` this study's (tune.json), or refuse one that is not a tune folder or
    keeps its study elsewhere (its journal against a database, or another database)."""
    marker = folder / TUNE_FILE
    where = redact(storage_url) if storage_url else "journal"
    if folder.exists() and not folder.is_dir():
        raise error(f"{folder}: is a file, not a tune folder", "give --out a folder path")
    if marker.is_file():
        info = read_marker(folder)
        if info.get("format") != TUNE_FORMAT:
            raise error(f"{folder}/{TUNE_FILE} is not netspec's", "choose another folder with --out")
        if info.get("storage") != where:
            raise error(f"{folder} holds a study kept in {info.get('storage')}, not in {where}",
                        "use the same --storage as before, or give this study its own folder with --out")
        return
    if folder.exists() and any(folder.iterdir()):
        shown = ", ".join(sorted(p.name for p in folder.iterdir())[:5])
        raise error(f"{folder}: the folder exists and is not a netspec tune folder (it holds {shown})",
                    "choose another folder with --out; netspec writes only into folders it made")
    ensure_folder(folder)
    atomic_write_text(marker, json.dumps({"format": TUNE_FORMAT, "spec": os.path.abspath(spec_path),
                                          "storage": where, "created": time.time()}, indent=2) + "\n")


def read_marker(folder: Path) -> dict[str, Any]:
    try:
        data = json.loads((folder / TUNE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


# ---------------------------------------------------------------- storages


def redact(url: str) -> str:
    """A URL fit to print: the password replaced by ***."""
    return re.sub(r"(://[^/:@]*:)[^@/]*@", r"\1***@", url)


def normalize_url(url: str) -> str:
    """`postgresql://` means psycopg2 here (SQLAlchemy 2 would look for psycopg 3)."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg2://" + url.split("://", 1)[1]
    return url


def connect_timeout() -> int:
    raw = os.environ.get("NETSPEC_TUNE_CONNECT_TIMEOUT", "")
    return int(raw) if raw.isdigit() and int(raw) > 0 else CONNECT_TIMEOUT_S


def heartbeat() -> tuple[int, int]:
    raw = os.environ.get("NETSPEC_TUNE_HEARTBEAT", "")
    try:
        interval, grace = (int(x) for x in raw.split(","))
        if 0 < interval < grace:
            return interval, grace
    except ValueError:
        pass
    return HEARTBEAT_S


def open_storage(folder: Path, url: str | None) -> Any:
    from optuna.exceptions import ExperimentalWarning
    from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback

    if url is None:
        path = str(folder / JOURNAL)
        try:
            return JournalStorage(journal_backend(path))
        except OSError as e:
            raise error(f"{path}: cannot open the study journal ({e.strerror})") from None
    full = normalize_url(url)
    kwargs: dict[str, Any] = {}
    if full.startswith("postgresql+psycopg2://") or full.startswith("mysql"):
        kwargs = {"connect_args": {"connect_timeout": connect_timeout()}}
    interval, grace = heartbeat()
    for attempt in range(6):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            try:
                return RDBStorage(full, engine_kwargs=kwargs, heartbeat_interval=interval, grace_period=grace,
                                  heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY))
            except Exception as e:  # noqa: BLE001 - SQLAlchemy and driver errors of every kind
                # two machines creating a fresh database's tables at once: one of them loses, and retries
                if type(e).__name__ not in ("IntegrityError", "ProgrammingError") or attempt == 5:
                    raise storage_error(url, e) from None
        time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def storage_error(url: str, e: BaseException) -> NetspecError:
    """A storage that cannot be opened, said in a line: which URL, and why."""
    shown = redact(url)
    kind = type(e).__name__
    text = str(getattr(e, "orig", None) or e).strip().splitlines()
    first = next((line.strip() for line in text if line.strip()), kind)
    first = re.sub(r"\(Background on this error.*", "", first).strip()
    if kind == "NoSuchModuleError" or "Can't load plugin" in first:
        return error(f"--storage {shown}: not a database URL that SQLAlchemy knows ({first})",
                     "e.g. postgresql://user@host/db, mysql+pymysql://user@host/db, sqlite:///study.db")
    if isinstance(e, ImportError) or "No module named" in first or "Failed to import" in first:
        return error(f"--storage {shown}: the database driver is not installed ({first})",
                     "for PostgreSQL: pip install 'netspec[postgres]' (psycopg2)")
    if kind == "ArgumentError":
        return error(f"--storage {shown}: not a database URL ({first})", "e.g. postgresql://user@host/db")
    return error(f"--storage {shown}: cannot connect to the study's database: {first}",
                 f"is the server running and reachable from here? (netspec waits {connect_timeout()} s for it)")


# ---------------------------------------------------------------- the study


def open_study(storage: Any, name: str, identity: dict[str, Any], minimize: bool, url: str | None) -> tuple[Any, bool]:
    """The study `name` (created with `identity` if new; refused if it holds another). Returns
    (study, created). Two processes creating one study at once is fine: one creates it, the
    other loads it (a fresh database's tables are retried as well)."""
    import optuna

    direction: Any = "minimize" if minimize else "maximize"
    last: Exception | None = None
    for attempt in range(5):
        try:
            try:  # load first: a refused study must not get so much as a line written
                study = optuna.load_study(study_name=name, storage=storage)
                break
            except KeyError:
                pass
            try:
                study = optuna.create_study(study_name=name, storage=storage, direction=direction)
                for k, v in identity.items():
                    study.set_user_attr(k, v)
                return study, True
            except optuna.exceptions.DuplicatedStudyError:
                study = optuna.load_study(study_name=name, storage=storage)
                break
        except NetspecError:
            raise
        except Exception as e:  # noqa: BLE001 - a race creating the tables of a fresh database
            if journal_failure(e) is not None:  # the journal could not be written: said by journal_writes
                raise
            last = e
            time.sleep(0.3 * (attempt + 1))
    else:
        raise storage_error(url or "journal", last or RuntimeError("unknown"))
    for _ in range(50):  # the creator writes the identity just after creating the study
        if study.user_attrs.get("netspec_identity"):
            break
        time.sleep(0.1)
        study = optuna.load_study(study_name=name, storage=storage)
    refuse_other(study, identity, name, url)
    return study, False


def refuse_other(study: Any, identity: dict[str, Any], name: str, url: str | None) -> None:
    stored = study.user_attrs
    if stored.get("netspec_identity") == identity["netspec_identity"]:
        return
    where = f"`{name}` in {redact(url)}" if url else f"the study in {name}"
    changes = identity_changes(stored, identity)
    raise error(f"{where} was made from another spec or search space; netspec does not mix studies"
                + (":\n" + "\n".join(f"  {c}" for c in changes) if changes else ""),
                "continue it with the spec it was made from, or start a new study: another folder (--out) "
                "or name (--study), or move the old one away")


def identity_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between a stored identity and this spec's, in `key: a -> b` lines."""
    from netspec.syntax.parser import parse
    from netspec.train.checkpoint import diff_views, spec_view

    out = []
    if old.get("netspec_model") != new.get("netspec_model"):
        out.append(f"model: {old.get('netspec_model')} -> {new.get('netspec_model')}")
    try:
        views = [spec_view(parse(str(x.get("netspec_spec", "")), "<study>")) for x in (old, new)]
        out += [f"{k}: {a if a is not None else '(absent)'} -> {b if b is not None else '(absent)'}"
                for k, a, b in diff_views(*views)]
    except NetspecError:
        pass
    if old.get("netspec_space") != new.get("netspec_space"):
        out.append(f"search space: {old.get('netspec_space')} -> {new.get('netspec_space')}")
    if old.get("netspec_metric") != new.get("netspec_metric"):
        out.append(f"metric: {old.get('netspec_metric')} -> {new.get('netspec_metric')}")
    return out
