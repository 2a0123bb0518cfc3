"""The ceiling for bench.http (c): a FastAPI endpoint that reads the body and
answers a constant, served by uvicorn as `ledger serve` serves the API (one
worker, no access log). Its requests/s from the same client processes, in the
same run, is what this machine allows any Python HTTP endpoint.

    .venv/bin/python -m uvicorn bench.trivial_api:create --factory --port PORT
"""

from __future__ import annotations

from fastapi import FastAPI, Request, Response

ANSWER = '{"appended": 1, "duplicates": 0, "rejected": [], "first_position": 1, "last_position": 1}'


def create() -> FastAPI:
    app = FastAPI()

    @app.post("/v1/events")
    async def append_events(request: Request) -> Response:
        await request.body()
        return Response(ANSWER, media_type="application/json")

    @app.get("/readyz")
    async def ready() -> Response:
        return Response("{}", media_type="application/json")

    return app
