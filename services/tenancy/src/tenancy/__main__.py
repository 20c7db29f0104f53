"""`python -m tenancy`: serve the app on the configured host and port."""

from __future__ import annotations

from servicekit.app import run

from tenancy.app import create_app
from tenancy.settings import get_settings


def main() -> None:
    settings = get_settings()
    run(create_app(settings, freeze_gc=True), settings)


if __name__ == "__main__":
    main()
