"""`python -m orders`: the HTTP API and the Kafka consumers in one process."""

from __future__ import annotations

import uvicorn

from orders.app import create_app
from orders.settings import get_settings


def main() -> None:
    settings = get_settings()
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_config=None)


if __name__ == "__main__":
    main()
