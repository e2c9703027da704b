"""``python -m dimgen.cli`` (also what ``torchrun ... -m dimgen.cli`` runs)."""

from dimgen.cli import main

if __name__ == "__main__":  # spawned worker processes import this module: they must not rerun it
    main()
