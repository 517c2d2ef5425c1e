"""What the relay publishes through: RabbitMQ in production, the in-process bus in embedded mode."""

from __future__ import annotations

from typing import Protocol

from shared.events.envelope import CloudEvent


class Publisher(Protocol):
    async def publish_batch(self, events: list[CloudEvent]) -> list[BaseException | None]:
        """Publish all; one result per event: None once the transport confirmed it, else the error."""
        ...
