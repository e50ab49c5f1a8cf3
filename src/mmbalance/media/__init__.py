"""Pure decode and feature functions for audio and video files (no dataset knowledge)."""

from mmbalance.media.errors import MediaError

__all__ = ["MediaError"]
