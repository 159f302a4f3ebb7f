"""/disputes/: disputes and credit notes, collections (aging, dunning, hand-off, statements), payments.

Each feature keeps its routes in its own module; they share the `disputes` namespace.
"""

from disputes import urls_collections, urls_disputes, urls_payments

app_name = "disputes"

urlpatterns = [*urls_disputes.urlpatterns, *urls_collections.urlpatterns, *urls_payments.urlpatterns]
