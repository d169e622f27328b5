"""The fake's action handlers, one module per area of the API."""
