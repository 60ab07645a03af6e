"""Catalog domain errors."""

from common.errors import NotFound, ValidationFailed


class ProductNotFound(NotFound):
    type = "product-not-found"
    title = "Product not found"


class ImportRejected(ValidationFailed):
    type = "import-file-rejected"
    title = "Import file rejected"
