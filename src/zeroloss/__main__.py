"""``python -m zeroloss`` runs the command line."""

from zeroloss.cli import main

main()
