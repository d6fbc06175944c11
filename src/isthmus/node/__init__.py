"""Every party's own long-running service: its keys, its data catalogue, its policy, consent to each job.

See docs/node.md. ``config`` reads node.yaml, ``proposal`` turns a proposed job (aliases, never paths)
into each party's own job, ``policy`` decides, ``consent`` signs, ``store`` keeps the history,
``peers`` carries node-to-node messages over mutual TLS, ``coordinator`` is the state machine,
``runner`` runs this party's side, ``api`` is the local HTTP API the CLI talks to.
"""
