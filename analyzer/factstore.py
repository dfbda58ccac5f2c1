"""The fact store: what earlier runs learned, kept in one SQLite file between runs.

Four tables, each keyed so that a stale entry can never be read:
- ``files``: per source file, its lowered IR without the function bodies (or why it
  was not lowered), keyed by its path in the tree and the hash of its bytes, and
  whether it holds IR;
- ``bodies``: the function bodies of each lowered file, under the same key: a run reads
  every file's call graph, but the bodies of only a few files, each when an analysis
  first asks for one;
- ``results``: a whole run's result, keyed by the hash of every input it read (the
  scanned files, the headers and mm/ files its context comes from, the top Makefile,
  the paths and options);
- ``stats``: the content hash of a file by (device, inode, mtime, size), so a warm run
  hashes only the files whose metadata changed, the way git's index does; hard links
  share theirs (patch mode links the tree it patches).

Every entry also carries the `salt`, a hash of krefaudit's own code and rule data: a
new version of either starts from an empty store (old entries are dropped on open).

Entries are pickled, so the store must be as private as the user's shell history: the
directory is created 0700, and a store that another user owns or others can write to
is refused. Each entry carries a checksum; a damaged entry is dropped and rebuilt, a
damaged database file is replaced, and SQLite's journal keeps the file whole when a
run is killed in the middle of a write.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sqlite3
import stat
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import analyzer
from analyzer.rules.loader import rules_dir

DB_NAME = "facts.sqlite"
_SCHEMA = 4  # the tables' layout; a store of another layout is emptied on open
# Asked for this many files, FactStore.files reads the unlowered ones in one query.
_BULK = 10_000
# Results kept per salt: a few trees, subtrees and patch revisions.
_MAX_RESULTS = 32
# A file modified this close to its hashing may change again within the same mtime
# tick; its stat entry is not kept (git's "racily clean" rule).
_RACY_SECONDS = 2.0

Warn = Callable[[str], None]


def default_dir() -> Path:
    """$XDG_CACHE_HOME/krefaudit, else ~/.cache/krefaudit."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "krefaudit"


def digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


@cache
def salt() -> str:
    """Hash of everything a cached entry depends on besides its inputs: krefaudit's
    code and rule data, the parser's versions and Python's pickle format."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{_SCHEMA} {sys.version} {pickle.HIGHEST_PROTOCOL}".encode())
    for dist in ("tree-sitter", "tree-sitter-c"):
        h.update(f"{dist} {metadata.version(dist)}".encode())
    package = Path(analyzer.__file__).resolve().parent
    for root, pattern in ((package, "*.py"), (rules_dir(), "*.yaml")):
        for f in sorted(root.rglob(pattern)):
            h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


class StoreError(Exception):
    """The store cannot be used at all (unsafe permissions); the message says why."""


def _check_private(path: Path) -> None:
    st = path.stat()
    if st.st_uid != os.getuid():
        raise StoreError(f"{path}: owned by another user; not used")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise StoreError(f"{path}: writable by other users; not used")


class FactStore:
    """One run's view of the store. Failures never stop a run: a damaged entry or
    database is reported through `warn` and the work is done again."""

    def __init__(self, directory: Path, warn: Warn) -> None:
        self.directory = directory
        self.warn = warn
        self.salt = salt()
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        _check_private(directory)
        self.path = directory / DB_NAME
        self.db = self._open()
        self._stats: dict[str, tuple[int, int, str]] | None = None
        self._pending_stats: list[tuple[str, int, int, str]] = []
        self._snapshot: dict[str, str] | None = None

    def _open(self) -> sqlite3.Connection:
        try:
            return self._connect()
        except sqlite3.DatabaseError as e:
            self.warn(f"cache {self.path} is damaged ({e}); starting a new one")
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
            return self._connect()

    def _connect(self) -> sqlite3.Connection:
        if self.path.exists():
            _check_private(self.path)
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        # A damaged text value reads back mangled (and fails its checksum), not as an
        # exception on every later run.
        db.text_factory = lambda b: b.decode("utf-8", "replace")
        try:
            os.chmod(self.path, 0o600)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            if db.execute("PRAGMA user_version").fetchone()[0] != _SCHEMA:
                db.executescript(
                    f"""
                    DROP TABLE IF EXISTS stats; DROP TABLE IF EXISTS files;
                    DROP TABLE IF EXISTS bodies; DROP TABLE IF EXISTS results;
                    PRAGMA user_version = {_SCHEMA};
                    """
                )
            db.executescript(
                """
                CREATE TABLE IF NOT EXISTS stats (
                    inode TEXT PRIMARY KEY, mtime_ns INTEGER, size INTEGER, digest TEXT);
                CREATE TABLE IF NOT EXISTS files (
                    salt TEXT, rel TEXT, digest TEXT, blob BLOB, checksum TEXT,
                    lowered INTEGER, PRIMARY KEY (salt, rel, digest));
                CREATE TABLE IF NOT EXISTS bodies (
                    salt TEXT, rel TEXT, digest TEXT, blob BLOB, checksum TEXT,
                    PRIMARY KEY (salt, rel, digest));
                CREATE TABLE IF NOT EXISTS results (
                    salt TEXT, key TEXT PRIMARY KEY, blob BLOB, checksum TEXT);
                """
            )
            with db:
                db.execute("DELETE FROM files WHERE salt != ?", (self.salt,))
                db.execute("DELETE FROM bodies WHERE salt != ?", (self.salt,))
                db.execute("DELETE FROM results WHERE salt != ?", (self.salt,))
        except BaseException:
            db.close()
            raise
        return db

    def close(self) -> None:
        self.flush()
        self.db.close()

    # ------------------------------------------------------------ content hashes
    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Within the block, each path's hash is worked out once: one scan asks for the
        whole tree's several times (the result's key, the file entries, the context),
        and 55,000 stat calls cost a third of a second."""
        self._snapshot = {}
        try:
            yield
        finally:
            self._snapshot = None

    def file_digest(self, path: str) -> str:
        """The content hash of `path`, read only when its stat entry no longer holds.
        OSError propagates: the caller reports it. (A string, not a Path: a whole tree
        asks for 60,000 of these, and pathlib's overhead was half their time.)"""
        if self._snapshot is not None:
            known = self._snapshot.get(path)
            if known is None:
                known = self._snapshot[path] = self._file_digest(path)
            return known
        return self._file_digest(path)

    def _file_digest(self, path: str) -> str:
        if self._stats is None:
            rows = self._read("SELECT * FROM stats", (), all_rows=True)
            self._stats = {inode: (m, s, d) for inode, m, s, d in rows}
        st = os.stat(path)
        inode = f"{st.st_dev}:{st.st_ino}"
        known = self._stats.get(inode)
        if known is not None and known[:2] == (st.st_mtime_ns, st.st_size):
            return known[2]
        with open(path, "rb") as f:
            d = digest(f.read())
        if time.time() - st.st_mtime_ns / 1e9 > _RACY_SECONDS:
            self._pending_stats.append((inode, st.st_mtime_ns, st.st_size, d))
            self._stats[inode] = (st.st_mtime_ns, st.st_size, d)
        return d

    def flush(self) -> None:
        """Write the stat entries gathered so far."""
        if self._pending_stats:
            self._write("INSERT OR REPLACE INTO stats VALUES (?, ?, ?, ?)", self._pending_stats)
            self._pending_stats = []

    # ------------------------------------------------------------ entries
    def _read(self, sql: str, args: tuple[Any, ...], all_rows: bool = False) -> Any:
        """The query's first row (or all rows); None (or []) when the database fails."""
        try:
            cur = self.db.execute(sql, args)
            return cur.fetchall() if all_rows else cur.fetchone()
        except (sqlite3.Error, ValueError) as e:  # ValueError: a name SQLite cannot take
            self.warn(f"cache {self.path}: not read ({e})")
            return [] if all_rows else None

    def _write(self, sql: str, rows: Iterable[tuple[Any, ...]]) -> None:
        try:
            with self.db:
                self.db.executemany(sql, rows)
        except (sqlite3.Error, ValueError) as e:
            self.warn(f"cache {self.path}: not written ({e})")

    def _load(self, what: str, blob: bytes, checksum: str) -> Any:
        """The entry's object, or None (and a warning) when it is damaged."""
        if isinstance(blob, bytes) and digest(blob) == checksum:
            try:
                return pickle.loads(blob)
            except Exception as e:  # noqa: BLE001 - any failure means a damaged entry
                why = f"{e.__class__.__name__}: {e}"
        else:
            why = "checksum mismatch"
        self.warn(f"cache: damaged entry for {what} ({why}); computed again")
        return None

    def files(self, wanted: Iterable[tuple[str, str]]) -> Iterator[tuple[str, str, Any]]:
        """(rel, digest, object) of the cached ones among `wanted` (rel, digest) pairs.
        Asked for many, it reads the entries of the files not lowered in one query: a
        query per entry costs 7 us, one for all 1 us an entry, and 53,000 of a whole
        tree's 55,000 files are not lowered."""
        wanted = list(wanted)
        unlowered: dict[tuple[str, str], tuple[bytes, str]] = {}
        if len(wanted) >= _BULK:
            rows = self._read(
                "SELECT rel, digest, blob, checksum FROM files WHERE salt = ? AND NOT lowered",
                (self.salt,),
                all_rows=True,
            )
            unlowered = {(rel, d): (blob, checksum) for rel, d, blob, checksum in rows}
        for rel, d in wanted:
            row = unlowered.get((rel, d))
            if row is not None:
                obj = self._checked("files", rel, d, row)
            else:
                obj = self._entry("files", rel, d)
            if obj is not None:
                yield rel, d, obj

    def bodies(self, rel: str, d: str) -> tuple[bytes, ...] | None:
        """The pickled function bodies stored with `rel`'s entry; None when they are
        missing or damaged (and then the file's entry is dropped too)."""
        obj = self._entry("bodies", rel, d)
        if isinstance(obj, tuple) and all(isinstance(b, bytes) for b in obj):
            return obj
        if obj is not None:
            self.warn(f"cache: damaged entry for {rel}'s bodies (not bytes); computed again")
        self._drop(("files", "bodies"), rel, d)
        return None

    def _entry(self, table: str, rel: str, d: str) -> Any:
        row = self._read(
            f"SELECT blob, checksum FROM {table} WHERE salt = ? AND rel = ? AND digest = ?",
            (self.salt, rel, d),
        )
        return None if row is None else self._checked(table, rel, d, row)

    def _checked(self, table: str, rel: str, d: str, row: tuple[bytes, str]) -> Any:
        """The object of a row (blob, checksum) of `table`; None, and the row dropped,
        when it is damaged."""
        obj = self._load(rel if table == "files" else f"{rel}'s bodies", row[0], row[1])
        if obj is None:
            self._drop((table,), rel, d)
        return obj

    def _drop(self, tables: tuple[str, ...], rel: str, d: str) -> None:
        for table in tables:
            self._write(
                f"DELETE FROM {table} WHERE salt = ? AND rel = ? AND digest = ?",
                [(self.salt, rel, d)],
            )

    def put_files(self, entries: Iterable[tuple[str, str, bytes, bytes | None]]) -> None:
        """Store (rel, digest, pickled object, pickled bodies or None) entries."""
        entries = list(entries)
        self._write(
            "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?)",
            (
                (self.salt, rel, d, blob, digest(blob), bodies is not None)
                for rel, d, blob, bodies in entries
            ),
        )
        self._write(
            "INSERT OR REPLACE INTO bodies VALUES (?, ?, ?, ?, ?)",
            (
                (self.salt, rel, d, bodies, digest(bodies))
                for rel, d, _, bodies in entries
                if bodies is not None
            ),
        )

    def result(self, key: str) -> Any:
        row = self._read("SELECT blob, checksum FROM results WHERE key = ?", (key,))
        if row is None:
            return None
        obj = self._load("the run's result", row[0], row[1])
        if obj is None:
            self._write("DELETE FROM results WHERE key = ?", [(key,)])
        return obj

    def put_result(self, key: str, obj: Any) -> None:
        blob = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        self._write(
            "INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?)",
            [(self.salt, key, blob, digest(blob))],
        )
        self._write(
            "DELETE FROM results WHERE rowid NOT IN"
            " (SELECT rowid FROM results ORDER BY rowid DESC LIMIT ?)",
            [(_MAX_RESULTS,)],
        )
