"""Staff users, login sessions, API tokens and role checks."""
