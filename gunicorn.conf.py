"""gunicorn's settings for the portal (read from the working directory, or with `-c gunicorn.conf.py`).

The command line still chooses the bind address, the workers and the timeout (README, deployment).
What this file adds is how a worker's memory is laid out, for the sake of the slowest requests:

- `preload_app`: the master imports Django and every app once; the workers are forked from it.
- `when_ready`: before the first fork the master collects its garbage and then freezes what is
  left (`gc.freeze()`): the modules, models, URL patterns and settings every worker shares. The
  workers' cyclic garbage collector then never walks those objects again. Without it, a full
  collection walks some 200,000 of them and holds the request it fell on for 70–150 ms
  (ADR 0135).
"""

import gc

preload_app = True


def when_ready(server) -> None:
    from django.db import connections

    # Nothing is read at import time, but a connection the master held would be shared by every worker.
    connections.close_all()
    gc.collect()
    gc.freeze()
    server.log.info("Froze %d objects of the loaded application before forking workers", gc.get_freeze_count())
