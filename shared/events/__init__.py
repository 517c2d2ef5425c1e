"""CloudEvents envelope and the one catalog of event payloads shared by all services."""

from shared.events.envelope import CloudEvent, EventData, build_event, event_type, registry, topic_matches

__all__ = ["CloudEvent", "EventData", "build_event", "event_type", "registry", "topic_matches"]
