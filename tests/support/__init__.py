"""Helpers the tests share: private servers, waiting with timeouts that scale on slow machines."""
