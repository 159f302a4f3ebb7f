"""`manage.py qcluster` whose workers pause inside each billing chunk (tests of fanned-out runs, ADR 0115).

`BILLING_TEST_CHUNK_PAUSE_S` seconds after a chunk is billed, before its transaction commits: long
enough for a test to interrupt the run while chunks are in flight. The workers are forked from this
process, so they inherit the pause. Everything else is the stock cluster.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    import django

    django.setup()
    from billing.services import billing_run

    pause = float(os.environ.get("BILLING_TEST_CHUNK_PAUSE_S", "0"))
    real_chunk = billing_run._bill_chunk

    def chunk_then_pause(*args, **kwargs):
        real_chunk(*args, **kwargs)
        time.sleep(pause)

    billing_run._bill_chunk = chunk_then_pause
    from django.core.management import call_command

    call_command("qcluster")
