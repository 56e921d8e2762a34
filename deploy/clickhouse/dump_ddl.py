"""Print the ClickHouse DDL that Driftline's migrations apply (stream.store.client.MIGRATIONS).

    python deploy/clickhouse/dump_ddl.py                 # SQL for database `driftline`
    python deploy/clickhouse/dump_ddl.py --database mon  # another database name
    python deploy/clickhouse/dump_ddl.py --write         # refresh the DDL block of deploy/clickhouse/README.md
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from stream.store.client import DEFAULT_DATABASE, MIGRATIONS  # noqa: E402

README = Path(__file__).resolve().parent / "README.md"
BEGIN = "<!-- BEGIN GENERATED DDL (python deploy/clickhouse/dump_ddl.py --write) -->"
END = "<!-- END GENERATED DDL -->"


def _tidy(statement: str) -> str:
    """First line as is, the rest dedented together: the statement as a person would write it."""
    first, _, rest = statement.strip().partition("\n")
    return first + ("\n" + textwrap.dedent(rest) if rest else "")


def render_ddl(database: str = DEFAULT_DATABASE) -> str:
    """Every migration's statements, in order, each ending with `;`."""
    parts = [f"CREATE DATABASE IF NOT EXISTS {database};"]
    for version, statements in MIGRATIONS:
        parts.append(f"-- migration {version}")
        parts += [_tidy(s.format(db=database)) + ";" for s in statements]
    return "\n\n".join(parts) + "\n"


def readme_block(ddl: str) -> str:
    return f"{BEGIN}\n```sql\n{ddl}```\n{END}"


def write_readme(ddl: str) -> bool:
    """Replace the generated block of README.md; True when the file changed."""
    text = README.read_text()
    start, end = text.index(BEGIN), text.index(END) + len(END)
    updated = text[:start] + readme_block(ddl) + text[end:]
    if updated != text:
        README.write_text(updated)
    return updated != text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", default=DEFAULT_DATABASE)
    parser.add_argument("--write", action="store_true", help="update the DDL block of README.md")
    args = parser.parse_args(argv)
    ddl = render_ddl(args.database)
    if args.write:
        print("README.md updated" if write_readme(ddl) else "README.md already up to date")
    else:
        sys.stdout.write(ddl)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
