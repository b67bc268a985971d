import factory
from django.contrib.auth import get_user_model
from factory.django import DjangoModelFactory

from fleet.tenancy import rls, services
from fleet.tenancy.models import ApiKey, Membership, Organization, Role


class OrgScopedFactory(DjangoModelFactory):
    """Rows of organization-scoped tables are written through the audited bypass: test setup
    spans organizations, while the code under test still runs under row-level security."""

    class Meta:
        abstract = True

    organization = factory.SubFactory("fleet.tenancy.tests.factories.OrganizationFactory")

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        with rls.bypass(reason="test factory"):
            return super()._create(model_class, *args, **kwargs)


class OrganizationFactory(DjangoModelFactory):
    class Meta:
        model = Organization

    slug = factory.Sequence(lambda n: f"org-{n}")
    name = factory.LazyAttribute(lambda o: o.slug.replace("-", " ").title())


class UserFactory(DjangoModelFactory):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda o: f"{o.username}@example.com")
    password = factory.PostGenerationMethodCall("set_password", "correct horse battery")

    @factory.post_generation
    def save_password(obj, create, extracted, **kwargs):
        if create:
            obj.save()


class MembershipFactory(OrgScopedFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    role = Role.ADMIN


class ApiKeyFactory(OrgScopedFactory):
    """Created through the service, so the secret exists; it is kept on `.secret` for the test."""

    class Meta:
        model = ApiKey

    name = factory.Sequence(lambda n: f"key {n}")
    role = Role.ADMIN

    @classmethod
    def _create(cls, model_class, *, organization, name, role, **kwargs):
        with rls.bypass(reason="test factory"):
            api_key, secret = services.api_key_create(organization=organization, name=name, role=role, **kwargs)
        api_key.secret = secret
        return api_key
