"""`python -m catalog`: serve the app on the configured host and port."""

from __future__ import annotations

import uvicorn

from catalog.app import create_app
from catalog.settings import get_settings


def main() -> None:
    settings = get_settings()
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_config=None)


if __name__ == "__main__":
    main()
