"""``python -m interir.cli ...`` (also what ``torchrun -m interir.cli train ...`` runs)."""

from interir.cli import main

if __name__ == "__main__":
    main()
