"""rfc6455: a WebSocket (RFC 6455, RFC 7692) implementation. Placeholder."""
__version__ = "0.1.0"
