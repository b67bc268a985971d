import factory
from django.utils import timezone

from apps_catalog.models import ModelCapability, ModelVariant
from devices.tests.factories import DeviceFactory
from fleet.tenancy.tests.factories import OrgScopedFactory

from ..models import Deployment, DeploymentStatus, DeviceAssignment, DeviceCommand, DeviceState


def public_variant(capability="vision", index=0):
    return (
        ModelVariant.objects.filter(organization__isnull=True, model__capability__key=capability)
        .order_by("name", "id")[index]
    )


class DeploymentFactory(OrgScopedFactory):
    class Meta:
        model = Deployment

    capability = factory.LazyFunction(lambda: ModelCapability.objects.get(key="vision"))
    variant = factory.LazyFunction(public_variant)
    targeting = factory.LazyFunction(lambda: {"selector": {}, "app_target_ids": [], "device_group_ids": [], "device_ids": []})
    strategy = factory.LazyFunction(lambda: {"type": "staged", "stages": [10, 50, 100]})
    status = DeploymentStatus.DRAFT


class DeviceAssignmentFactory(OrgScopedFactory):
    class Meta:
        model = DeviceAssignment

    deployment = factory.SubFactory(DeploymentFactory, organization=factory.SelfAttribute("..organization"))
    device = factory.SubFactory(DeviceFactory, organization=factory.SelfAttribute("..organization"))
    source = "device"
    bucket = 5
    in_rollout = True
    updated_at = factory.LazyFunction(timezone.now)


class DeviceStateFactory(OrgScopedFactory):
    class Meta:
        model = DeviceState

    device = factory.SubFactory(DeviceFactory, organization=factory.SelfAttribute("..organization"))


class DeviceCommandFactory(OrgScopedFactory):
    class Meta:
        model = DeviceCommand

    device = factory.SubFactory(DeviceFactory, organization=factory.SelfAttribute("..organization"))
    type = "sync_now"
    expires_at = factory.LazyFunction(lambda: timezone.now() + timezone.timedelta(hours=1))


# --- capability orchestration (issue 7) ------------------------------------------------------------------
from ..classifier import CLASSIFIER_VERSION  # noqa: E402
from ..models import CapabilityProfile, RoutingEvent, TrainingParticipation, TrainingRound  # noqa: E402




class CapabilityProfileFactory(OrgScopedFactory):
    class Meta:
        model = CapabilityProfile

    device = factory.SubFactory(DeviceFactory, organization=factory.SelfAttribute("..organization"))
    device_class = "laptop"
    scores = factory.LazyFunction(dict)
    classifier_version = CLASSIFIER_VERSION
    computed_at = factory.LazyFunction(timezone.now)


class RoutingEventFactory(OrgScopedFactory):
    class Meta:
        model = RoutingEvent

    app = factory.SubFactory("apps_catalog.tests.factories.AppFactory", organization=factory.SelfAttribute("..organization"))
    capability = factory.LazyFunction(lambda: ModelCapability.objects.get(key="vision"))
    route = "local"
    latency_ms = 10.0
    success = True
    ts = factory.LazyFunction(timezone.now)
    received_at = factory.LazyFunction(timezone.now)


class TrainingRoundFactory(OrgScopedFactory):
    class Meta:
        model = TrainingRound

    app = factory.SubFactory("apps_catalog.tests.factories.AppFactory", organization=factory.SelfAttribute("..organization"))
    capability = factory.LazyFunction(lambda: ModelCapability.objects.get(key="vision"))
    number = factory.Sequence(lambda n: n + 1)


class TrainingParticipationFactory(OrgScopedFactory):
    class Meta:
        model = TrainingParticipation

    round = factory.SubFactory(TrainingRoundFactory, organization=factory.SelfAttribute("..organization"))
    device = factory.SubFactory(DeviceFactory, organization=factory.SelfAttribute("..organization"))
    submitted_at = factory.LazyFunction(timezone.now)
