"""Close frame payloads (RFC 6455 §5.5.1, §7.4): parse, validate, build."""

from __future__ import annotations

from ._constants import MAX_CONTROL_PAYLOAD, CloseCode, is_valid_close_code
from ._errors import InvalidUTF8, LocalProtocolError, ProtocolError

__all__ = ["build_close_payload", "parse_close_payload", "truncate_reason"]

_NO_STATUS = int(CloseCode.NO_STATUS_RCVD)


def parse_close_payload(payload: bytes) -> tuple[int, str]:
    """Return ``(code, reason)`` of a received close frame.

    An empty payload means no status code: reported as 1005 (§7.1.5).

    Raises:
        ProtocolError: a one-byte payload, or a code not allowed on the wire.
        InvalidUTF8: the reason is not valid UTF-8 (§5.5.1: "MUST be ... UTF-8").
    """
    if not payload:
        return _NO_STATUS, ""
    if len(payload) == 1:
        raise ProtocolError("close frame payload of one byte")
    code = (payload[0] << 8) | payload[1]
    if not is_valid_close_code(code):
        raise ProtocolError(f"invalid close code {code}")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidUTF8("invalid UTF-8 in close reason") from None
    return code, reason


def build_close_payload(code: int | None, reason: str = "") -> bytes:
    """Build the payload of a close frame to send.

    ``code`` None (or 1005) sends an empty payload, which then may carry no reason.

    Raises:
        LocalProtocolError: a code that may not be sent, or a reason too long
            for a control frame (123 bytes of UTF-8 at most).
    """
    if code is None or code == _NO_STATUS:
        if reason:
            raise LocalProtocolError("a close reason needs a close code")
        return b""
    if not is_valid_close_code(code):
        raise LocalProtocolError(f"close code {code} may not be sent on the wire")
    try:
        encoded = reason.encode("utf-8")
    except UnicodeEncodeError:
        raise LocalProtocolError("close reason with lone surrogates is not UTF-8") from None
    if len(encoded) > MAX_CONTROL_PAYLOAD - 2:
        raise LocalProtocolError("close reason longer than 123 bytes of UTF-8")
    return code.to_bytes(2, "big") + encoded


def truncate_reason(reason: str) -> str:
    """A close reason that fits a control frame (123 bytes of UTF-8)."""
    encoded = reason.encode("utf-8")
    if len(encoded) <= 123:
        return reason
    return encoded[:123].decode("utf-8", "ignore")
