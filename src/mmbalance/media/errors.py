"""Error type shared by the media decoders."""


class MediaError(ValueError):
    """A media file cannot be decoded; the message names the path and the problem."""
