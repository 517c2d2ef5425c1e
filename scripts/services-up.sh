#!/usr/bin/env bash
# Make sure PostgreSQL and RabbitMQ answer on their standard local ports; start them if they do not.
set -euo pipefail

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
amqp_up() { (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; }

if ! pg_up; then
  echo "starting PostgreSQL"
  if command -v pg_ctlcluster >/dev/null; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start || true
  fi
  for _ in $(seq 1 60); do pg_up && break; sleep 1; done
  pg_up || { echo "PostgreSQL is not reachable on 127.0.0.1:5432" >&2; exit 1; }
fi

if ! amqp_up; then
  echo "starting RabbitMQ"
  if command -v rabbitmq-server >/dev/null; then
    if rabbitmqctl status >/dev/null 2>&1; then rabbitmqctl start_app || true; else rabbitmq-server -detached || true; fi
  fi
  for _ in $(seq 1 90); do amqp_up && break; sleep 1; done
  amqp_up || { echo "RabbitMQ is not reachable on 127.0.0.1:5672" >&2; exit 1; }
  rabbitmqctl await_startup >/dev/null 2>&1 || true
fi
