"""Probe commands of one area (see commands.py).  Each returns a JSON-able dict."""

COMMANDS = {}
