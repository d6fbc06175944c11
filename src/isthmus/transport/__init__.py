"""Moving protocol messages between parties: codec, channels, audit."""

from isthmus.transport.channel import Channel

__all__ = ["Channel"]
