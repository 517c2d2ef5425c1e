"""AsyncAPI 3.0 document generated from the event catalog (served as ``/asyncapi.json``)."""

from __future__ import annotations

from typing import Any

from shared.events import catalog  # noqa: F401 - registers every event type
from shared.events.envelope import CloudEvent, registry


def asyncapi_document(exchange: str = "aftercare.events") -> dict[str, Any]:
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    schemas: dict[str, Any] = {"CloudEvent": CloudEvent.model_json_schema()}
    for name, model in sorted(registry.items()):
        key = name.replace(".", "_")
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for sub_name, sub in schema.pop("$defs", {}).items():
            schemas.setdefault(sub_name, sub)
        schemas[model.__name__] = schema
        messages[key] = {
            "name": name,
            "title": model.__name__,
            "summary": (model.__doc__ or "").strip().splitlines()[0] if model.__doc__ else name,
            "contentType": "application/cloudevents+json",
            "payload": {
                "allOf": [
                    {"$ref": "#/components/schemas/CloudEvent"},
                    {"type": "object", "properties": {
                        "type": {"const": name},
                        "data": {"$ref": f"#/components/schemas/{model.__name__}"},
                    }},
                ]
            },
        }
        channels[key] = {
            "address": name,
            "description": f"Routing key `{name}` on topic exchange `{exchange}`.",
            "messages": {key: {"$ref": f"#/components/messages/{key}"}},
            "bindings": {"amqp": {"is": "routingKey", "exchange": {"name": exchange, "type": "topic", "durable": True}}},
        }
        operations[f"publish_{key}"] = {"action": "send", "channel": {"$ref": f"#/channels/{key}"}}
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "Aftercare events", "version": "1.0.0",
                 "description": "CloudEvents 1.0 (structured JSON) published through each service's outbox."},
        "defaultContentType": "application/cloudevents+json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }
