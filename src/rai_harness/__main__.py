"""``python -m rai_harness`` is the ``rai`` command."""

from rai_harness.cli import main

main()
