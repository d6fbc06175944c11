"""``python -m isthmus.query``: the ``isthmus query`` commands without the main CLI (used by the demo)."""

from isthmus.cli_query import query_app

query_app(prog_name="isthmus query")
