"""The HTTP baseline: a tiny FastAPI app returning a small JSON, served like the services are.

Run as ``python -m bench.bare_app --port N``; it answers on the same paths as the customer read and the public
survey answer, so the same nginx locations and wrk scripts apply. uvicorn.run with the same arguments as ``shared.cli``
(uvloop and httptools are picked automatically when installed, as for the services).
"""

from __future__ import annotations

import argparse
from typing import Any

import uvicorn
from fastapi import FastAPI

app = FastAPI()


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/api/v1/customers/{customer_id}")
async def customer(customer_id: str) -> dict[str, str]:
    return {"id": customer_id, "name": "bench"}


@app.post("/api/v1/public/surveys/{token}/responses", status_code=201)
async def survey_answer(token: str, body: dict[str, Any]) -> dict[str, str]:
    """The JSON body is parsed, as the real endpoint's is; nothing is checked or stored."""
    return {"state": "answered", "thanks": "bench"}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run("bench.bare_app:app", host=args.host, port=args.port, workers=1, log_config=None, access_log=False)
