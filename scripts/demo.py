"""hookline end to end on this machine: `hookline dev`, a receiver, three events.

Starts the local runtime, creates an endpoint for account `jane` that points at
a small receiver and an email endpoint, posts seed events, and prints each
delivery once its signature is verified by the Standard Webhooks and Svix
libraries, and the one email the events' window made (its subject and first
lines, as the emulator's SES recorded it). Then it prints a link to
jane's "Manage webhooks" page and keeps running, printing what the receiver gets,
until Ctrl-C (under CI it stops at once). Run through `make demo`.
"""

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from standardwebhooks.webhooks import Webhook as StandardWebhook
from svix.webhooks import Webhook as SvixWebhook

ROOT = Path(__file__).resolve().parent.parent
HOOKLINE = ROOT / "target" / "debug" / "hookline"
LOG = ROOT / ".demo" / "dev.log"
TIMEOUT_S = 60
# Reactive emails gather events this long: short, so the demo's email comes soon.
EMAIL_WINDOW = "2s"

SEED_EVENTS = [
    {"event_type": "sample.created", "dataset": "jane/flowers", "object": {"name": "rose.png"}},
    {"event_type": "label.updated", "dataset": "jane/flowers", "object": {"name": "rose.png", "labels": ["rose"]}},
    {"event_type": "release.created", "dataset": "jane/flowers", "object": {"name": "v1.0"},
     "text": "Release v1.0 of jane/flowers is out."},
]

deliveries = []
received = threading.Condition()
secret = None


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        headers = {k.lower(): v for k, v in self.headers.items()}
        checks = {}
        for name, library in (("standardwebhooks", StandardWebhook), ("svix", SvixWebhook)):
            try:
                library(secret).verify(body, headers)
                checks[name] = True
            except Exception as error:  # noqa: BLE001 - any refusal is reported
                checks[name] = f"refused: {error}"
        self.send_response(204)
        self.end_headers()
        with received:
            deliveries.append((headers, body, checks))
            received.notify_all()

    def log_message(self, *args):
        pass


def call(base, key, method, path, body=None):
    request = urllib.request.Request(
        base + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, json.loads(response.read() or b"null")


def show(delivery):
    """Prints one delivery with its signature checks; whether both libraries accepted it."""
    headers, body, checks = delivery
    try:
        event_type = json.loads(body).get("event_type", "slack message")
    except ValueError:
        event_type = "unreadable body"
    ok = all(result is True for result in checks.values())
    mark = "verified" if ok else f"NOT verified {checks}"
    print(f"\ndelivered {headers['webhook-id']} {event_type}: signature {mark} "
          f"(standardwebhooks, svix)\n  webhook-signature: {headers['webhook-signature']}\n  {body.decode()}",
          flush=True)
    return ok


def emulator_url():
    """The emulator dev started, as its log names it."""
    for line in LOG.read_text().splitlines():
        if "emulator up" in line:
            found = re.search(r"https?://[0-9.:]+", line)
            if found:
                return found.group(0)
    return None


def sent_emails(emulator, address):
    """The emails the emulator's SES recorded for `address`."""
    with urllib.request.urlopen(f"{emulator}/moto-api/data.json", timeout=10) as response:
        data = json.load(response)
    return [m for m in data.get("ses", {}).get("Message", []) if address in json.dumps(m.get("destinations"))]


def text_of(html):
    """The lines of an email's HTML part, as text."""
    text = re.sub(r"<(br|/p|/li|/h2|/h3|/tr|hr)[^>]*>", "\n", html)
    text = re.sub(r"<[^>]+>", " ", text)
    for entity, char in [("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'), ("&#39;", "'"), ("&amp;", "&")]:
        text = text.replace(entity, char)
    return [" ".join(line.split()) for line in text.splitlines() if line.strip()]


def follow(printed):
    """Prints each delivery as it comes, until Ctrl-C."""
    while True:
        with received:
            while len(deliveries) <= printed:
                received.wait()
            fresh = deliveries[printed:]
        for delivery in fresh:
            show(delivery)
        printed += len(fresh)


def main():
    global secret
    if not HOOKLINE.exists():
        sys.exit(f"{HOOKLINE} is missing: run `make demo`, which builds it first")
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    receiver_url = f"http://127.0.0.1:{receiver.server_address[1]}/webhooks"

    LOG.parent.mkdir(exist_ok=True)
    key = "hlk_demo_" + secrets.token_urlsafe(24)
    started = time.monotonic()
    with open(LOG, "w") as log:
        dev = subprocess.Popen(
            [str(HOOKLINE), "dev", "--port", "0", "--api-key", key, "--email-window", EMAIL_WINDOW],
            stdout=subprocess.PIPE, stderr=log, text=True, cwd=ROOT,
        )
    try:
        base = None
        for line in dev.stdout:
            if line.startswith("ready "):
                base = line.split()[1]
                break
        if base is None:
            sys.exit(f"hookline dev stopped before it was ready; see {LOG}")
        print(f"hookline dev ready at {base} in {time.monotonic() - started:.1f}s (log: {LOG.relative_to(ROOT)})")

        status, endpoint = call(base, key, "POST", "/v1/accounts/jane/endpoints",
                                {"url": receiver_url, "description": "demo receiver"})
        secret = endpoint["secret"]
        print(f"endpoint {endpoint['id']} -> {receiver_url} ({status})")
        address = "flowers-team@example.com"
        status, mailbox = call(base, key, "POST", "/v1/accounts/jane/endpoints",
                               {"type": "email", "emails": [address], "description": "flower team"})
        print(f"endpoint {mailbox['id']} -> email to {address}, a window of {EMAIL_WINDOW} ({status})")

        for event in SEED_EVENTS:
            status, accepted = call(base, key, "POST", "/v1/events", event)
            print(f"posted {event['event_type']:<16} -> {accepted['id']} ({status}, {accepted['endpoints']} endpoints)")

        deadline = time.monotonic() + TIMEOUT_S
        with received:
            while len(deliveries) < len(SEED_EVENTS) and time.monotonic() < deadline:
                received.wait(timeout=0.5)
        with received:
            seen = list(deliveries)
        verified = sum(show(delivery) for delivery in seen)
        print(f"\n{verified} of {len(SEED_EVENTS)} events delivered and verified")
        if verified != len(SEED_EVENTS):
            return 1

        emulator = emulator_url()
        emails = []
        while emulator and not emails and time.monotonic() < deadline:
            emails = sent_emails(emulator, address)
            time.sleep(0.5)
        if not emails:
            print(f"no email to {address} within {TIMEOUT_S}s; see {LOG}")
            return 1
        email = emails[0]
        print(f"\nemailed {address}: {email['subject']}")
        for line in text_of(email["body"])[1:7]:
            print(f"  {line}")
        if os.environ.get("CI"):
            return 0
        status, portal = call(base, key, "POST", "/v1/accounts/jane/portal-sessions", {"ttl_seconds": 86400})
        print(f"\nManage jane's webhooks (add endpoints, send tests, replay) in a browser:\n  {portal['url']}\n"
              f"Deliveries to the demo receiver show here. Ctrl-C stops everything.")
        follow(len(seen))
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        dev.send_signal(signal.SIGINT)
        try:
            dev.wait(timeout=15)
        except subprocess.TimeoutExpired:
            dev.kill()
        receiver.shutdown()


if __name__ == "__main__":
    sys.exit(main())
