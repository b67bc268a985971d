from datetime import timezone

import factory

from fleet.activity.models import ActivityEvent, ActorType
from fleet.tenancy.tests.factories import OrgScopedFactory


class ActivityEventFactory(OrgScopedFactory):
    class Meta:
        model = ActivityEvent

    actor_type = ActorType.SYSTEM
    actor_label = "system"
    verb = "thing.happened"
    subject_type = "thing"
    subject_id = factory.Faker("uuid4")
    created_at = factory.Faker("date_time_this_year", tzinfo=timezone.utc)
