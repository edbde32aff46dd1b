"""`reelforge serve`: Amazon Bedrock Runtime's async-invoke API, backed by reelforge's runtime.

``create_app(ServerSettings(...))`` returns the ASGI app; see docs/server.md.
"""

from reelforge.server.app import ServerSettings, create_app

__all__ = ["ServerSettings", "create_app"]
