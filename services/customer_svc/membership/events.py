"""The membership event every change of a card publishes (from membership's own use cases, a merge, a sale)."""

from __future__ import annotations

from customer_svc.deps import Ctx
from customer_svc.models import Membership
from shared.events.catalog.customer import MembershipChanged


def publish_change(ctx: Ctx, m: Membership, change: str) -> None:
    ctx.outbox.append(ctx.session, MembershipChanged(
        membership_id=m.id, customer_id=m.customer_id, card_no=m.card_no, tier=m.tier.name, status=m.status,
        points_balance=m.points_balance, change=change), tenant_id=m.tenant_id, store_id=m.store_id)
