import datetime as dt

import factory

from exports.models import ExportJob, Include, ScopeType
from fleet.tenancy.tests.factories import OrgScopedFactory


class ExportJobFactory(OrgScopedFactory):
    class Meta:
        model = ExportJob

    scope_type = ScopeType.ORGANIZATION
    scope_id = factory.SelfAttribute("organization.id")
    range_from = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    range_to = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
    includes = factory.LazyFunction(lambda: [Include.READINGS, Include.ANNOTATIONS])
    requested_by = "test"
