"""Type stub for the cffi extension built from native/ (see native/rfc6455_native.h)."""

from typing import Any

class _Lib:
    def rfc6455_mask_inplace(self, buf: Any, len: int, key: Any, offset: int) -> None: ...
    def rfc6455_mask_copy(self, dst: Any, src: Any, len: int, key: Any, offset: int) -> None: ...
    def rfc6455_scan_frames(
        self,
        buf: Any,
        start: int,
        end: int,
        expect_masked: int,
        allowed_rsv: int,
        max_payload: int,
        out: Any,
        max_frames: int,
        status: Any,
    ) -> int: ...

    def rfc6455_scan_bound(self, buf: Any, start: int, end: int, ctl: Any) -> int: ...
    def rfc6455_take_frame(
        self, buf: Any, end: int, expect_masked: bool, max_payload: int
    ) -> int: ...
    def rfc6455_encode_masked(
        self, out: Any, first: int, payload: Any, len: int, key: Any
    ) -> None: ...
    def rfc6455_take_frame_in(
        self, buf: Any, cap: int, end: int, expect_masked: bool, max_payload: int
    ) -> int: ...

ffi: Any
lib: _Lib
