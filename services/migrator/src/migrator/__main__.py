"""`python -m migrator`: serve the app (and run the migrations it finds) on the configured host and port."""

from __future__ import annotations

from servicekit.app import run

from migrator.app import create_app
from migrator.settings import get_settings


def main() -> None:
    settings = get_settings()
    run(create_app(settings, freeze_gc=True), settings)


if __name__ == "__main__":
    main()
