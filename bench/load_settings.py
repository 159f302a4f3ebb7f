"""Settings of the load test's server: the production settings plus one empty view (bench/load_urls.py)."""

from portal.settings import *  # noqa: F403

ROOT_URLCONF = "bench.load_urls"

# First: what each request cost, by kind (bench/request_costs.py → var/loadtest/requests.log).
MIDDLEWARE = ["bench.request_costs.RequestCosts", *MIDDLEWARE]  # noqa: F405
