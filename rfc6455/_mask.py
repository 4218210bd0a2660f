"""Placeholder: picks the masking/scanning implementation (native helper replaces this)."""

from __future__ import annotations

from ._mask_py import apply_mask, apply_mask_inplace, scan_frames

IMPLEMENTATION = "python"

__all__ = ["apply_mask", "apply_mask_inplace", "scan_frames", "IMPLEMENTATION"]
