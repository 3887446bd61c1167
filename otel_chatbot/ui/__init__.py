"""The review page (``/ui/``) and the feedback widget (``/ui/widget.js``), served by the processor.

Server-rendered with Jinja2 (autoescaped), no build step; ``routes.review_routes`` gives the mount
the HTTP receiver adds. Imports the server dependencies, so only the processor imports it.
"""
