"""The in-guest probe: stdlib-only Python that runs *inside* the guest.

It is pushed into each guest as the package ``vcprobe`` and run as
``python3 -m vcprobe <command> '<json arguments>'``; it prints one JSON object.  It
observes and reports raw values; verdicts are decided on the host by the checks.
Nothing here may import from outside this package (the guest has only the stdlib).
"""
