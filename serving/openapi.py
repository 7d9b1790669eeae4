"""The OpenAPI 3.1 description of the inference service, served at ``GET /openapi.json``.

Hand-written: the API is three routes. ``tests/serving/test_service_hostile.py``
checks it against the service (the request fields are ``service_request.FIELDS``, the
answer's keys are what ``/v1/generate`` returns).

    curl -s 127.0.0.1:8081/openapi.json
"""
from __future__ import annotations

from genmodels.sampler import MAX_TEMPERATURE, MIN_TEMPERATURE, STOP_RULES
from serving.service_request import MAX_BODY, MAX_PRIME

_ERROR = {"type": "object", "required": ["error"],
          "properties": {"error": {"type": "string",
                                   "description": "One line naming the problem."},
                         "styles": {"type": "array", "items": {"type": "string"}}}}

_REQUEST = {
    "type": "object", "required": ["style"], "additionalProperties": False,
    "description": f"At most {MAX_BODY} bytes of UTF-8 JSON, uncompressed. Only style "
                   "is required; the rest default from config.toml.",
    "properties": {
        "style": {"type": "string", "description": "A style name (GET /v1/styles)."},
        "prime": {"type": "string", "maxLength": MAX_PRIME,
                  "description": "Text the model continues."},
        "temperature": {"type": "number", "minimum": 0, "maximum": MAX_TEMPERATURE,
                        "description": f"0 = greedy, else {MIN_TEMPERATURE:g} to "
                                       f"{MAX_TEMPERATURE:g}."},
        "top_k": {"type": "integer", "minimum": 0,
                  "description": "0 = off; at most the model's vocabulary size."},
        "top_p": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
        "seed": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1,
                 "description": "Same seed, params and model: same text."},
        "max_chars": {"type": "integer", "minimum": 1,
                      "description": "At most the style's max_chars."},
        "stop": {"type": "string", "enum": list(STOP_RULES)},
        "stream": {"type": "boolean",
                   "description": "NDJSON: {\"chunk\": ...} lines, then the answer."},
    }}

_ANSWER = {
    "type": "object",
    "required": ["style", "text", "prime", "dropped", "version", "stop_reason", "seed",
                 "timings"],
    "properties": {
        "style": {"type": "string"}, "text": {"type": "string"},
        "prime": {"type": "string", "description": "The prime as the model read it."},
        "dropped": {"type": "string", "description": "Prime characters it cannot read."},
        "version": {"type": "string", "description": "The model version that wrote it."},
        "stop_reason": {"type": "string", "enum": ["stop", "max_chars"]},
        "seed": {"type": "integer"},
        "timings": {"type": "object", "required": ["queued_ms", "generate_ms", "total_ms",
                                                   "steps"],
                    "properties": {"queued_ms": {"type": "number"},
                                   "generate_ms": {"type": "number"},
                                   "total_ms": {"type": "number"},
                                   "steps": {"type": "integer"}}}}}


def _json(schema: dict, what: str) -> dict:
    return {"description": what, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict:
    what = {400: "A bad request; the error names the field or problem.",
            401: "Missing or wrong X-Inference-Secret (when the service has a secret).",
            404: "Unknown style (styles lists them).", 408: "The body came too slowly.",
            413: "Body too large.", 429: "Busy: try again after Retry-After seconds.",
            503: "The style's model is unavailable, or not ready."}
    return {str(c): _json({"$ref": "#/components/schemas/Error"}, what[c]) for c in codes}


SPEC = {
    "openapi": "3.1.0",
    "info": {"title": "stylebot inference service", "version": "1",
             "description": "python -m serving; the batching engine over HTTP."},
    "paths": {
        "/v1/generate": {"post": {
            "summary": "Write text in a style.",
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/GenerateRequest"}}}},
            "responses": {"200": _json({"$ref": "#/components/schemas/GenerateResponse"},
                                       "The text (or NDJSON lines with stream)."),
                          **_errors(400, 401, 404, 408, 413, 429, 503)}}},
        "/v1/styles": {"get": {"summary": "Every style and the version it serves.",
                               "responses": {"200": {"description": "The styles."}}}},
        "/healthz": {"get": {"summary": "Ready when every style's model is loaded and its "
                                        "loop runs.",
                             "responses": {"200": {"description": "Every style ready."},
                                           "503": {"description": "not_ready names the "
                                                                  "styles that are not."}}}},
        "/metrics": {"get": {"summary": "Prometheus text format (OpenMetrics on request).",
                             "responses": {"200": {"description": "The counters."}}}},
    },
    "components": {"schemas": {"GenerateRequest": _REQUEST, "GenerateResponse": _ANSWER,
                               "Error": _ERROR},
                   "securitySchemes": {"secret": {"type": "apiKey", "in": "header",
                                                  "name": "X-Inference-Secret"}}},
}
