"""Transactional outbox, relay, idempotent consumers (inbox), AMQP and in-process transports."""
