"""Inventory domain errors."""

from common.errors import Conflict, NotFound


class InsufficientStock(Conflict):
    type = "insufficient-stock"
    title = "Not enough stock at that location"


class UnitNotFound(NotFound):
    type = "unit-not-found"
    title = "Unit not found"
