"""Complaint handling (DOMAIN §10): intake, the case log, SLA escalation, goodwill approval, closure."""
