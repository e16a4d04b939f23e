"""The SMS and voice channel (Twilio): signed webhooks, a durable outbox, reconciliation."""
