"""Test helpers shared by every service's tests: throwaway Postgres databases and RabbitMQ vhosts, an event tap."""
