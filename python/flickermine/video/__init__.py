"""Video input: decode once, in order, never seek (see :mod:`._source`)."""

from __future__ import annotations

from ._source import IMAGE_EXTENSIONS, Frame, VideoError, VideoSource, open_video

__all__ = ["Frame", "VideoError", "VideoSource", "open_video", "IMAGE_EXTENSIONS"]
