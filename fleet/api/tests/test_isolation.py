"""Organization isolation, walked over every /api/v1/ route in the URL resolver.

Routes added by later issues are covered automatically: each app's tests/factories.py exposes its
factories, and `ISOLATION_PATH_PARAMS = {"<path kwarg>": callable(organization=...) -> object}`
(with optional `ISOLATION_PATH_VALUE = {"<path kwarg>": "<attribute>"}`, default pk) so the walker
can fill path parameters with organization A's objects. Organization B must get 404 on every
method of every route that names one of A's objects, and never see A's ids in any list.
"""

import importlib
import inspect
import re
import uuid

import pytest
from django.apps import apps
from django.contrib.admindocs.views import extract_views_from_urlpatterns, simplify_regex
from django.urls import get_resolver
from factory.django import DjangoModelFactory

pytestmark = pytest.mark.django_db

SKIPPED_METHODS = {"options", "head", "trace"}


def factory_modules():
    for config in apps.get_app_configs():
        try:
            yield importlib.import_module(f"{config.name}.tests.factories")
        except ModuleNotFoundError:
            continue


def collect():
    factories, path_params, path_values = {}, {}, {}
    for module in factory_modules():
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, DjangoModelFactory) and not obj._meta.abstract and obj.__module__ == module.__name__:
                factories.setdefault(obj._meta.model, obj)
        path_params.update(getattr(module, "ISOLATION_PATH_PARAMS", {}))
        path_values.update(getattr(module, "ISOLATION_PATH_VALUE", {}))
    return factories, path_params, path_values


def api_routes():
    routes = []
    for callback, regex, _, _ in extract_views_from_urlpatterns(get_resolver().url_patterns):
        path = simplify_regex(regex)
        if not path.startswith("/api/v1/") or is_public(callback):
            continue
        routes.append((path, callback))
    return sorted(set(routes), key=lambda r: r[0])


def view_class(callback):
    return getattr(callback, "cls", None) or getattr(callback, "view_class", None)


def is_public(callback):
    """Public by design (token-in-body provisioning, CRLs, signed downloads, login): no
    authentication classes. test_schema.py pins the list of such operations."""
    cls = view_class(callback)
    return cls is not None and getattr(cls, "authentication_classes", None) == []


def methods(callback):
    if getattr(callback, "actions", None):
        return sorted(m for m in callback.actions if m not in SKIPPED_METHODS)
    cls = view_class(callback)
    return sorted(m for m in cls.http_method_names if m not in SKIPPED_METHODS and hasattr(cls, m))


def view_model(callback):
    cls = view_class(callback)
    serializer = getattr(cls, "serializer_class", None)
    meta = getattr(serializer, "Meta", None)
    return getattr(meta, "model", None)


def org_scoped(model):
    return any(f.name == "organization" for f in model._meta.fields)


@pytest.fixture
def world(org, other_org, make_client):
    factories, path_params, path_values = collect()
    a_ids = set()
    for model, factory in factories.items():
        if org_scoped(model):
            obj = factory(organization=org)
            if isinstance(obj.pk, uuid.UUID):  # searchable in a body (integer keys are never exposed)
                a_ids.add(str(obj.pk))
    return {
        "a": org,
        "client_a": make_client(org, role="owner"),
        "client_b": make_client(other_org, role="owner"),
        "factories": factories,
        "path_params": path_params,
        "path_values": path_values,
        "a_ids": a_ids,
    }


def fill(path, callback, world):
    def value(match):
        name = match.group(1)  # <name> or <converter:name>
        if name in world["path_params"]:
            obj = world["path_params"][name](organization=world["a"])
            return str(getattr(obj, world["path_values"].get(name, "pk")))
        model = view_model(callback)
        factory = world["factories"].get(model)
        if name in ("id", "pk") and factory is not None:
            obj = factory(organization=world["a"]) if org_scoped(model) else factory()
            if isinstance(obj.pk, uuid.UUID):
                world["a_ids"].add(str(obj.pk))
            return str(obj.pk)
        raise AssertionError(
            f"{path}: cannot fill <{name}>; add it to ISOLATION_PATH_PARAMS in the app's tests/factories.py"
        )

    return re.sub(r"<(?:\w+:)?(\w+)>", value, path)


def test_the_walker_sees_the_foundation_routes():
    paths = {path for path, _ in api_routes()}
    assert {"/api/v1/organization", "/api/v1/api-keys", "/api/v1/api-keys/<id>", "/api/v1/activity"} <= paths


def test_other_organizations_objects_are_404_on_every_method(world):
    checked = 0
    for path, callback in api_routes():
        if "<" not in path:
            continue
        url = fill(path, callback, world)
        for method in methods(callback):
            response = getattr(world["client_b"], method)(url, {}, format="json")
            assert response.status_code == 404, f"{method.upper()} {path} as another organization: {response.status_code}"
            assert response.json()["error"] == "not_found"
            checked += 1
    assert checked >= 2


def test_lists_never_show_other_organizations_rows(world):
    # Positive control: organization A does see its own key, so the search below can fail.
    own = world["client_a"].get("/api/v1/api-keys").content.decode()
    assert any(a_id in own for a_id in world["a_ids"])
    checked = 0
    for path, callback in api_routes():
        if "<" in path or "get" not in methods(callback):
            continue
        body = world["client_b"].get(path).content.decode()
        leaked = [a_id for a_id in world["a_ids"] if a_id in body]
        assert not leaked, f"GET {path} as another organization shows {leaked}"
        checked += 1
    assert checked >= 3
