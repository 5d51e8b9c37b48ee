"""gateway/pubsub.py without a server: settings, org ids, how gRPC failures are classified."""
import grpc

from gateway.pubsub import PubSubError, ReplayIdRefused, _error_of, org_id_18
from settings import Settings


class FakeRpcError(grpc.RpcError):
    def __init__(self, code, error_code, details):
        self._code, self._error_code, self._details = code, error_code, details

    def code(self):
        return self._code

    def details(self):
        return self._details

    def trailing_metadata(self):
        return (("error-code", self._error_code), ("rpc-id", "r1"))


def test_endpoint_setting(monkeypatch):
    monkeypatch.delenv("SF_PUBSUB_URL", raising=False)
    assert Settings.from_env().sf_pubsub_url == "api.pubsub.salesforce.com:7443"
    monkeypatch.setenv("SF_PUBSUB_URL", "127.0.0.1:7443")
    assert Settings.from_env().sf_pubsub_url == "127.0.0.1:7443"


def test_org_ids_in_their_18_character_form():
    assert org_id_18("00D5g000004EMUL") == "00D5g000004EMULEA4"
    assert org_id_18("00D5g000004EMULEA4") == "00D5g000004EMULEA4"


def test_a_refused_replay_id_is_its_own_error_and_unavailable_is_transient():
    refused = _error_of(FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT,
                                     "sfdc.platform.eventbus.grpc.subscription.fetch.replayid.corrupted", "old"))
    assert isinstance(refused, ReplayIdRefused) and not refused.transient
    down = _error_of(FakeRpcError(grpc.StatusCode.UNAVAILABLE, "x", "try later"))
    assert type(down) is PubSubError and down.transient and down.status == "UNAVAILABLE"
    auth = _error_of(FakeRpcError(grpc.StatusCode.UNAUTHENTICATED, "sfdc.platform.eventbus.grpc.service.auth.error",
                                  ""))
    assert auth.error_code.endswith("auth.error") and not auth.transient
