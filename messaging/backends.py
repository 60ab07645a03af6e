"""Where emails go: a file per message (default), the console, or SMTP."""

from __future__ import annotations

import os
import smtplib
import sys
from collections.abc import Mapping
from email.message import EmailMessage
from typing import Any


def build_email(*, sender: str, recipient: str, subject: str, body: str,
                message_id: str) -> EmailMessage:
    """A plain-text email with a stable Message-ID."""
    email = EmailMessage()
    email["From"] = sender
    email["To"] = recipient
    email["Subject"] = subject
    email["Message-ID"] = message_id
    email.set_content(body)
    return email


def deliver(email: EmailMessage, config: Mapping[str, Any], *, file_stem: str) -> None:
    """Send through the configured backend; raises on failure so the job retries."""
    backend = config.get("MAIL_BACKEND", "file")
    if backend == "file":
        directory = config["MAIL_FILE_DIR"]
        os.makedirs(directory, exist_ok=True)
        # Written under a temporary name and renamed: a reader never sees half a message,
        # and a retried job overwrites the same file instead of adding a duplicate.
        path = os.path.join(directory, f"{file_stem}.eml")
        with open(path + ".tmp", "wb") as handle:
            handle.write(bytes(email))
        os.replace(path + ".tmp", path)
    elif backend == "console":
        sys.stdout.write(email.as_string() + "\n")
    elif backend == "smtp":
        with smtplib.SMTP(config["MAIL_SMTP_HOST"], config["MAIL_SMTP_PORT"], timeout=30) as smtp:
            if config.get("MAIL_SMTP_STARTTLS"):
                smtp.starttls()
            if config.get("MAIL_SMTP_USER"):
                smtp.login(config["MAIL_SMTP_USER"], config["MAIL_SMTP_PASSWORD"])
            smtp.send_message(email)
    else:
        raise ValueError(f"unknown MAIL_BACKEND {backend!r}")
