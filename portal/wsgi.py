"""The WSGI application gunicorn serves; each worker warms up before it takes a request (portal/warmup.py)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
application = get_wsgi_application()

from portal.warmup import warm_up  # noqa: E402 - needs the settings and the apps loaded above

warm_up()
