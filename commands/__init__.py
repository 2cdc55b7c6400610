"""The ``tradeops`` command groups, one module each, mounted by :mod:`tradeops.cli`.

Every command parses its arguments, calls the packages, and renders; no rule lives here. They
share :mod:`.output` (consoles, JSON, the small renderers) and :mod:`.context` (settings, AWS
clients and the caller's identity, resolved against the running stack).
"""
