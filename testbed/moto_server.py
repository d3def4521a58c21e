"""moto in server mode, one request at a time.

moto's own `moto_server` handles requests on threads, and its S3 conditional writes (If-None-Match /
If-Match on PutObject) check and then write without a lock: two racing writers can both succeed, which
real S3 never allows. The node agents' seed lease relies on exactly that guarantee, so the test bed
serializes requests to get S3's semantics. Usage: python moto_server.py HOST PORT
"""

import sys
import threading

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple

import moto_patches

moto_patches.apply()

app = DomainDispatcherApplication(create_backend_app)
lock = threading.Lock()


def serialized(environ, start_response):
    with lock:
        # Consume the response inside the lock: the state change and its answer are one step.
        return list(app(environ, start_response))


if __name__ == "__main__":
    host, port = sys.argv[1], int(sys.argv[2])
    run_simple(host, port, serialized, threaded=True, request_handler=MotoRequestHandler)
