from __future__ import annotations


def assert_error(response, status: int, code: str) -> dict:
    """The response is an API error in the one shape, with this status and code."""
    assert response.status_code == status, (response.status_code, response.content[:500])
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"code", "message", "field_errors"}, body
    assert body["code"] == code, body
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["field_errors"], dict)
    return body
