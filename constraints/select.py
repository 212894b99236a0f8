"""Print the pip constraints file for one Airflow minor on the Python running this script.

The full files (constraints/airflow-MINOR.txt) are a ``pip freeze`` made on one Python version (their
first line says which): on that Python they reproduce the tested working set exactly. On another
Python some of those exact versions may not exist (e.g. newer releases that dropped 3.10), so only
the lines marked ``# pinned:`` apply there (the fixes for dependency drift that breaks an Airflow
release) and pip resolves the rest; they are written to OUT, whose path is printed.

Newer Pythons on which the whole file installs as it is (``FULL_PINS_ALSO_ON``) use it whole: there,
resolving from the ``# pinned:`` lines alone made pip backtrack for over 20 minutes (Python 3.12.1,
Airflow 3.3.2, 2026-11-29), where the full file installs in 2-3 minutes.

    python constraints/select.py MINOR OUT
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

# Pythons, besides the one a file was frozen on, where the whole file installs. Checked on 2026-11-29:
# 3.3 installed and ran the unit and reliability tests (893 passed) on 3.12.1 and 3.13.0; 3.1 and 3.2
# resolved on 3.13.0 (not tried on 3.12) with `pip install --dry-run -c constraints/airflow-MINOR.txt -e '.[dev]'`.
FULL_PINS_ALSO_ON = {"3.12", "3.13"}


def main(minor: str, out: str) -> str:
    full = Path(__file__).with_name(f"airflow-{minor}.txt")
    lines = full.read_text().splitlines()
    made_on = re.search(r"on Python (\d+\.\d+)", lines[0]) if lines else None
    running = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if made_on and (made_on.group(1) == running or running in FULL_PINS_ALSO_ON):
        return str(full)
    pinned = [line for line in lines if not line.startswith("#") and "# pinned:" in line]
    pinned.append(next(line for line in lines if line.lower().startswith("apache-airflow==")))
    Path(out).write_text("\n".join(pinned) + "\n")
    return out


if __name__ == "__main__":
    print(main(*sys.argv[1:3]))
