"""``python -m viz`` is the ``viz`` command."""

from viz.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
