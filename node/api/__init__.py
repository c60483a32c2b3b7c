"""The node's HTTP API (FastAPI): app factory, problem JSON, request authentication."""

from node.api.app import create_app
from node.api.problems import Problem, ProblemError
from node.api.status import build_status, register_status_section

__all__ = ["Problem", "ProblemError", "build_status", "create_app", "register_status_section"]
