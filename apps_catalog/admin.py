"""Operator console: the catalog (public entries read-only except for superusers), apps with their
targets and slots inline, app keys shown once, and the archive action. Writes go through services."""

from django.contrib import admin, messages
from django.db.models import Q
from django.template.response import TemplateResponse

from apps_catalog import services
from apps_catalog.models import (
    App,
    AppKey,
    AppKeyKind,
    AppTarget,
    CapabilitySlot,
    CatalogModel,
    InferenceConfig,
    ModelCapability,
    ModelVariant,
)
from fleet.activity.services import Actor
from fleet.activity.models import ActorType
from fleet.errors import DomainError
from fleet.tenancy import rls
from fleet.tenancy.admin_site import OrgScopedAdmin


def admin_actor(request):
    return Actor(type=ActorType.USER, id=str(request.user.pk), label=request.user.get_username())


# --- catalog ---------------------------------------------------------------------------------------


@admin.register(ModelCapability)
class ModelCapabilityAdmin(admin.ModelAdmin):
    list_display = ["key", "name", "description"]
    search_fields = ["key", "name"]

    def has_add_permission(self, request):
        return request.user.is_superuser

    def has_change_permission(self, request, obj=None):
        return request.user.is_superuser

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser


class PublicReadOnlyMixin:
    """Public catalog rows (organization empty) are visible to every staff member, editable only by
    superusers; other rows follow the staff member's organizations."""

    def get_queryset(self, request):
        queryset = admin.ModelAdmin.get_queryset(self, request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(Q(organization__isnull=True) | Q(organization_id__in=rls.current_org_ids()))

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "organization" and not request.user.is_superuser:
            from fleet.tenancy.models import Organization

            kwargs["queryset"] = Organization.objects.filter(id__in=rls.current_org_ids())
            kwargs["required"] = True
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_change_permission(self, request, obj=None):
        if obj is not None and obj.organization_id is None and not request.user.is_superuser:
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.organization_id is None and not request.user.is_superuser:
            return False
        return super().has_delete_permission(request, obj)


class ModelVariantInline(admin.TabularInline):
    model = ModelVariant
    extra = 0
    fields = ["name", "version", "format", "quantization", "platforms", "min_ram_mb", "accelerators", "quality_score"]
    readonly_fields = ["organization"]

    def has_change_permission(self, request, obj=None):
        if obj is not None and obj.organization_id is None and not request.user.is_superuser:
            return False
        return super().has_change_permission(request, obj)

    has_add_permission = has_change_permission
    has_delete_permission = has_change_permission


@admin.register(CatalogModel)
class CatalogModelAdmin(PublicReadOnlyMixin, admin.ModelAdmin):
    list_display = ["name", "capability", "organization", "created_at"]
    list_filter = ["capability", ("organization", admin.EmptyFieldListFilter)]
    search_fields = ["name"]
    inlines = [ModelVariantInline]

    def save_formset(self, request, form, formset, change):
        for variant in formset.save(commit=False):  # variants carry their model's org_id (RLS)
            variant.organization_id = form.instance.organization_id
            variant.save()
        for variant in formset.deleted_objects:
            variant.delete()


@admin.register(ModelVariant)
class ModelVariantAdmin(PublicReadOnlyMixin, admin.ModelAdmin):
    list_display = ["name", "version", "model", "format", "quantization", "accelerators", "quality_score", "organization"]
    list_filter = ["format", "quantization", "accelerators", "model__capability"]
    search_fields = ["name", "model__name"]
    readonly_fields = ["organization", "created_at"]

    def save_model(self, request, obj, form, change):
        obj.organization_id = obj.model.organization_id
        super().save_model(request, obj, form, change)


# --- apps ------------------------------------------------------------------------------------------


class AppTargetInline(admin.TabularInline):
    model = AppTarget
    extra = 0
    fields = ["platform", "identifier", "created_at"]
    readonly_fields = ["platform", "identifier", "created_at"]
    can_delete = False  # deletion reconciles deployments: use the API (DELETE /apps/{slug}/targets/{id})

    def has_add_permission(self, request, obj=None):
        return False


class CapabilitySlotInline(admin.TabularInline):
    model = CapabilitySlot
    extra = 0
    fields = ["capability", "variant", "serving_policy", "bindings", "updated_at"]
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


class AppKeyInline(admin.TabularInline):
    model = AppKey
    extra = 0
    fields = ["kind", "name", "prefix", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(App)
class AppAdmin(OrgScopedAdmin):
    list_display = ["slug", "name", "organization", "archived_at", "created_at"]
    list_filter = [("archived_at", admin.EmptyFieldListFilter), "organization"]
    search_fields = ["slug", "name"]
    fields = ["organization", "slug", "name", "description", "archived_at", "created_at", "updated_at"]
    readonly_fields = ["archived_at", "created_at", "updated_at"]
    inlines = [AppTargetInline, CapabilitySlotInline, AppKeyInline]
    actions = ["archive", "create_secret_key", "create_publishable_key"]

    def get_readonly_fields(self, request, obj=None):
        if obj is not None:
            return [*self.readonly_fields, "organization", "slug"]
        return self.readonly_fields

    def save_model(self, request, obj, form, change):
        try:
            if change:
                services.app_update(
                    app=obj, actor=admin_actor(request), name=obj.name, description=obj.description
                )
            else:
                app = services.app_create(
                    organization=obj.organization,
                    name=obj.name,
                    slug=obj.slug,
                    description=obj.description,
                    actor=admin_actor(request),
                )
                obj.__dict__.update({k: v for k, v in app.__dict__.items() if not k.startswith("_")})
                obj._state.adding = False
        except DomainError as exc:
            self.message_user(request, exc.message, messages.ERROR)

    @admin.action(description="Archive selected apps")
    def archive(self, request, queryset):
        for app in queryset:
            services.app_archive(app=app, actor=admin_actor(request))
        self.message_user(request, f"Archived {queryset.count()} app(s).", messages.SUCCESS)

    def _create_keys(self, request, queryset, kind):
        created, errors = [], []
        for app in queryset:
            try:
                app_key, secret = services.app_key_create(app=app, kind=kind, name="admin", actor=admin_actor(request))
            except DomainError as exc:
                errors.append(f"{app.slug}: {exc.message}")
                continue
            created.append({"app": app, "key": app_key, "secret": secret})
        for error in errors:
            self.message_user(request, error, messages.ERROR)
        if not created:
            return None
        # Shown in this response only: secrets are never stored, not even in a message cookie.
        context = {
            **self.admin_site.each_context(request),
            "created": created,
            "opts": self.model._meta,
            "title": "App keys created",
        }
        return TemplateResponse(request, "admin/apps_catalog/app/keys_created.html", context)

    @admin.action(description="Create a server-side secret key (shown once)")
    def create_secret_key(self, request, queryset):
        return self._create_keys(request, queryset, AppKeyKind.SECRET)

    @admin.action(description="Create a publishable key (shown once)")
    def create_publishable_key(self, request, queryset):
        return self._create_keys(request, queryset, AppKeyKind.PUBLISHABLE)


@admin.register(AppKey)
class AppKeyAdmin(OrgScopedAdmin):
    list_display = ["prefix", "kind", "app", "organization", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["kind", "organization"]
    search_fields = ["prefix", "app__slug", "name"]
    actions = ["revoke"]

    def has_add_permission(self, request):
        return False  # keys are created from the app list ("Create … key" actions), shown once

    def has_change_permission(self, request, obj=None):
        return False

    @admin.action(description="Revoke selected keys")
    def revoke(self, request, queryset):
        for app_key in queryset.select_related("app"):
            services.app_key_revoke(app_key=app_key, actor=admin_actor(request))
        self.message_user(request, f"Revoked {queryset.count()} key(s).", messages.SUCCESS)


@admin.register(InferenceConfig)
class InferenceConfigAdmin(OrgScopedAdmin):
    list_display = ["app", "organization", "default_routing", "cloud_endpoint_url", "timeout_ms", "updated_at"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False  # validated strictly by the API: PUT /apps/{slug}/inference-config
