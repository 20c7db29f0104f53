"""The local development stack (PostgreSQL + Apache Kafka + services) and its Python API.

import devstack
env = devstack.ensure_stack()        # starts what is missing; returns the stack.env values
env = devstack.read_stack_env()      # just reads .devstack/stack.env (+ environment overrides)
"""

from devstack.config import Config, load_config
from devstack.errors import DevstackError
from devstack.stack import STACK_KEYS, UpResult, down, ensure_stack, read_stack_env, status, up

__all__ = [
    "STACK_KEYS",
    "Config",
    "DevstackError",
    "UpResult",
    "down",
    "ensure_stack",
    "load_config",
    "read_stack_env",
    "status",
    "up",
]
