"""notify_svc: every message the platform sends (SMS, WeChat, webhooks), checked against consent, quiet hours
and caps before it leaves, and tracked until the provider's receipt."""
