"""Fast JSON responses for hot read paths: orjson, no second validation pass.

Routes still declare ``response_model`` (the OpenAPI schema, checked by the schemathesis suite); returning
a ready ``Response`` skips FastAPI's re-validation of what the service just built from typed columns.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Response


def json_response(content: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(content, default=str), status_code=status_code, headers=headers,
                    media_type="application/json")
