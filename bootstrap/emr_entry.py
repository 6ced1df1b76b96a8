"""The driver script of the EMR step: ``spark-submit ... s3://<release>/emr_entry.py run --config emr.yaml``.

spark-submit runs a Python file, not a module, so the release ships this file next to the wheel. The
app itself comes from the wheel that ``install.sh`` installed on every node; this only hands the
command line to the app's CLI.
"""

from __future__ import annotations

import sys


def main() -> int | None:
    from streaming.cli import main as app_main

    return app_main()


if __name__ == "__main__":
    sys.exit(main())
