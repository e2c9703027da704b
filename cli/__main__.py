"""``python -m dimgen.cli`` (also what ``torchrun ... -m dimgen.cli`` runs)."""

from dimgen.cli import main

main()
