"""A drill's result: the figures a drill measures, how they are computed from its records, and its verdict.

Below both :mod:`tradeops.experiments` (which runs drills and writes ``result.json``) and
:mod:`tradeops.reports` (which words the figures for the regulator), so neither imports the other.
"""
