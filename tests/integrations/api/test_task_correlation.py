"""A task queued while serving a request logs with that request's correlation id (django-q2, sync mode)."""

from __future__ import annotations

import pytest
from django_q.conf import Conf
from django_q.tasks import async_task, result

from integrations.middleware import correlation_scope, current_correlation_id

pytestmark = pytest.mark.django_db


def seen_correlation_id() -> str:
    """The task body: what the worker's log lines would be stamped with."""
    return current_correlation_id()


@pytest.fixture
def q_sync(settings, monkeypatch):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": True}
    monkeypatch.setattr(Conf, "SYNC", True)


def test_the_id_of_the_enqueuing_request_follows_the_task(q_sync):
    func = f"{__name__}.seen_correlation_id"
    with correlation_scope("ipaas-trace-0042"):
        task_id = async_task(func)
        assert current_correlation_id() == "ipaas-trace-0042"  # restored after the (inline) task
    assert result(task_id) == "ipaas-trace-0042"
    scheduled = async_task(func)  # queued outside a request (a schedule): an id of its own
    assert result(scheduled).startswith("task-")
    assert current_correlation_id() == ""
