"""The web gallery of ``reelforge serve``: every video made, with its recipe, playable and searchable.

Server-rendered Jinja2 pages and a little vanilla JS; ``gallery_routes(runtime)`` gives the Starlette routes.
"""

from reelforge.server.gallery.routes import error_page, gallery_routes, not_found, upload_too_large

__all__ = ["error_page", "gallery_routes", "not_found", "upload_too_large"]
