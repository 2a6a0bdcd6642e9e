"""The OpenAPI 3.1 description of ``tseg serve``'s API, served at ``/openapi.json``.

Written by hand (Starlette does not derive one): the request is parsed by ``service.py``, and
``tests/test_serve.py`` validates real answers against the response schemas below, so the two
cannot drift apart unnoticed.
"""

from __future__ import annotations

from typing import Any

from .. import __version__
from .options import ServeOptions

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string", "description": "what is wrong, in one sentence"}},
}

RESULT = {
    "type": "object",
    "required": ["expression", "confidence", "area", "area_fraction", "colour", "file"],
    "additionalProperties": False,
    "properties": {
        "expression": {"type": "string", "description": "the expression, white space tidied"},
        "confidence": {
            "type": "number",
            "minimum": 0,
            "maximum": 1,
            "description": "sigmoid of the pooled score: is the object in the image?",
        },
        "area": {"type": "integer", "minimum": 0, "description": "mask pixels, at mask size"},
        "area_fraction": {"type": "number", "minimum": 0, "maximum": 1},
        "colour": {"type": "string", "pattern": "^#[0-9a-f]{6}$", "description": "in the overlay"},
        "file": {"type": "string", "description": "the mask's file name in the zip"},
        "mask": {
            "type": "string",
            "contentEncoding": "base64",
            "contentMediaType": "image/png",
            "description": "mask_format png: 8-bit PNG, 255 inside the mask",
        },
        "rle": {
            "type": "object",
            "description": "mask_format rle: COCO compressed RLE (pycocotools.mask.decode reads it)",
            "required": ["size", "counts"],
            "additionalProperties": False,
            "properties": {
                "size": {
                    "type": "array",
                    "items": {"type": "integer"},
                    "minItems": 2,
                    "maxItems": 2,
                    "description": "[height, width]",
                },
                "counts": {"type": "string"},
            },
        },
    },
}

RESPONSE = {
    "type": "object",
    "required": [
        "width",
        "height",
        "mask_width",
        "mask_height",
        "mask_format",
        "backend",
        "seconds",
        "results",
    ],  # fmt: skip
    "additionalProperties": False,
    "properties": {
        "width": {"type": "integer", "description": "the image's width (after EXIF rotation)"},
        "height": {"type": "integer"},
        "mask_width": {"type": "integer", "description": "the masks' width (capped: mask_side)"},
        "mask_height": {"type": "integer"},
        "mask_format": {"type": "string", "enum": ["png", "rle", "none"]},
        "backend": {"type": "string", "enum": ["torch", "onnx"]},
        "seconds": {"type": "number", "description": "time in the model"},
        "results": {"type": "array", "items": {"$ref": "#/components/schemas/Result"}},
        "overlay": {
            "type": "string",
            "contentEncoding": "base64",
            "contentMediaType": "image/png",
            "description": "overlay: true: the masks over the image with a legend",
        },
        "zip": {
            "type": "string",
            "contentEncoding": "base64",
            "contentMediaType": "application/zip",
            "description": "zip: true: every mask as PNG and scores.json",
        },
    },
}

HEALTH = {
    "type": "object",
    "required": ["status", "backend", "workers", "queue", "in_flight"],
    "properties": {
        "status": {"type": "string", "enum": ["ok"]},
        "backend": {"type": "string"},
        "model": {"type": "string"},
        "workers": {"type": "integer"},
        "queue": {"type": "integer"},
        "in_flight": {"type": "integer", "description": "requests admitted and not yet done"},
        "model_side": {"type": "integer"},
        "mask_side": {"type": "integer"},
        "max_bytes": {"type": "integer"},
        "max_pixels": {"type": "integer"},
        "served": {"type": "integer"},
        "failed": {"type": "integer"},
        "rejected_busy": {"type": "integer"},
        "timed_out": {"type": "integer"},
    },
}


def _error(description: str, retry: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    if retry:
        out["headers"] = {
            "Retry-After": {"description": "seconds", "schema": {"type": "integer", "minimum": 1}}
        }
    return out


def openapi(o: ServeOptions) -> dict[str, Any]:
    """The document, with this server's limits in it."""
    common = {
        "expressions": {
            "description": "text, one expression per line or comma-separated; in JSON also a "
            f"list of texts, one expression each (at most {o.max_expressions}, each at most "
            f"{o.max_expression_chars} characters; runs of white space become one space)",
            "oneOf": [
                {"type": "string"},
                {"type": "array", "items": {"type": "string"}, "maxItems": o.max_expressions},
            ],
        },
        "mask_format": {"type": "string", "enum": ["png", "rle", "none"], "default": "png"},
        "overlay": {"type": "boolean", "default": False, "description": "add the overlay PNG"},
        "zip": {"type": "boolean", "default": False, "description": "add a zip of the masks"},
        "example": {"type": "string", "description": "a packaged example image, instead of image"},
        "name": {"type": "string", "description": "the image's name, used in messages"},
    }
    json_request = {
        "type": "object",
        "required": ["expressions"],
        "additionalProperties": False,
        "properties": {
            "image": {
                "type": "string",
                "contentEncoding": "base64",
                "description": f"the image file (PNG, JPEG, WebP, GIF, BMP, TIFF; at most "
                f"{o.max_bytes:,} bytes and {o.max_pixels:,} pixels), base64",
            },
            **common,
        },
    }
    form_request = {
        "type": "object",
        "required": ["expressions"],
        "properties": {
            "image": {"type": "string", "format": "binary", "description": "the image file"},
            **common,
            "expressions": {"type": "string", "description": common["expressions"]["description"]},
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "tseg serve",
            "version": __version__,
            "description": "Text-grounded segmentation: an image and referring expressions in, "
            "per expression a confidence, an area and a mask out.",
        },
        "paths": {
            "/api/segment": {
                "post": {
                    "summary": "Segment an image with referring expressions",
                    "operationId": "segment",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": json_request},
                            "multipart/form-data": {"schema": form_request},
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "one result per expression, in the order given",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/SegmentResponse"}
                                }
                            },
                        },
                        "400": _error(
                            "bad input: not an image, too many pixels, no expression, ..."
                        ),  # fmt: skip
                        "408": _error(f"the body did not arrive within {o.body_timeout:g} s"),
                        "413": _error(f"the body is above {o.max_body:,} bytes"),
                        "415": _error("the body is neither JSON nor multipart/form-data"),
                        "500": _error("the model failed on this input"),
                        "503": _error(
                            f"busy: {o.workers} workers and {o.queue} queued requests, or "
                            f"waited {o.request_timeout:g} s for a worker",
                            retry=True,
                        ),
                        "504": _error(f"the model took more than {o.request_timeout:g} s"),
                    },
                }
            },
            "/health": {
                "get": {
                    "summary": "Liveness and load",
                    "operationId": "health",
                    "responses": {
                        "200": {
                            "description": "the server is up",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Health"}
                                }  # fmt: skip
                            },
                        }
                    },
                }
            },
        },
        "components": {
            "schemas": {
                "SegmentResponse": RESPONSE,
                "Result": RESULT,
                "Health": HEALTH,
                "Error": ERROR,
            }
        },
    }
