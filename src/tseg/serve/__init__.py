"""``tseg serve``: a web page and a JSON API over a model, on uvicorn (ASGI) with Starlette.

    options.py   the bounds (ServeOptions) and the command-line flags; standard library only
    imaging.py   bounded image decoding; masks as PNG or COCO RLE; the overlay and the zip
    service.py   SegmentService: admission, the worker pool, parsing, the model call
    openapi.py   the API's OpenAPI 3.1 document
    app.py       the Starlette app (routes, body limits and timeouts, status codes)
    server.py    load_model, the socket, uvicorn (connection bounds), ``serve``

This ``__init__`` imports nothing, so ``tseg --help`` loads neither uvicorn nor a model, and no
module here imports torch: the ONNX Runtime backend runs without it.
"""
