"""``make bench``: throughput and p99 of customer_svc through nginx, outbox relay vs raw publish.

One run is self-contained: a fresh Postgres database and RabbitMQ vhost are created, migrated and
seeded, the servers (uvicorn, nginx) are started as child processes, measured with ``wrk``, and
everything is removed again. Figures are printed for people; the last line is one JSON object with
the headline numbers and their ratios against the baselines (bare FastAPI app, raw aio-pika publish).
"""
