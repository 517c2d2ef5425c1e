"""Contact policy per dealer group, optionally overridden per store: quiet hours, caps and budgets."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from notify_svc.models import Base
from shared.db.base import TimestampMixin
from shared.ids import new_id


class Policy(TimestampMixin, Base):
    __tablename__ = "policy"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "store_id", postgresql_nulls_not_distinct=True),)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(index=True)
    store_id: Mapped[uuid.UUID | None]
    #: No message at all in these local hours (service messages wait for the end; marketing per ``marketing_quiet``).
    quiet_start: Mapped[str] = mapped_column(sa.String(5), default="21:00")
    quiet_end: Mapped[str] = mapped_column(sa.String(5), default="08:00")
    #: Marketing only inside this local window (Aliyun: no promotional SMS 20:00–08:00).
    marketing_start: Mapped[str] = mapped_column(sa.String(5), default="09:00")
    marketing_end: Mapped[str] = mapped_column(sa.String(5), default="20:00")
    #: ``defer`` (to the next allowed minute) or ``drop`` (suppressed) for marketing outside its window.
    marketing_quiet: Mapped[str] = mapped_column(sa.String(6), default="defer")
    #: Marketing is held on statutory holidays' peak days unless allowed.
    marketing_on_holidays: Mapped[bool] = mapped_column(default=False)
    #: Messages of any purpose to one recipient per local day.
    daily_cap: Mapped[int] = mapped_column(default=3)
    #: Same sign + template to one number per rolling 24 h (Aliyun's published limit is 50: never above it).
    template_daily_cap: Mapped[int] = mapped_column(default=10)
    #: Group-wide budget per person (phone) and purpose over a rolling 7 days, across all stores.
    weekly_marketing_budget: Mapped[int] = mapped_column(default=2)
    weekly_service_budget: Mapped[int] = mapped_column(default=10)
    #: The opt-out text every marketing SMS carries.
    opt_out_text: Mapped[str] = mapped_column(sa.String(40), default="拒收请回复R")
