"""The Outbound Message sender against a real listener on loopback: batching, ACK handling,
retry/backoff/drop on the scaled clock, latest values at send time, chaos, TLS, restarts."""
import http.server
import ssl
import threading
import time
from xml.etree import ElementTree

import pytest
import trustme

from emulator import outbound
from emulator.store import Org

NS = {"o": outbound.OUTBOUND_NS, "sf": "urn:sobject.enterprise.soap.sforce.com"}
ACK = (b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>'
       b'<notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound"><Ack>true</Ack>'
       b'</notificationsResponse></soapenv:Body></soapenv:Envelope>')
NACK = ACK.replace(b"true", b"false")


class Listener:
    """A Salesforce Outbound Message listener whose answer the test chooses."""

    def __init__(self, clock, tls_context=None):
        self.clock = clock
        self.answer = "ack"          # ack | nack | 500 | slow
        self.received = []           # (emulated receipt time, parsed notifications element)
        self.headers = []
        listener = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                listener.received.append((listener.clock.now(), ElementTree.fromstring(body)))
                listener.headers.append(dict(self.headers))
                if listener.answer == "slow":
                    time.sleep(1.0)
                status = 500 if listener.answer == "500" else 200
                payload = NACK if listener.answer == "nack" else ACK
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "text/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass                 # the sender gave up waiting

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        scheme = "http"
        if tls_context is not None:
            self.server.socket = tls_context.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_port}/outbound"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def notifications(self, message_index):
        return self.received[message_index][1].findall(".//o:Notification", NS)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def sobject_values(notification):
    return {child.tag.split("}")[1]: child.text for child in notification.find("o:sObject", NS)}


@pytest.fixture
def org(tmp_path):
    the_org = Org(tmp_path / "org")
    yield the_org
    the_org.close()


@pytest.fixture
def listener(org):
    receiver = Listener(org.clock)
    yield receiver
    receiver.close()


def make_sender(org, listener, **rule_options):
    sender = outbound.OutboundSender(org)
    org.subscribe(sender.on_change)
    rule = outbound.Rule(id=sender.new_rule_id(), sobject="Account", fields=("Name", "AnnualRevenue", "Industry"),
                         endpoint_url=listener.url, instance_url="https://127.0.0.1:8443", **rule_options)
    sender.put_rule(rule)
    return sender, rule


def create_account(org, name="Acme", client=None, user_id=None, **values):
    return org.create("Account", {"Name": name, **values}, client=client,
                      user_id=user_id or org.default_user_id)["Id"]


def test_batches_up_to_100_notifications_per_message(org, listener):
    sender, rule = make_sender(org, listener)
    created = [create_account(org, f"Acme {i}") for i in range(150)]
    assert sender.deliver_due() == 2
    assert [len(listener.notifications(i)) for i in range(2)] == [100, 50]
    first = listener.received[0][1].find(".//o:notifications", NS)
    assert first.findtext("o:OrganizationId", namespaces=NS) == org.org_id
    assert first.findtext("o:ActionId", namespaces=NS) == rule.id and rule.id.startswith("04k")
    sent_ids = [n.findtext("o:Id", namespaces=NS) for i in range(2) for n in listener.notifications(i)]
    assert len(set(sent_ids)) == 150 and all(i.startswith("04l") and len(i) == 18 for i in sent_ids)
    assert [sobject_values(n)["Id"] for i in range(2) for n in listener.notifications(i)] == created
    assert listener.headers[0]["Content-Type"] == "text/xml; charset=utf-8"
    status = sender.status()
    assert (status["queued"], status["sent"], status["acked"], status["messages"]) == (0, 150, 150, 2)


def test_values_are_read_at_send_time_and_nulls_omitted(org, listener):
    sender, _ = make_sender(org, listener)
    record_id = create_account(org, "Before", Industry="Banking")
    org.update("Account", record_id, {"Name": "After", "Industry": None, "AnnualRevenue": 45000},
               client=None, user_id=org.default_user_id)
    sender.deliver_due()
    notifications = listener.notifications(0)
    assert len(notifications) == 2            # one per change, both carrying the latest values
    for notification in notifications:
        assert sobject_values(notification) == {"Id": record_id, "AnnualRevenue": "45000.0", "Name": "After"}


def test_a_record_deleted_before_sending_goes_out_with_its_id_only(org, listener):
    sender, _ = make_sender(org, listener)
    record_id = create_account(org, "Short-lived")
    org.delete("Account", record_id, client=None, user_id=org.default_user_id)
    sender.deliver_due()
    assert [sobject_values(n) for n in listener.notifications(0)] == [{"Id": record_id}]


def test_changes_by_excluded_users_or_clients_queue_nothing(org, listener):
    sender, _ = make_sender(org, listener, exclude_clients=("forcebridge",),
                            exclude_user_ids=(org.default_user_id[:15],))
    create_account(org, "Echo", client="forcebridge")
    create_account(org, "Integration user")
    assert sender.status()["queued"] == 0


@pytest.mark.parametrize("answer", ["500", "nack", "slow"])
def test_unacknowledged_messages_are_retried_and_then_acked(tmp_path, answer):
    # Scale 600: the 60 s ACK timeout lasts 0.1 real seconds, so "slow" times out.
    org = Org(tmp_path / "org", time_scale=600)
    listener = Listener(org.clock)
    try:
        sender, _ = make_sender(org, listener)
        create_account(org)
        listener.answer = answer
        sender.deliver_due()
        [queued] = sender.queue.queued()
        assert queued["attempts"] == 1 and queued["last_error"]
        assert sender.status()["acked"] == 0
        listener.answer = "ack"
        org.clock.advance(outbound.retry_delay(1))
        sender.deliver_due()
        status = sender.status()
        assert (status["queued"], status["acked"], status["retries"]) == (0, 1, 1)
        first, second = listener.notifications(0)[0], listener.notifications(1)[0]
        assert first.findtext("o:Id", namespaces=NS) == second.findtext("o:Id", namespaces=NS)
    finally:
        listener.close()
        org.close()


def test_backoff_doubles_caps_at_two_hours_and_drops_after_a_day(org, listener):
    sender, _ = make_sender(org, listener)
    listener.answer = "500"
    create_account(org)
    start = org.clock.now()
    while sender.status()["queued"]:
        sender.deliver_due()
        next_due = sender.queue.next_due()
        if next_due is not None:
            org.clock.advance(max(next_due - org.clock.now().timestamp(), 0))
    times = [(received - start).total_seconds() for received, _ in listener.received]
    gaps = [round(b - a) for a, b in zip(times, times[1:])]
    assert gaps[:8] == [30, 60, 120, 240, 480, 960, 1920, 3840]
    assert set(gaps[8:]) == {7200}
    assert times[-1] < 24 * 3600 <= times[-1] + 7200
    status = sender.status()
    assert (status["dropped"], status["queued"], status["acked"]) == (1, 0, 0)
    assert status["retries"] == len(times) - 1


def test_sender_thread_retries_on_the_scaled_clock_until_the_day_is_over(tmp_path):
    org = Org(tmp_path / "org", time_scale=40_000)     # a day in about two real seconds
    listener = Listener(org.clock)
    listener.answer = "500"
    try:
        sender, _ = make_sender(org, listener)
        sender.start()
        create_account(org)
        for _ in range(600):
            if sender.status()["dropped"]:
                break
            time.sleep(0.05)
        sender.stop()
        assert sender.status()["dropped"] == 1
        created = listener.received[0][0]
        offsets = [(moment - created).total_seconds() for moment, _ in listener.received]
        assert 10 <= len(offsets) <= 21               # the schedule allows 19 tries in 24 h
        assert offsets[-1] < 24 * 3600
    finally:
        listener.close()
        org.close()


def test_queue_and_counters_survive_a_restart(org, listener):
    sender, _ = make_sender(org, listener)
    sender.set_paused(True)
    record_id = create_account(org)
    assert sender.status()["queued"] == 1
    sender.stop()
    again = outbound.OutboundSender(org)
    assert again.paused and again.status()["queued"] == 1 and len(again.rules()) == 1
    again.set_paused(False)
    again.deliver_due()
    assert sobject_values(listener.notifications(0)[0])["Id"] == record_id
    assert again.status()["acked"] == 1


def test_chaos_redelivers_acknowledged_messages(org, listener):
    sender, _ = make_sender(org, listener)
    sender.set_chaos(outbound.Chaos(seed=3, redeliver=1.0))
    create_account(org)
    sender.deliver_due()
    assert len(listener.received) == 2
    ids = [listener.notifications(i)[0].findtext("o:Id", namespaces=NS) for i in range(2)]
    assert ids[0] == ids[1]
    assert sender.status()["redelivered"] == 1


def test_chaos_reorders_within_a_seed(org, listener):
    sender, _ = make_sender(org, listener)
    sender.set_chaos(outbound.Chaos(seed=5, reorder=True))
    created = [create_account(org, f"Acme {i}") for i in range(20)]
    sender.deliver_due()
    delivered = [sobject_values(n)["Id"] for n in listener.notifications(0)]
    assert sorted(delivered) == sorted(created) and delivered != created


def test_https_listener_verified_with_a_ca_bundle(org, tmp_path):
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(context)
    ca_path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    listener = Listener(org.clock, context)
    try:
        sender, rule = make_sender(org, listener)
        create_account(org)
        sender.deliver_due()
        assert sender.status()["acked"] == 0        # unknown CA: delivery fails, like Salesforce
        sender.put_rule(outbound.Rule(**{**rule.__dict__, "ca_bundle": str(ca_path)}))
        org.clock.advance(outbound.retry_delay(1))
        sender.deliver_due()
        assert sender.status()["acked"] == 1
    finally:
        listener.close()


def test_a_message_that_cannot_be_built_is_retried_not_fatal(org, listener):
    sender, rule = make_sender(org, listener)
    create_account(org)
    sender.put_rule(outbound.Rule(**{**rule.__dict__, "sobject": "Gone__c"}))
    sender.deliver_due()
    [queued] = sender.queue.queued()
    assert queued["attempts"] == 1 and "cannot build" in queued["last_error"]
    sender.put_rule(rule)
    org.clock.advance(outbound.retry_delay(1))
    sender.deliver_due()
    assert sender.status()["acked"] == 1
