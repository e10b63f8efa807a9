"""``python -m scnn`` (and ``torchrun -m scnn``) runs the command line."""

from scnn.cli import main

raise SystemExit(main())
