"""Integration events shared by every service: envelope, topics, outbox, inbox, dead letters."""
