"""Outbound webhooks to integration partners (OEM systems), signed per Standard Webhooks: endpoints and their
API (``router``, ``service``, ``schemas``), fan-out of platform events into deliveries (``fanout``), the delivery
worker (``delivery``), signatures (``signing``) and the SSRF guard (``ssrf``)."""
