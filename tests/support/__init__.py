"""Helpers the test modules share: nothing here is a test, and no test module imports another.

- ``stack``: the repository root, `tradeops` as an operator runs it, a whole local stack started and stopped;
- ``brokers``: both simulated brokers as real HTTP servers;
- ``gateworld``: the emulator with IAM access control on, people and an approval gate as IAM users holding the
  deployed policies, gates on threads;
- ``orderflow``: orders posted and followed on a running stack, and the alerts that reach a human;
- ``terminal``: `tradeops` at a pseudo-terminal; ``browser``: a headless Chromium;
- ``commandline``: a `tradeops` command line parsed as the CLI parses it, or run in this process;
- ``drilldocs``: the worked example of docs/drills.md, as the page shows it;
- ``tiers``: which tier a test is in, from the fixtures it requests, and the guard of the unit tier.
"""
