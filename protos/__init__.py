"""The Pub/Sub API's gRPC interface (pubsub_api.proto), compiled by grpcio-tools when first asked for.

    pb2, grpc_stubs = protos.pubsub_api()
    pb2.FetchRequest(topic_name=..., num_requested=100); grpc_stubs.PubSubStub(channel)

Building the modules from the committed .proto at first use means they always match it: there are no
generated files to forget to regenerate, and a fresh clone needs nothing but `pip install -r
requirements.txt`. Nothing is compiled at import.
"""
from __future__ import annotations

import functools
import pathlib
import threading

PROTO_DIR = pathlib.Path(__file__).resolve().parent
_lock = threading.Lock()


@functools.lru_cache(maxsize=None)
def _compile(relative: str):
    import grpc        # grpcio; grpc.protos_and_services needs grpcio-tools installed too

    with _lock:
        return grpc.protos_and_services(relative)


def pubsub_api():
    """(messages module, services module) for eventbus.v1.PubSub."""
    # Resolved against sys.path, where this package's parent already is (it was imported from there).
    return _compile("protos/pubsub_api.proto")
