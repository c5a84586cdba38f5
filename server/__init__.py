"""vane.server."""
