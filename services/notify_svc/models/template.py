"""Message templates per tenant (optionally per store), key, channel and locale, with typed variables."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from notify_svc.models import Base
from shared.db.base import JSONType, TimestampMixin
from shared.ids import new_id

#: ``draft`` cannot be sent (the provider has not approved the template), ``approved`` can, ``disabled`` is retired.
TEMPLATE_STATUSES = ("draft", "approved", "disabled")


class Template(TimestampMixin, Base):
    __tablename__ = "template"
    __table_args__ = (
        sa.UniqueConstraint("tenant_id", "store_id", "key", "channel", "locale", postgresql_nulls_not_distinct=True),
    )
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(index=True)
    store_id: Mapped[uuid.UUID | None] = mapped_column(comment="None: the whole dealer group")
    key: Mapped[str] = mapped_column(sa.String(60))
    channel: Mapped[str] = mapped_column(sa.String(10), comment="sms, wechat, wecom or console")
    locale: Mapped[str] = mapped_column(sa.String(10), default="zh-CN")
    purpose: Mapped[str] = mapped_column(sa.String(10), default="service")
    title: Mapped[str] = mapped_column(sa.String(100))
    body: Mapped[str] = mapped_column(sa.Text(), comment="Text with {variable} placeholders")
    #: ``[{"name": "plate", "type": "plate", "required": true, "max_length": 20}, ...]``
    variables: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    sign_name: Mapped[str | None] = mapped_column(sa.String(40), comment="SMS signature (签名) the provider approved")
    #: Provider template ids: ``{"aliyun": "SMS_1234", "tencent": "1234567", "wechat": "<template id>"}``.
    provider_codes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    #: Tencent and WeChat take parameters by position / field: the variable names in provider order
    #: (``["customer_name", "due_date"]``) or per WeChat field (``{"thing1": "customer_name"}``).
    provider_params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(sa.String(10), default="approved")
    version: Mapped[int] = mapped_column(default=1)
