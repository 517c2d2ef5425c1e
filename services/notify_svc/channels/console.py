"""The console channel: what would be sent, written as one JSON line per message (embedded mode and demos).

It also stands in as the ``sms`` provider when no SMS provider is configured, so an embedded install can run
every flow end to end and a person can read what customers would have received in ``var/messages.jsonl``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
import structlog

from notify_svc.channels.base import Outcome, Outgoing, Receipt, SendResult
from shared.pii import mask_number

log = structlog.get_logger("notify.console")


class ConsoleChannel:
    """Appends to ``path`` (a small synchronous write: page-cache appends cost microseconds, and this channel
    serves demos and embedded installs, not volume). Always ``sent``; "delivered" once written."""

    name = "console"

    def __init__(self, path: Path | str, channel: str = "console") -> None:
        self.path = Path(path)
        self.channel = channel

    def __repr__(self) -> str:
        return f"ConsoleChannel(path={str(self.path)!r}, channel={self.channel!r})"

    async def send(self, out: Outgoing) -> SendResult:
        provider_id = f"console-{out.message_id}"
        line = {
            "time": datetime.now(UTC).isoformat(),
            "channel": self.channel,
            "message_id": str(out.message_id),
            "to": mask_number(out.to),
            "template": out.template_code,
            "text": out.text,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("ab") as f:
            f.write(orjson.dumps(line) + b"\n")
        log.info("console_message", channel=self.channel, message_id=line["message_id"], to=line["to"],
                 template=out.template_code, text=out.text)
        return SendResult(Outcome.SENT, provider_message_id=provider_id, code="console")

    async def lookup(self, out: Outgoing, sent_at: datetime) -> Receipt | None:
        return Receipt(provider="console", delivered=True, message_id=out.message_id,
                       provider_message_id=f"console-{out.message_id}", code="written", at=datetime.now(UTC))

    async def aclose(self) -> None:
        return None
