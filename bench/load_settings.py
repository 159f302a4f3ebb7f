"""Settings of the load test's server: the production settings plus one empty view (bench/load_urls.py)."""

from portal.settings import *  # noqa: F403

ROOT_URLCONF = "bench.load_urls"
