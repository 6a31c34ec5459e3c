"""A throwaway PostgreSQL server for the tests: its own data folder in a temporary directory,
a free local port, trust authentication, no fsync. Debian's `postgresql` package provides
the binaries (`make test` installs it when run as root, scripts/get_data.py); without them
the tests that need a server are skipped, saying why.

As root the server runs as the `postgres` user (PostgreSQL refuses to run as root), each
command dropping privileges in its child process only.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile


def pg_bindir() -> str | None:
    """$NETSPEC_PG_BINDIR, else the newest /usr/lib/postgresql/<version>/bin (Debian), else
    where pg_ctl on PATH really lives."""
    candidates = [os.environ.get("NETSPEC_PG_BINDIR", "")]
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True)
    if shutil.which("pg_ctl"):
        candidates.append(os.path.dirname(os.path.realpath(shutil.which("pg_ctl") or "")))
    for d in candidates:
        if d and all(os.path.exists(os.path.join(d, b)) for b in ("initdb", "pg_ctl", "createdb")):
            return d
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgServer:
    def __init__(self, dbname: str = "studies"):
        bindir = pg_bindir()
        if bindir is None:
            raise RuntimeError("PostgreSQL is not installed (Debian: apt-get install postgresql; `make test` "
                               "installs it when run as root)")
        self.bindir, self.dbname = bindir, dbname
        self.user: tuple[int, int] | None = None
        if os.geteuid() == 0:
            name = "postgres" if _user_exists("postgres") else "nobody"
            pw = pwd.getpwnam(name)
            self.user = (pw.pw_uid, pw.pw_gid)

    def _run(self, *args: str) -> None:
        extra = {} if self.user is None else {"user": self.user[0], "group": self.user[1], "extra_groups": []}
        subprocess.run([os.path.join(self.bindir, args[0]), *args[1:]], check=True, capture_output=True, text=True,
                       cwd=self.tmp, timeout=120, **extra)  # type: ignore[call-overload]

    def start(self) -> PgServer:
        self.tmp = tempfile.mkdtemp(prefix="netspec_pg_")
        if self.user is not None:
            os.chown(self.tmp, *self.user)
        self.data, self.port = os.path.join(self.tmp, "data"), free_port()
        self._run("initdb", "-D", self.data, "-U", "netspec", "--auth=trust", "-E", "UTF8", "--no-locale",
                  "--no-sync")
        opts = (f"-p {self.port} -k {self.tmp} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=50")
        self._run("pg_ctl", "-D", self.data, "-o", opts, "-l", os.path.join(self.tmp, "log"), "-w", "-t", "60", "start")
        self._run("createdb", "-h", self.tmp, "-p", str(self.port), "-U", "netspec", self.dbname)
        return self

    @property
    def url(self) -> str:
        return f"postgresql://netspec@127.0.0.1:{self.port}/{self.dbname}"

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._run("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.tmp, ignore_errors=True)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False
