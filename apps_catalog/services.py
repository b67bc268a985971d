"""Writes and domain actions for the catalog and apps. Each runs in one transaction; the API, the
admin and the management command all call these."""


from django.db import IntegrityError, transaction
from django.db.models import ProtectedError
from django.utils import timezone
from django.utils.text import slugify

from apps_catalog import selectors
from apps_catalog.catalog_fixture import VARIANT_FIELDS, load_into
from apps_catalog.models import (
    PUBLISHABLE_PLATFORMS,
    App,
    AppKey,
    AppKeyKind,
    AppTarget,
    CapabilitySlot,
    CatalogModel,
    InferenceConfig,
    InferenceRequestLog,
    ModelCapability,
    ModelVariant,
    Platform,
    Via,
)
from apps_catalog.signals import target_removed
from fleet.activity import services as activity
from fleet.activity.services import SYSTEM
from fleet.errors import Conflict, Forbidden, Invalid
from fleet.tenancy import credentials, rls
from fleet.tenancy.services import credential_find, credential_touch

RESERVED_SLUGS = {"bootstrap"}



def _record(*, organization, actor, verb, subject_type, subject_id, app=None, data=None):
    activity.record(
        organization=organization,
        actor=actor or SYSTEM,
        verb=verb,
        subject_type=subject_type,
        subject_id=subject_id,
        app_id=app.id if app is not None else None,
        data=data or {},
    )


# --- public catalog --------------------------------------------------------------------------------


def _check_catalog(data):
    """Refuse a malformed catalog file with the offending entry named (nothing is written)."""
    from django.core.exceptions import ValidationError

    if not isinstance(data, dict) or not isinstance(data.get("models", []), list):
        raise Invalid("The catalog must be an object with 'capabilities' and 'models' lists.")
    keys = {item.get("key") for item in data.get("capabilities", [])}
    keys |= set(ModelCapability.objects.values_list("key", flat=True))
    for m, item in enumerate(data.get("models", [])):
        if item.get("capability") not in keys:
            raise Invalid(f"Unknown capability {item.get('capability')!r}.", field=f"models.{m}.capability")
        for v, variant in enumerate(item.get("variants", [])):
            fields = {name: variant[name] for name in ("name", "version", *VARIANT_FIELDS) if name in variant}
            try:
                ModelVariant(**fields).clean_fields(exclude=["model", "organization"])
            except ValidationError as exc:
                name, messages = next(iter(exc.message_dict.items()))
                raise Invalid(f"{name}: {messages[0]}", field=f"models.{m}.variants.{v}.{name}") from None
            unknown = set(variant.get("platforms", [])) - set(Platform.values)
            if unknown:
                raise Invalid(f"Unknown platform {sorted(unknown)[0]!r}.", field=f"models.{m}.variants.{v}.platforms")


@transaction.atomic
def catalog_load(*, data):
    """Upsert the public catalog from `{"capabilities": [...], "models": [...]}` (idempotent).

    Capabilities are matched by key, public models by name, variants by (model, name, version).
    Returns how many entries of each kind the file held.
    """
    _check_catalog(data)
    with rls.bypass(reason="load public model catalog"):
        return load_into(data, capability_model=ModelCapability, model_model=CatalogModel, variant_model=ModelVariant)


# --- organization-private catalog ------------------------------------------------------------------


def _own_model(model):
    if model.organization_id is None:
        raise Forbidden("Public catalog entries are read-only.")


@transaction.atomic
def catalog_model_create(*, organization, name, capability, description="", actor=None):
    if CatalogModel.objects.filter(organization=organization, name=name).exists():
        raise Conflict(f"A model named {name!r} already exists.", fields={"name": ["Already exists."]})
    try:
        with transaction.atomic():
            model = CatalogModel.objects.create(
                organization=organization, name=name, capability=capability, description=description
            )
    except IntegrityError:  # a concurrent create took the name
        raise Conflict(f"A model named {name!r} already exists.", fields={"name": ["Already exists."]}) from None
    _record(
        organization=organization,
        actor=actor,
        verb="catalog_model.created",
        subject_type="catalog_model",
        subject_id=model.id,
        data={"name": name, "capability": capability.key},
    )
    return model


@transaction.atomic
def catalog_model_update(*, model, actor=None, **fields):
    _own_model(model)
    allowed = {"name", "description", "capability"}
    unknown = set(fields) - allowed
    if unknown:
        raise Invalid(f"Cannot update {', '.join(sorted(unknown))}.")
    if "name" in fields and fields["name"] != model.name:
        if CatalogModel.objects.filter(organization_id=model.organization_id, name=fields["name"]).exists():
            raise Conflict(f"A model named {fields['name']!r} already exists.", fields={"name": ["Already exists."]})
    for name, value in fields.items():
        setattr(model, name, value)
    model.save()
    _record(
        organization=model.organization,
        actor=actor,
        verb="catalog_model.updated",
        subject_type="catalog_model",
        subject_id=model.id,
        data={name: getattr(value, "key", value) for name, value in fields.items()},
    )
    return model


@transaction.atomic
def catalog_model_delete(*, model, actor=None):
    _own_model(model)
    organization, model_id, name = model.organization, model.id, model.name
    try:
        with transaction.atomic():
            model.delete()
    except ProtectedError:
        raise Conflict("A capability slot uses a variant of this model.") from None
    _record(
        organization=organization,
        actor=actor,
        verb="catalog_model.deleted",
        subject_type="catalog_model",
        subject_id=model_id,
        data={"name": name},
    )


@transaction.atomic
def model_variant_create(*, model, actor=None, **fields):
    _own_model(model)
    if ModelVariant.objects.filter(model=model, name=fields["name"], version=fields["version"]).exists():
        raise Conflict(
            "This model already has a variant with that name and version.",
            fields={"version": ["Already exists for this name."]},
        )
    variant = ModelVariant.objects.create(model=model, organization_id=model.organization_id, **fields)
    _record(
        organization=model.organization,
        actor=actor,
        verb="model_variant.created",
        subject_type="model_variant",
        subject_id=variant.id,
        data={"model": model.name, "name": variant.name, "version": variant.version},
    )
    return variant


# --- apps ------------------------------------------------------------------------------------------


def _check_slug(*, organization, slug):
    if slug in RESERVED_SLUGS:
        raise Invalid(f"{slug!r} is reserved.", field="slug")
    if App.objects.filter(organization=organization, slug=slug).exists():
        raise Conflict(f"An app with slug {slug!r} already exists.", fields={"slug": ["Already exists."]})


def _free_slug(*, organization, name):
    base = slugify(name)[:55].strip("-") or "app"
    if base in RESERVED_SLUGS:
        base = f"{base}-app"
    taken = set(App.objects.filter(organization=organization, slug__startswith=base).values_list("slug", flat=True))
    slug, n = base, 2
    while slug in taken:
        slug, n = f"{base}-{n}", n + 1
    return slug


def _writable(app):
    if app.is_archived:
        raise Conflict("The app is archived.")


@transaction.atomic
def app_create(*, organization, name, slug=None, description="", actor=None):
    if slug:
        _check_slug(organization=organization, slug=slug)
    else:
        slug = _free_slug(organization=organization, name=name)
    try:
        with transaction.atomic():
            app = App.objects.create(organization=organization, slug=slug, name=name, description=description)
    except IntegrityError:  # a concurrent create took the slug
        raise Conflict(f"An app with slug {slug!r} already exists.", fields={"slug": ["Already exists."]}) from None
    _record(
        organization=organization,
        actor=actor,
        verb="app.created",
        subject_type="app",
        subject_id=app.id,
        app=app,
        data={"slug": slug, "name": name},
    )
    return app


@transaction.atomic
def app_update(*, app, actor=None, **fields):
    unknown = set(fields) - {"name", "description"}
    if unknown:
        raise Invalid(f"Cannot update {', '.join(sorted(unknown))}.")
    _writable(app)
    for name, value in fields.items():
        setattr(app, name, value)
    app.save()
    _record(
        organization=app.organization,
        actor=actor,
        verb="app.updated",
        subject_type="app",
        subject_id=app.id,
        app=app,
        data=fields,
    )
    return app


@transaction.atomic
def app_archive(*, app, actor=None):
    """Soft delete: the app is hidden from lists and its keys stop working; targets and slots stay."""
    if app.archived_at is None:
        app.archived_at = timezone.now()
        app.save(update_fields=["archived_at", "updated_at"])
        _record(
            organization=app.organization,
            actor=actor,
            verb="app.archived",
            subject_type="app",
            subject_id=app.id,
            app=app,
            data={"slug": app.slug},
        )
    return app


@transaction.atomic
def app_bootstrap(*, organization, name, platform, identifier, slug=None, actor=None):
    """Onboarding in one transaction: app + target + secret app key (+ publishable key for
    mobile/browser platforms). Any failure leaves nothing behind.

    Returns (app, target, (app_key, secret), (publishable_key, secret) or None).
    """
    app = app_create(organization=organization, name=name, slug=slug, actor=actor)
    target = app_target_create(app=app, platform=platform, identifier=identifier, actor=actor)
    secret_key = app_key_create(app=app, kind=AppKeyKind.SECRET, name="bootstrap", actor=actor)
    publishable_key = None
    if platform in PUBLISHABLE_PLATFORMS:
        publishable_key = app_key_create(app=app, kind=AppKeyKind.PUBLISHABLE, name=f"{platform}", actor=actor)
    return app, target, secret_key, publishable_key


# --- targets ---------------------------------------------------------------------------------------


@transaction.atomic
def app_target_create(*, app, platform, identifier, actor=None):
    _writable(app)
    existing = selectors.app_target_by_identifier(
        organization=app.organization, platform=platform, identifier=identifier
    )
    if existing is not None:
        raise Conflict(
            f"{platform} target {identifier!r} is already registered"
            + (" to this app." if existing.app_id == app.id else " to another app of the organization."),
            fields={"identifier": ["Already registered."]},
        )
    try:
        with transaction.atomic():
            target = AppTarget.objects.create(
                organization_id=app.organization_id, app=app, platform=platform, identifier=identifier
            )
    except IntegrityError:  # a concurrent registration won the race
        raise Conflict(f"{platform} target {identifier!r} is already registered.") from None
    _record(
        organization=app.organization,
        actor=actor,
        verb="app.target_added",
        subject_type="app_target",
        subject_id=target.id,
        app=app,
        data={"platform": platform, "identifier": identifier},
    )
    return target


@transaction.atomic
def app_target_delete(*, target, actor=None):
    """Reconcile (target_removed receivers, same transaction) then delete the target."""
    app = target.app
    target_removed.send(sender=AppTarget, organization=app.organization, app=app, target=target)
    target_id = target.id
    data = {"platform": target.platform, "identifier": target.identifier}
    target.delete()
    _record(
        organization=app.organization,
        actor=actor,
        verb="app.target_removed",
        subject_type="app_target",
        subject_id=target_id,
        app=app,
        data=data,
    )


# --- keys ------------------------------------------------------------------------------------------


@transaction.atomic
def app_key_create(*, app, kind, name="", actor=None):
    """Create an app key and return (app_key, secret). The secret is never stored nor shown again."""
    _writable(app)
    prefix = AppKey.PREFIXES[kind]
    secret = credentials.generate(prefix=prefix)
    app_key = AppKey.objects.create(
        organization_id=app.organization_id,
        app=app,
        kind=kind,
        name=name,
        prefix=credentials.display_prefix(secret=secret, prefix=prefix),
        secret_hash=credentials.hash_secret(secret),
    )
    _record(
        organization=app.organization,
        actor=actor,
        verb="app.key_created",
        subject_type="app_key",
        subject_id=app_key.id,
        app=app,
        data={"kind": kind, "prefix": app_key.prefix, "name": name},
    )
    return app_key, secret


@transaction.atomic
def app_key_revoke(*, app_key, actor=None):
    if app_key.revoked_at is None:
        app_key.revoked_at = timezone.now()
        app_key.save(update_fields=["revoked_at"])
        _record(
            organization=app_key.app.organization,
            actor=actor,
            verb="app.key_revoked",
            subject_type="app_key",
            subject_id=app_key.id,
            app=app_key.app,
            data={"kind": app_key.kind, "prefix": app_key.prefix},
        )
    return app_key


def app_key_authenticate(*, secret, kind):
    """Return the usable AppKey of `kind` for `secret` (organization made current), or None.

    Revoked keys and keys of archived apps are refused. Malformed secrets never reach the database.
    """
    app_key = credential_find(
        queryset=AppKey.objects.select_related("app", "organization").filter(kind=kind),
        secret=secret,
        prefix=AppKey.PREFIXES[kind],
    )
    if app_key is None or app_key.revoked_at is not None or app_key.app.archived_at is not None:
        return None
    credential_touch(row=app_key)
    return app_key


# --- capability slots ------------------------------------------------------------------------------


def variant_for_capability(*, organization, capability, variant_id, field):
    """The visible variant `variant_id` providing `capability`, else a 400 naming `field`."""
    variant = selectors.variant_get(organization=organization, variant_id=variant_id)
    if variant is None:
        raise Invalid("No such variant.", field=field)
    if variant.model.capability_id != capability.id:
        raise Invalid(f"This variant does not provide {capability.key}.", field=field)
    return variant


@transaction.atomic
def capability_slot_set(*, app, capability, variant_id, serving_policy, bindings=None, actor=None):
    """Create or wholesale-replace the app's slot for `capability`. Returns (slot, created)."""
    _writable(app)
    organization = app.organization
    variant = None
    if variant_id is not None:
        variant = variant_for_capability(organization=organization, capability=capability, variant_id=variant_id, field="variant_id")
    bindings = {platform: str(value) for platform, value in (bindings or {}).items()}
    for platform, value in bindings.items():
        variant_for_capability(organization=organization, capability=capability, variant_id=value, field=f"bindings.{platform}")
    slot = CapabilitySlot.objects.select_for_update().filter(app=app, capability=capability).first()
    created = slot is None
    if created:
        slot = CapabilitySlot(organization_id=app.organization_id, app=app, capability=capability)
    slot.variant = variant
    slot.serving_policy = dict(serving_policy)
    slot.bindings = bindings
    slot.save()
    _record(
        organization=organization,
        actor=actor,
        verb="app.capability_set",
        subject_type="capability_slot",
        subject_id=slot.id,
        app=app,
        data={
            "capability": capability.key,
            "variant_id": str(variant.id) if variant else None,
            "serving_policy": slot.serving_policy,
            "bindings": bindings,
        },
    )
    return slot, created


@transaction.atomic
def capability_slot_delete(*, slot, actor=None):
    app, key, slot_id = slot.app, slot.capability.key, slot.id
    slot.delete()
    _record(
        organization=app.organization,
        actor=actor,
        verb="app.capability_removed",
        subject_type="capability_slot",
        subject_id=slot_id,
        app=app,
        data={"capability": key},
    )


# --- inference config ------------------------------------------------------------------------------

INFERENCE_CONFIG_FIELDS = ("cloud_endpoint_url", "default_routing", "timeout_ms", "max_retries", "fallback_order")


@transaction.atomic
def inference_config_set(*, app, actor=None, **fields):
    """Create or replace the app's inference configuration. Returns (config, created)."""
    _writable(app)
    unknown = set(fields) - set(INFERENCE_CONFIG_FIELDS)
    if unknown:
        raise Invalid(f"Unknown fields: {', '.join(sorted(unknown))}.")
    defaults = {field: InferenceConfig._meta.get_field(field).get_default() for field in INFERENCE_CONFIG_FIELDS}
    config, created = InferenceConfig.objects.update_or_create(
        app=app, defaults={"organization_id": app.organization_id, **defaults, **fields}
    )
    _record(
        organization=app.organization,
        actor=actor,
        verb="app.inference_config_set",
        subject_type="inference_config",
        subject_id=config.id,
        app=app,
        data={field: getattr(config, field) for field in INFERENCE_CONFIG_FIELDS},
    )
    return config, created


@transaction.atomic
def inference_config_delete(*, config, actor=None):
    app, config_id = config.app, config.id
    config.delete()
    _record(
        organization=app.organization,
        actor=actor,
        verb="app.inference_config_removed",
        subject_type="inference_config",
        subject_id=config_id,
        app=app,
    )


# --- routing telemetry ------------------------------------------------------------------------------


@transaction.atomic
def inference_request_record(*, organization, app, via, received_at=None):
    """Note an inference request served for `app` (`via` cloud or local); for routing telemetry.

    The first one for an app also goes to the activity feed (the quickstart's "first request").
    """
    if via not in Via.values:
        raise Invalid(f"via must be one of {', '.join(Via.values)}.", field="via")
    first = not InferenceRequestLog.objects.filter(organization=organization, app=app).exists()
    entry = InferenceRequestLog.objects.create(
        organization=organization, app=app, via=via, received_at=received_at or timezone.now()
    )
    if first:
        _record(
            organization=organization,
            actor=SYSTEM,
            verb="app.first_request",
            subject_type="app",
            subject_id=app.id,
            app=app,
            data={"via": via},
        )
    return entry
