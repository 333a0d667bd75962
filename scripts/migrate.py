"""Migrate the configured database (DATABASE_URL, or the SQLite file under the data dir).

    python scripts/migrate.py upgrade|status|downgrade [--revision R]

The same command as `stratmaster migrate ...`; see stratmaster.db.migrate.run_migrate_command.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Runnable from a checkout without `pip install -e .`.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stratmaster.db.migrate import run_migrate_command  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(run_migrate_command(sys.argv[1:]))
