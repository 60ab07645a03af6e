"""Authentication and user-management errors."""

from common.errors import Conflict, NotFound


class UserExists(Conflict):
    type = "user-exists"
    title = "User already exists"


class UserNotFound(NotFound):
    type = "user-not-found"
    title = "User not found"
