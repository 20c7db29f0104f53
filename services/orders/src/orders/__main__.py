"""`python -m orders`: the HTTP API and the Kafka consumers in one process."""

from __future__ import annotations

from servicekit.app import run

from orders.app import create_app
from orders.settings import get_settings


def main() -> None:
    settings = get_settings()
    run(create_app(settings, freeze_gc=True), settings)


if __name__ == "__main__":
    main()
