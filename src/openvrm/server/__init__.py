"""The HTTP front end: the owner API under ``/api/v1`` and the web pages, over the core services.

``openvrm.server.app.create_app(settings)`` builds the FastAPI application; ``run(settings)`` serves it
with uvicorn. Routes parse, call a core service and render; they hold no domain logic.
"""
