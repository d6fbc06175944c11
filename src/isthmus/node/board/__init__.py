"""The node operator's web board, served by the node's own API process at ``/`` (see docs/node.md "Board")."""

from isthmus.node.board.guard import Guard
from isthmus.node.board.pages import mount_board

__all__ = ["Guard", "mount_board"]
