"""State the provider adapters share across all workers: rate buckets, the WeChat access token, and WeChat
one-time subscription authorisations."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from notify_svc.models import Base
from shared.db.base import utcnow


class RateBucket(Base):
    """A token bucket per provider (QPS shared by every worker): refilled by elapsed time on each take."""

    __tablename__ = "rate_bucket"
    key: Mapped[str] = mapped_column(sa.String(60), primary_key=True)
    tokens: Mapped[float]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class WechatToken(Base):
    """The Official Account's access token: fetched once for all workers (row lock), refreshed before expiry."""

    __tablename__ = "wechat_token"
    appid: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    access_token: Mapped[str] = mapped_column(sa.String(600))
    expires_at: Mapped[datetime]


class WechatQuota(Base):
    """One-time subscription authorisations a user gave per template (each allows one message)."""

    __tablename__ = "wechat_quota"
    openid: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    template_id: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    remaining: Mapped[int] = mapped_column(default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
