"""`manage.py qcluster` for the ERP tests and the benchmark, with the customer e-mail step switched off.

Posting an invoice queues its e-mail delivery (PDF rendering, SMTP): another feature, tested
elsewhere, and slow enough to drown the measurement of ERP delivery. The workers are forked
from this process, so they inherit the switch. Everything else is the stock cluster.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    import django

    django.setup()
    from billing.services import delivery

    delivery.schedule_delivery = lambda *, invoice: None
    from django.core.management import call_command

    call_command("qcluster")
