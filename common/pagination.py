"""Pagination of SQLAlchemy selects for flask-smorest's ``@blp.paginate()`` views."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, func, select

from common.extensions import db


def paginate(query: Select, pagination_parameters: Any) -> list[Any]:
    """Set the total on ``pagination_parameters`` (X-Pagination header) and return one page."""
    pagination_parameters.item_count = db.session.scalar(
        select(func.count()).select_from(query.order_by(None).subquery())
    )
    page, size = pagination_parameters.page, pagination_parameters.page_size
    offset = (page - 1) * size
    if offset >= pagination_parameters.item_count:
        return []  # past the end (and no absurd OFFSET sent to the database)
    return list(db.session.scalars(query.offset(offset).limit(size)))
