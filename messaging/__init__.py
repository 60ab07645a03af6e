"""Customer and partner messages: the outbox of emails and the communication log."""
