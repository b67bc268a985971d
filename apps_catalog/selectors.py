"""Reads for the catalog and apps. Keyword-only arguments, organization first."""

from django.db import connection
from django.db.models import Prefetch, Q

from apps_catalog.models import (
    App,
    AppTarget,
    CapabilitySlot,
    CatalogModel,
    InferenceConfig,
    InferenceRequestLog,
    ModelCapability,
    ModelVariant,
)


# --- catalog ---------------------------------------------------------------------------------------


def visible_to(organization):
    """Public catalog rows plus the organization's own."""
    return Q(organization__isnull=True) | Q(organization=organization)


def capability_list():
    return ModelCapability.objects.order_by("key")


def capability_get(*, key):
    return ModelCapability.objects.filter(key=key).first()


def catalog_model_list(*, organization, capability=None, scope=None):
    models = CatalogModel.objects.filter(visible_to(organization)).select_related("capability")
    if capability:
        models = models.filter(capability__key=capability)
    if scope == "public":
        models = models.filter(organization__isnull=True)
    elif scope == "private":
        models = models.filter(organization=organization)
    return models.order_by("name", "id")


def catalog_model_get(*, organization, model_id):
    return catalog_model_list(organization=organization).filter(id=model_id).first()


def variant_list(*, organization, model=None, capability=None, platform=None, format=None, quantization=None):
    variants = ModelVariant.objects.filter(visible_to(organization)).select_related("model__capability")
    if model is not None:
        variants = variants.filter(model=model)
    if capability:
        variants = variants.filter(model__capability__key=capability)
    if format:
        variants = variants.filter(format=format)
    if quantization:
        variants = variants.filter(quantization=quantization)
    if platform:
        variants = variants.filter(platforms_include(platform))
    return variants.order_by("model__name", "name", "version", "id")


def platforms_include(platform):
    # JSON containment is PostgreSQL-only; the embedded SQLite default matches the quoted element.
    if connection.vendor == "postgresql":
        return Q(platforms__contains=[platform])
    return Q(platforms__icontains=f'"{platform}"')


def variant_get(*, organization, variant_id):
    return ModelVariant.objects.filter(visible_to(organization), id=variant_id).select_related("model").first()


# --- apps ------------------------------------------------------------------------------------------


def slots_with_refs():
    return CapabilitySlot.objects.select_related("capability", "variant").order_by("capability__key", "id")


def app_list(*, organization, include_archived=False):
    apps = App.objects.filter(organization=organization).prefetch_related(
        Prefetch("targets", queryset=AppTarget.objects.order_by("created_at", "id")),
        Prefetch("slots", queryset=slots_with_refs()),
    )
    if not include_archived:
        apps = apps.filter(archived_at__isnull=True)
    return apps.order_by("slug", "id")


def app_by_slug(*, organization, slug):
    return App.objects.filter(organization=organization, slug=slug).first()


def app_target_list(*, organization, app):
    return AppTarget.objects.filter(organization=organization, app=app).order_by("created_at", "id")


def app_target_by_identifier(*, organization, platform, identifier):
    """The target registered for (platform, identifier) in the organization, or None."""
    return (
        AppTarget.objects.filter(organization=organization, platform=platform, identifier=identifier)
        .select_related("app")
        .first()
    )


def app_target_for(*, organization, app, platform, identifier=None):
    """The target a device of `app` on `platform` belongs to, or None (for the devices app).

    With `identifier` (a bundle id) the exact target; without, the app's first target on that platform.
    """
    targets = AppTarget.objects.filter(organization=organization, app=app, platform=platform)
    if identifier is not None:
        targets = targets.filter(identifier=identifier)
    return targets.order_by("created_at", "id").first()


def slot_list(*, organization, app):
    return slots_with_refs().filter(organization=organization, app=app)


def slot_get(*, organization, app, key):
    return slot_list(organization=organization, app=app).filter(capability__key=key).first()


def inference_config_get(*, organization, app):
    return InferenceConfig.objects.filter(organization=organization, app=app).first()


def first_request(*, organization, app):
    """{received, first_at, via}: the first inference request seen for the app (cloud or local)."""
    first = (
        InferenceRequestLog.objects.filter(organization=organization, app=app)
        .order_by("received_at", "id")
        .values("received_at", "via")
        .first()
    )
    if first is None:
        return {"received": False, "first_at": None, "via": None}
    return {"received": True, "first_at": first["received_at"], "via": first["via"]}
