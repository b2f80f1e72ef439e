"""New MLflow databases for tests, copied from one made once per process.

MLflow makes a new SQLite database by running its whole chain of alembic migrations: 1.5 s on a
quiet machine, 5 s on a busy one, and the suite makes many. A test whose subject is not
database creation starts from a copy instead: the same file MLflow would have made (its tables
at this MLflow's head, ``alembic_version``), without the default experiment, which MLflow's
tracking store creates on first use, with the copy's own artifact location, exactly as on a new
file. steward's tables are not in it: the code under test creates them, as it does on a database
MLflow made.

Tests of creation itself (tests/test_migrations.py, tests/test_db.py), the quickstart and the
servers tests start (``mlflow server`` on a new file) make their databases the ordinary way.
"""

from __future__ import annotations

import atexit
import shutil
import sqlite3
import tempfile
import threading
from pathlib import Path

_lock = threading.Lock()
_template: Path | None = None


def _make_template() -> Path:
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    folder = Path(tempfile.mkdtemp(prefix="steward-mlflow-db-"))
    atexit.register(shutil.rmtree, folder, True)
    path = folder / "mlflow.db"
    store = SqlAlchemyStore(f"sqlite:///{path}", str(folder / "artifacts"))
    store.engine.dispose()
    with sqlite3.connect(path) as conn:
        # the default experiment points into this folder: a copy's store creates its own
        conn.execute("DELETE FROM experiment_tags")
        conn.execute("DELETE FROM experiments")
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'").fetchone():
            conn.execute("DELETE FROM sqlite_sequence")
    return path


def empty_mlflow_db(path: Path) -> str:
    """Write a new, empty MLflow database at ``path`` (which must not exist) and return its
    ``sqlite:///`` URI."""
    global _template
    if path.exists():
        raise FileExistsError(f"{path} exists: a test's new database must be a new file")
    with _lock:
        if _template is None or not _template.is_file():
            _template = _make_template()
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_template, path)
    return f"sqlite:///{path}"
