"""virtio-conformance: judge a virtio device implementation clause by clause.

The package is split into rooms that know little of each other:

- ``machine``  starts QEMU and backend daemons, talks QMP, serial and SSH, cleans up.
- ``images``   builds the guest kernel + initramfs from Debian packages (cached).
- ``probe``    stdlib-only code that runs *inside* the guest and prints JSON.
- ``catalog``  one entry per normative clause of the virtio specification.
- ``checks``   pytest modules that judge clauses against what a probe observed.
- ``reports``  JUnit, JSON, HTML, Markdown and run-to-run comparison.

``plugin`` (pytest) and ``cli`` (the ``virtio-conformance`` command) drive them.
"""

__version__ = "0.1.0"
