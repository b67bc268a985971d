from fleet.tenancy import rls
from fleet.tenancy.models import Membership, Organization


def membership_get(*, organization, user):
    """The user's membership in `organization` (which must be the current organization), or None."""
    return Membership.objects.filter(organization=organization, user=user).first()


def memberships_of_user(*, user):
    """Every membership of a user across organizations: needs the audited bypass."""
    with rls.bypass(reason="memberships of user", actor=f"user:{user.pk}"):
        return list(Membership.objects.select_related("organization").filter(user=user).order_by("created_at"))


def organization_by_slug(*, slug):
    return Organization.objects.filter(slug=slug).first()
