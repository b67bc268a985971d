import datetime

import factory
from factory.django import DjangoModelFactory

from apps_catalog import services
from apps_catalog.models import (
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
    Routing,
)
from fleet.tenancy import rls
from fleet.tenancy.tests.factories import OrgScopedFactory


class BypassFactory(DjangoModelFactory):
    class Meta:
        abstract = True

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        with rls.bypass(reason="test factory"):
            return super()._create(model_class, *args, **kwargs)


class ModelCapabilityFactory(DjangoModelFactory):
    class Meta:
        model = ModelCapability
        django_get_or_create = ("key",)

    key = factory.Sequence(lambda n: f"capability-{n}")
    name = factory.LazyAttribute(lambda o: o.key.title())


class CatalogModelFactory(BypassFactory):
    """An organization's private model; pass organization=None for a public catalog entry."""

    class Meta:
        model = CatalogModel

    organization = factory.SubFactory("fleet.tenancy.tests.factories.OrganizationFactory")
    name = factory.Sequence(lambda n: f"model-{n}")
    capability = factory.LazyFunction(lambda: ModelCapability.objects.get(key="vision"))


class ModelVariantFactory(BypassFactory):
    class Meta:
        model = ModelVariant

    organization = factory.SubFactory("fleet.tenancy.tests.factories.OrganizationFactory")
    model = factory.SubFactory(CatalogModelFactory, organization=factory.SelfAttribute("..organization"))
    name = factory.Sequence(lambda n: f"variant-{n}")
    version = "1.0.0"
    format = "onnx"
    quantization = "int8"
    platforms = factory.LazyFunction(lambda: ["android", "ios"])
    min_ram_mb = 256
    accelerators = "none"
    quality_score = 0.7
    latency_ms = factory.LazyFunction(lambda: {"phone_flagship": 10})

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        kwargs["organization"] = kwargs["model"].organization  # a variant carries its model's org_id
        return super()._create(model_class, *args, **kwargs)


class AppFactory(OrgScopedFactory):
    class Meta:
        model = App

    slug = factory.Sequence(lambda n: f"app-{n}")
    name = factory.LazyAttribute(lambda o: o.slug.replace("-", " ").title())


class AppTargetFactory(OrgScopedFactory):
    class Meta:
        model = AppTarget

    app = factory.SubFactory(AppFactory, organization=factory.SelfAttribute("..organization"))
    platform = "ios"
    identifier = factory.Sequence(lambda n: f"com.example.app{n}")


class AppKeyFactory(OrgScopedFactory):
    """Created through the service so the secret exists; kept on `.secret`."""

    class Meta:
        model = AppKey

    app = factory.SubFactory(AppFactory, organization=factory.SelfAttribute("..organization"))
    kind = AppKeyKind.PUBLISHABLE

    @classmethod
    def _create(cls, model_class, *, organization, app, kind, **kwargs):
        with rls.bypass(reason="test factory"):
            app_key, secret = services.app_key_create(app=app, kind=kind, **kwargs)
        app_key.secret = secret
        return app_key


class CapabilitySlotFactory(OrgScopedFactory):
    class Meta:
        model = CapabilitySlot

    app = factory.SubFactory(AppFactory, organization=factory.SelfAttribute("..organization"))
    capability = factory.LazyFunction(lambda: ModelCapability.objects.get(key="vision"))
    variant = factory.LazyAttribute(
        lambda o: ModelVariant.objects.filter(organization__isnull=True, model__capability=o.capability).first()
    )
    serving_policy = factory.LazyFunction(
        lambda: {"routing": Routing.LOCAL_FIRST, "fallback": True, "max_latency_ms": None, "min_quality": None}
    )

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        with rls.bypass(reason="test factory"):  # the public variant lookup above needs no org either
            return super()._create(model_class, *args, **kwargs)


class InferenceConfigFactory(OrgScopedFactory):
    class Meta:
        model = InferenceConfig

    app = factory.SubFactory(AppFactory, organization=factory.SelfAttribute("..organization"))
    cloud_endpoint_url = "https://inference.example.com/v1"
    default_routing = Routing.LOCAL_FIRST
    fallback_order = factory.LazyFunction(lambda: ["local", "cloud"])


class InferenceRequestLogFactory(OrgScopedFactory):
    class Meta:
        model = InferenceRequestLog

    app = factory.SubFactory(AppFactory, organization=factory.SelfAttribute("..organization"))
    via = "local"
    received_at = factory.Faker("date_time_this_year", tzinfo=datetime.timezone.utc)


# Cross-organization contract (foundation isolation test): path kwarg -> factory called as
# Factory(organization=org); the value placed in the path is the attribute named below (default pk).
def existing_capability(organization=None):
    """`key` is a global capability key: any organization may name an existing one."""
    return ModelCapability.objects.get(key="vision")


# `id` is left to the walker's default (the factory of the view's serializer model: catalog model,
# app target, app key), so this module does not redefine `id` for every other app's routes.
ISOLATION_PATH_PARAMS = {"slug": AppFactory, "key": existing_capability}
ISOLATION_PATH_VALUE = {"slug": "slug", "key": "key"}
