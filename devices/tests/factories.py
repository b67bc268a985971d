import itertools

import factory
from django.utils import timezone

from devices import services
from devices.models import (
    Device,
    DeviceGroup,
    DeviceGroupMembership,
    DeviceToken,
    DeviceUser,
    EndUser,
    GroupKind,
    MembershipReason,
    Platform,
)
from fleet.tenancy import credentials, rls
from fleet.tenancy.tests.factories import OrgScopedFactory


class DeviceFactory(OrgScopedFactory):
    class Meta:
        model = Device

    device_id = factory.Sequence(lambda n: f"device-{n:04d}")
    name = factory.LazyAttribute(lambda o: o.device_id.upper())
    platform = Platform.PYTHON


class DeviceTokenFactory(OrgScopedFactory):
    """A live token; the secret is kept on `.secret` for the test."""

    class Meta:
        model = DeviceToken

    device = factory.SubFactory(DeviceFactory, organization=factory.SelfAttribute("..organization"))

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        secret = credentials.generate(prefix=DeviceToken.PREFIX)
        kwargs.setdefault("prefix", credentials.display_prefix(secret=secret, prefix=DeviceToken.PREFIX))
        kwargs.setdefault("secret_hash", credentials.hash_secret(secret))
        token = super()._create(model_class, *args, **kwargs)
        token.secret = secret
        return token


class EndUserFactory(OrgScopedFactory):
    class Meta:
        model = EndUser

    user_key = factory.Sequence(lambda n: f"user{n}")
    username = factory.LazyAttribute(lambda o: o.user_key)


class DeviceUserFactory(OrgScopedFactory):
    class Meta:
        model = DeviceUser

    device = factory.SubFactory(DeviceFactory, organization=factory.SelfAttribute("..organization"))
    user = factory.SubFactory(EndUserFactory, organization=factory.SelfAttribute("..organization"))
    enrolled_at = factory.LazyFunction(timezone.now)
    last_seen_at = factory.LazyFunction(timezone.now)


class DeviceGroupFactory(OrgScopedFactory):
    """A static group row (no members); dynamic groups with members come from services.device_group_create."""

    class Meta:
        model = DeviceGroup

    name = factory.Sequence(lambda n: f"Group {n}")
    slug = factory.Sequence(lambda n: f"group-{n}")
    kind = GroupKind.STATIC
    selector = factory.LazyFunction(dict)


class DeviceGroupMembershipFactory(OrgScopedFactory):
    class Meta:
        model = DeviceGroupMembership

    group = factory.SubFactory(DeviceGroupFactory, organization=factory.SelfAttribute("..organization"))
    device = factory.SubFactory(DeviceFactory, organization=factory.SelfAttribute("..organization"))
    reason = MembershipReason.STATIC


_registered = itertools.count(1)


def registered_device(organization, **kwargs):
    """A device registered through the service, with its token secret on `.secret`."""
    from fleet.activity.services import SYSTEM

    kwargs.setdefault("device_id", f"dev-{next(_registered)}")
    with rls.bypass(reason="test factory"):
        device, secret, _ = services.device_register(organization=organization, actor=SYSTEM, **kwargs)
    device.secret = secret
    return device


# Path kwarg -> factory, for the foundation's cross-organization route walk.
ISOLATION_PATH_PARAMS = {"device": DeviceFactory, "user": EndUserFactory, "group": DeviceGroupFactory}
