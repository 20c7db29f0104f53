"""`python -m devstack.demo`: play the demo against a stack that is already up (`make up`)."""

from __future__ import annotations

import asyncio
import sys

from devstack.demo import exit_code, play
from devstack.demo.settings import load_scenario
from devstack.errors import DevstackError
from devstack.stack import read_stack_env


def main() -> int:
    try:
        scenario = load_scenario()
        env = read_stack_env()
    except DevstackError as error:
        print(f"demo: error: {error.message}", file=sys.stderr)
        return 1
    if not scenario.enabled:
        print("demo: DEMO=0, nothing to play")
        return 0
    try:
        summary = asyncio.run(play(env, scenario))
    except KeyboardInterrupt:
        return 130
    return exit_code(scenario, summary)


sys.exit(main())
