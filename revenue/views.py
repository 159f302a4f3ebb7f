from django.http import HttpResponse


def _todo(request, *args, **kwargs):  # replaced below
    return HttpResponse("")


revenue_report = balances = close_screen = reconciliation_page = schedule_detail = estimates = _todo
