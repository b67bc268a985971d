"""Fixtures for the hardening tests (fleet/api/tests/test_hardening_*.py)."""

import re

import pytest


@pytest.fixture(scope="session")
def openapi_schema(django_db_setup, django_db_blocker):
    """The published schema, as served at /api/schemas/openapi.json."""
    from rest_framework.test import APIClient

    with django_db_blocker.unblock():
        response = APIClient().get("/api/schemas/openapi.json")
    assert response.status_code == 200
    return response.json()


def _template_regex(template):
    pattern = re.sub(r"\{[^}]+\}", "[^/]+", re.escape(template).replace(r"\{", "{").replace(r"\}", "}"))
    return re.compile(f"^{pattern}$")


@pytest.fixture(scope="session")
def documented(openapi_schema):
    """documented(method, path) -> the set of response codes the schema lists for that operation
    (None when the path has no such operation)."""

    def lookup(method, path):
        paths = openapi_schema["paths"]
        exact = [(path, paths[path])] if path in paths else []
        for template, operations in exact + list(paths.items()):
            if _template_regex(template).match(path):
                operation = operations.get(method.lower())
                return None if operation is None else set(operation["responses"])
        return None

    return lookup
