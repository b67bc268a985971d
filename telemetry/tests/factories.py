import datetime as dt

import factory
from django.utils import timezone

from devices.tests.factories import DeviceFactory
from fleet.tenancy.tests.factories import OrgScopedFactory
from telemetry.models import Annotation, AnnotationClass, QuarantinedReading, Reading

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


class ReadingFactory(OrgScopedFactory):
    class Meta:
        model = Reading

    device = factory.SubFactory(DeviceFactory, organization=factory.SelfAttribute("..organization"))
    metric = "temperature"
    ts = factory.Sequence(lambda n: T0 + dt.timedelta(seconds=n))
    value = factory.Sequence(lambda n: float(n))


class QuarantinedReadingFactory(OrgScopedFactory):
    class Meta:
        model = QuarantinedReading

    device = factory.SubFactory(DeviceFactory, organization=factory.SelfAttribute("..organization"))
    raw = factory.LazyAttribute(lambda o: {"metric": "temperature", "ts": "not a time", "value": 1.5})
    reason = "ts: An ISO-8601 timestamp is required."
    received_at = factory.LazyFunction(timezone.now)


class AnnotationClassFactory(OrgScopedFactory):
    class Meta:
        model = AnnotationClass

    name = factory.Sequence(lambda n: f"class-{n}")
    color = "#336699"


class AnnotationFactory(OrgScopedFactory):
    class Meta:
        model = Annotation

    device = factory.SubFactory(DeviceFactory, organization=factory.SelfAttribute("..organization"))
    annotation_class = factory.SubFactory(AnnotationClassFactory, organization=factory.SelfAttribute("..organization"))
    ts_from = T0
    ts_to = factory.LazyAttribute(lambda o: o.ts_from + dt.timedelta(minutes=5))
    text = "maintenance"
    created_by = "test"
