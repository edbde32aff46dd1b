"""Signed webhooks that are never lost: a real receiver on 127.0.0.1, unmodified boto3 and openai clients."""

from __future__ import annotations

import json
import threading
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from reelforge.jobs import webhook_dispatch, webhook_targets, webhooks
from reelforge.errors import RequestError
from reelforge.jobs.record import JobStatus
from reelforge.jobs.runtime import Runtime
from reelforge.server.app import ServerSettings
from server_fixtures import TINY, TINY_MODEL, ServerProcess, ServerThread, bedrock, http, start_tiny, wait_done
from webhook_receiver import Receiver
from wire_fixtures import openai_client

SECRET = webhooks.new_secret()


@pytest.fixture
def receiver():
    r = Receiver().start()
    yield r
    r.stop()


def settings(**kw) -> webhooks.Settings:
    return webhooks.Settings(**{"secret": SECRET, "allow_private": True, **kw})


def deliveries_done(store, job_id: str, count: int):
    return lambda _: len([d for d in store.deliveries(job_id) if d["state"] != "pending"]) >= count


# --- which URLs may be used ----------------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "[::ffff:127.0.0.1]", "2130706433", "[fd00::1]", "100.64.0.1", "169.254.169.254", "10.0.0.1", "127.0.0.1", "localhost", "[::1]"])
def test_addresses_that_are_not_public_are_refused_without_the_flag(host):
    with pytest.raises(RequestError) as err:
        webhook_targets.check_url(f"https://{host}/hook", False, "webhook")
    assert err.value.field == "webhook" and "not a public address" in err.value.message
    assert webhook_targets.check_url(f"https://{host}/hook", True, "webhook").addresses  # allowed with the flag


def test_a_name_resolving_to_loopback_is_refused(monkeypatch):
    monkeypatch.setattr(webhook_targets, "resolve", lambda host, port: ["127.0.0.1"])
    with pytest.raises(RequestError, match="127.0.0.1"):
        webhook_targets.check_url("https://hooks.example.test/x", False, "webhook")


def test_https_is_required_and_urls_are_checked_for_shape(monkeypatch):
    monkeypatch.setattr(webhook_targets, "resolve", lambda host, port: ["93.184.216.34"])
    assert webhook_targets.check_url("https://hooks.example.test:8443/x?a=1", False, "webhook").path == "/x?a=1"
    for url, words in [("http://hooks.example.test/x", "must use https"), ("ftp://hooks.example.test/", r"not an http\(s\) URL"),
                       ("https://user:pw@hooks.example.test/", "user name or password"), ("https://hooks.example.test/a b", "without spaces"),
                       ("https://hooks.example.test:99999/", "not a URL")]:
        with pytest.raises(RequestError, match=words):
            webhook_targets.check_url(url, False, "webhook")


def test_a_name_public_at_submit_and_loopback_at_delivery_is_never_connected(monkeypatch, tmp_path, receiver):
    answers = iter([["93.184.216.34"]])
    monkeypatch.setattr(webhook_targets, "resolve", lambda host, port: next(answers, ["127.0.0.1"]))
    # The receiver listens on 127.0.0.1 at the URL's port: were the address not checked again, it would hear it.
    rt = Runtime(webhooks=webhooks.Settings(secret=SECRET, give_up_s=0))
    try:
        record, _ = rt.submit(TINY_MODEL, TINY, tmp_path / "out", webhook=f"https://rebind.example.test:{receiver.port}/hooks")
        assert record.webhooks["endpoints"][0]["url"].startswith("https://rebind.example.test")
        rt.start_workers(1)
        receiver.wait(deliveries_done(rt.store, record.id, 2), what="both deliveries to give up")
        assert receiver.received == []
        for d in rt.store.deliveries(record.id):
            assert d["state"] == "failed" and "127.0.0.1" in d["last_error"] and d["last_code"] is None
    finally:
        rt.stop()


def test_a_submit_naming_a_private_webhook_is_refused_in_each_wire_shape(monkeypatch, tmp_path):
    rt = Runtime(webhooks=webhooks.Settings(secret=SECRET, named={"ops": "https://93.184.216.34/x"}))
    with pytest.raises(RequestError) as err:
        rt.submit(TINY_MODEL, TINY, tmp_path, webhook="https://169.254.169.254/latest/meta-data")
    assert err.value.field == "webhook"
    with pytest.raises(RequestError) as err:
        rt.submit(TINY_MODEL, TINY, tmp_path, tags=[{"key": "reelforge:webhook", "value": "nope"}])
    assert err.value.field == "tags" and "registered: ops" in err.value.message
    assert rt.store.list() == []  # nothing was recorded
    with ServerThread(ServerSettings(webhooks=webhooks.Settings(secret=SECRET))) as server:
        client = bedrock(server.url)
        with pytest.raises(client.exceptions.ValidationException, match="names no webhook endpoint"):
            start_tiny(client, tags=[{"key": "reelforge:webhook", "value": "billing"}])


def test_settings_refuse_what_cannot_be_used(monkeypatch):
    from reelforge.errors import ConfigError

    with pytest.raises(ConfigError, match="signing secret"):
        webhooks.Settings.from_env({"REELFORGE_WEBHOOKS": "https://93.184.216.34/x"})
    with pytest.raises(ConfigError, match="whsec_"):
        webhooks.Settings.from_env({"REELFORGE_WEBHOOK_SECRET": "hunter2"})
    with pytest.raises(ConfigError, match="REELFORGE_WEBHOOK_EVENTS"):
        webhooks.Settings.from_env({"REELFORGE_WEBHOOK_EVENTS": "job.done"})
    with pytest.raises(ConfigError, match="not a public address"):
        webhooks.Settings.from_env({"REELFORGE_WEBHOOKS": "https://10.0.0.1/x", "REELFORGE_WEBHOOK_SECRET": SECRET})
    s = webhooks.Settings.from_env({"REELFORGE_WEBHOOK_SECRET": SECRET, "REELFORGE_ALLOW_PRIVATE_WEBHOOKS": "1", "REELFORGE_WEBHOOK_ENDPOINTS": "a=http://10.0.0.1/x"})
    assert s.named == {"a": "http://10.0.0.1/x"} and SECRET not in repr(s)


# --- delivery --------------------------------------------------------------------------------------


def test_bedrock_wire_each_event_once_per_endpoint_signed(tmp_path, receiver):
    other = Receiver().start()
    named = Receiver().start()
    s = settings(urls=(receiver.url, other.url), named={"billing": named.url}, kinds=webhooks.KINDS)
    try:
        with ServerThread(ServerSettings(webhooks=s, bucket_dir=tmp_path / "buckets")) as server:
            client = bedrock(server.url)
            plain = start_tiny(client)
            tagged = start_tiny(client, tags=[{"key": "reelforge:webhook", "value": "billing"}])
            for arn in (plain, tagged):
                assert wait_done(client, arn)["status"] == "Completed"
            ids = {arn.rsplit("/", 1)[1] for arn in (plain, tagged)}
            store = server.runtime.store
            for job_id in ids:
                receiver.wait(deliveries_done(store, job_id, len(store.deliveries(job_id))), what="every delivery")
            for r in (receiver, other):
                events = r.events()
                assert len({i for _, i in events}) == len(events)  # once each
                for job_id in ids:
                    kinds = [json.loads(x["body"])["type"] for x in r.delivered() if json.loads(x["body"])["data"]["invocationArn"].endswith(job_id)]
                    assert kinds[0] == "job.started" and kinds[-1] == "job.completed" and kinds.count("job.completed") == 1
                    assert set(kinds) <= {"job.started", "job.progress", "job.completed"}
            named_jobs = {json.loads(x["body"])["data"]["invocationArn"].rsplit("/", 1)[1] for x in named.delivered()}
            assert named_jobs == {tagged.rsplit("/", 1)[1]}  # only the job that names it
            for r in (receiver, other, named):
                for x in r.delivered():
                    doc = Webhook(SECRET).verify(x["body"], x["headers"])
                    with pytest.raises(WebhookVerificationError):
                        Webhook(webhooks.new_secret()).verify(x["body"], x["headers"])
                    if doc["type"] == "job.completed":
                        assert doc["data"]["status"] == "Completed"
                        status, _, video = http(doc["links"]["video"])
                        assert status == 200 and video[4:8] == b"ftyp"
            # what was recorded, through the API and the gallery, without the secret
            job = json.loads(http(f"{server.url}/reelforge/jobs/{tagged.rsplit('/', 1)[1]}")[2])
            assert {d["endpoint"] for d in job["webhooks"]} == {"server-1", "server-2", "billing"}
            assert all(d["state"] == "delivered" and d["attempts"] == 1 and d["last_code"] == 204 for d in job["webhooks"])
            page = http(f"{server.url}/gallery/jobs/{tagged.rsplit('/', 1)[1]}")[2].decode()
            assert "delivered" in page and SECRET not in page and SECRET[6:] not in json.dumps(job)
    finally:
        other.stop()
        named.stop()


def test_openai_wire_events_verify_with_openais_client(tmp_path, receiver):
    with ServerThread(ServerSettings(webhooks=settings(urls=(receiver.url,), kinds=webhooks.KINDS))) as server:
        client = openai_client(server.url)
        video = client.videos.create_and_poll(model="sora-2", prompt="a paper boat on a pond", seconds="4", size="720x1280", poll_interval_ms=50)
        assert video.status == "completed"
        receiver.wait(lambda r: r.delivered(), what="video.completed")
        time.sleep(0.2)
        (only,) = receiver.delivered()  # OpenAI's wire has no started or progress events
        client.webhooks.verify_signature(only["body"], only["headers"], secret=SECRET)
        import openai

        with pytest.raises(openai.InvalidWebhookSignatureError):
            client.webhooks.verify_signature(only["body"], only["headers"], secret=webhooks.new_secret())
        doc = json.loads(only["body"])
        assert doc["type"] == "video.completed" and doc["object"] == "event" and doc["data"]["id"] == video.id
        assert doc["data"]["status"] == "completed"
        status, _, data = http(doc["links"]["video"], headers={"Authorization": "Bearer sk-test"})
        assert status == 200 and data[4:8] == b"ftyp"


def test_receiver_down_then_up_every_notification_arrives_with_its_first_id(tmp_path, monkeypatch, receiver):
    port = receiver.port
    receiver.stop()  # down: connections refused
    s = settings(urls=(f"http://127.0.0.1:{port}/hooks",), backoff_s=0.05, backoff_max_s=0.2, timeout_s=1)
    rt = Runtime(webhooks=s)
    try:
        rt.start_workers(1)
        jobs = [rt.submit(TINY_MODEL, TINY, tmp_path / "out")[0] for _ in range(3)]
        store = rt.store

        def attempted(_):
            ds = [d for j in jobs for d in store.deliveries(j.id)]
            return len(ds) == 6 and all(d["attempts"] >= 2 for d in ds)

        receiver.wait(attempted, what="two failed attempts of each")
        first = {d["id"]: d["history"][0] for j in jobs for d in store.deliveries(j.id)}
        assert all(h["code"] is None and "refused" in h["error"].lower() for h in first.values())
        up = Receiver(port)
        up.mode = 503  # then up, but failing
        up.start()
        try:
            up.wait(lambda r: len({x["headers"]["webhook-id"] for x in r.received}) == 6, what="an attempt of each while failing")
            up.mode = "ok"
            up.wait(lambda r: len(r.delivered()) >= 6, what="every notification")
            time.sleep(0.3)
            ids = [x["headers"]["webhook-id"] for x in up.delivered()]
            assert sorted(ids) == sorted(first)  # each once, with the id of its first attempt
            failed_ids = {x["headers"]["webhook-id"] for x in up.received if x["mode"] == 503}
            assert failed_ids == set(first)
            for x in up.delivered():
                Webhook(SECRET).verify(x["body"], x["headers"])
            bodies = {}
            for x in up.received:  # the same bytes on every attempt
                assert bodies.setdefault(x["headers"]["webhook-id"], x["body"]) == x["body"]
            for d in (d for j in jobs for d in store.deliveries(j.id)):
                assert d["state"] == "delivered" and d["attempts"] >= 3 and d["history"][-1]["code"] == 204
                assert 503 in [h["code"] for h in d["history"]]
        finally:
            up.stop()
    finally:
        rt.stop()


def test_gives_up_after_the_window_and_retry_sends_again(tmp_path, receiver):
    receiver.mode = 500
    rt = Runtime(webhooks=settings(urls=(receiver.url,), backoff_s=0.05, backoff_max_s=0.1, give_up_s=0.3))
    try:
        rt.start_workers(1)
        record, _ = rt.submit(TINY_MODEL, TINY, tmp_path / "out")
        receiver.wait(deliveries_done(rt.store, record.id, 2), what="giving up")
        assert {d["state"] for d in rt.store.deliveries(record.id)} == {"failed"}
        receiver.mode = "ok"
        assert len(rt.store.retry_deliveries(record.id)) == 2
        rt.notify()
        receiver.wait(lambda r: len(r.delivered()) == 2, what="the retried deliveries")
        assert {x["headers"]["webhook-id"] for x in receiver.delivered()} == {d["id"] for d in rt.store.deliveries(record.id)}
    finally:
        rt.stop()


def test_kill_9_between_the_status_change_and_the_delivery(tmp_path, monkeypatch, receiver):
    home = tmp_path / "home"
    home.mkdir()
    receiver.mode = "hang"  # the first attempt is in flight when the server dies
    monkeypatch.setenv("REELFORGE_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("REELFORGE_WEBHOOK_TIMEOUT_S", "0.5")
    args = ("--workers", "1", "--bucket-dir", str(tmp_path / "b"), "--webhook", receiver.url, "--webhook-events", "job.completed", "--allow-private-webhooks")
    first = ServerProcess(home, *args).start()
    try:
        client = bedrock(first.url)
        arn = start_tiny(client)
        receiver.wait(lambda r: r.received, what="the first attempt")
        first.kill9()
    finally:
        first.stop()
    job_id = arn.rsplit("/", 1)[1]
    first_id = receiver.received[0]["headers"]["webhook-id"]
    receiver.mode = "ok"
    second = ServerProcess(home, *args).start()
    try:
        receiver.wait(lambda r: r.delivered(), what="delivery after the restart")
        (done,) = receiver.delivered()
        assert done["headers"]["webhook-id"] == first_id
        doc = Webhook(SECRET).verify(done["body"], done["headers"])
        assert doc["type"] == "job.completed" and doc["data"]["invocationArn"] == arn
        # the receiver answers before the dispatcher records the outcome: wait for the record
        def shown(_):
            return [(d["state"], d["attempts"]) for d in json.loads(http(f"{second.url}/reelforge/jobs/{job_id}")[2])["webhooks"]]
        receiver.wait(lambda r: shown(r)[0][0] != "pending", what="the delivery to be recorded")
        assert shown(receiver) == [("delivered", 2)]
        assert SECRET not in second.log.read_text() + first.log.read_text()
    finally:
        second.stop()


def test_two_dispatchers_on_postgresql_never_send_one_delivery_at_once(pg_url, tmp_path, receiver):
    from reelforge.jobs.postgres import PostgresJobStore

    receiver.delay = 0.02
    s = settings(urls=(receiver.url,), kinds=("completed", "canceled"))
    rt = Runtime(PostgresJobStore(pg_url), webhooks=s)
    stop = threading.Event()
    dispatchers = [webhook_dispatch.Dispatcher(PostgresJobStore(pg_url), s, stop) for _ in range(2)]
    try:
        ids = [rt.submit(TINY_MODEL, TINY, tmp_path / "out")[0].id for _ in range(20)]
        for job_id in ids:  # end them in the job log; the trigger writes one delivery each
            rt.store.request_cancel(job_id)
        for d in dispatchers:
            d.start()
        receiver.wait(lambda r: len(r.delivered()) >= 20, what="every delivery")
        time.sleep(0.3)
        sent = [x["headers"]["webhook-id"] for x in receiver.received]
        assert len(sent) == len(set(sent)) == 20 and receiver.overlaps == []
        by = {d["id"]: d for j in ids for d in rt.store.deliveries(j)}
        assert all(d["state"] == "delivered" and d["attempts"] == 1 for d in by.values())
        assert rt.store.get(ids[0]).status is JobStatus.CANCELED
    finally:
        stop.set()
        for d in dispatchers:
            d.wake()
        rt.stop()


def test_gallery_form_takes_a_webhook_and_names_the_field_when_refused(tmp_path, receiver):
    with ServerThread(ServerSettings(webhooks=webhooks.Settings(secret=SECRET), bucket_dir=tmp_path / "b")) as server:
        form = {"task": "TEXT_VIDEO", "model": TINY_MODEL, "prompt": "a kite over a beach", "size": "128x72", "fps": "8", "duration": "1", "webhook": receiver.url}
        import urllib.parse

        status, _, page = http(f"{server.url}/gallery/new", "POST", urllib.parse.urlencode(form).encode(),
                               {"Content-Type": "application/x-www-form-urlencoded", "Origin": server.url})
        assert status == 400 and "Webhook:" in page.decode() and "must use https" in page.decode()  # no --allow-private-webhooks here
        assert server.runtime.store.list() == []
    with ServerThread(ServerSettings(webhooks=settings(), bucket_dir=tmp_path / "b")) as server:
        status, headers, _ = http(f"{server.url}/gallery/new", "POST", urllib.parse.urlencode(form).encode(),
                                  {"Content-Type": "application/x-www-form-urlencoded", "Origin": server.url})
        assert status == 200  # the redirect to the job's page, followed
        (record,) = server.runtime.store.list()
        receiver.wait(deliveries_done(server.runtime.store, record.id, 2), what="started and completed")
        assert [json.loads(x["body"])["type"] for x in receiver.delivered()] == ["job.started", "job.completed"]
        page = http(f"{server.url}/gallery/jobs/{record.id}")[2].decode()
        assert "Webhooks" in page and "delivered" in page and "HTTP 204" in page and SECRET not in page


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_the_outbox_is_written_with_each_status_change(kind, request, tmp_path):
    from reelforge.jobs.record import JobRecord
    from reelforge.jobs.postgres import PostgresJobStore
    from reelforge.jobs.sqlite import SQLiteJobStore

    store = PostgresJobStore(request.getfixturevalue("pg_url")) if kind == "postgres" else SQLiteJobStore(tmp_path / "jobs.sqlite3")
    hooks = {"endpoints": [{"name": "all", "url": "https://a.example/", "kinds": list(webhooks.KINDS), "key": "k"},
                           {"name": "ends", "url": "https://b.example/", "kinds": ["completed", "failed"], "key": "k"}]}
    store.create(JobRecord(id="hookjob00001", arn="arn:aws:bedrock:us-east-1:000000000000:async-invoke/hookjob00001", model_id="m", model_input={}, output_uri="u", storage_uri="u", webhooks=hooks))
    store.create(JobRecord(id="quietjob0001", arn="arn", model_id="m", model_input={}, output_uri="u", storage_uri="u"))
    job = store.claim("w1", 30)
    for p in (0.05, 0.12, 0.15, 0.31):
        store.heartbeat(job.id, "w1", 30, p, "rendering", fence=job.fence)
    store.release("w1")  # back in the queue, claimed again: not started a second time
    job = store.claim("w2", 30)
    store.finish(job.id, "w2", JobStatus.COMPLETED, fence=job.fence)
    got = [(d["endpoint"], d["kind"]) for d in store.deliveries("hookjob00001")]
    assert sorted(got) == sorted([("all", "started"), ("all", "progress"), ("all", "progress"), ("all", "completed"), ("ends", "completed")])
    quiet = store.claim("w3", 30)
    store.finish(quiet.id, "w3", JobStatus.FAILED, failure_message="x", fence=quiet.fence)
    assert store.deliveries("quietjob0001") == []  # a job without endpoints writes nothing
    assert len({d["id"] for d in store.deliveries("hookjob00001")}) == 5
    # each body shows the job as it was at its event, whenever it is made
    record = store.get("hookjob00001")
    bodies = {d["kind"]: json.loads(webhook_dispatch.body_for(d, record)) for d in store.deliveries("hookjob00001") if d["endpoint"] == "all"}
    assert bodies["started"]["data"]["status"] == "InProgress" and "endTime" not in bodies["started"]["data"] and "links" not in bodies["started"]
    assert bodies["completed"]["data"]["status"] == "Completed" and bodies["completed"]["links"]["video"] == "u/output.mp4"


def test_cli_generate_with_a_webhook_then_jobs_show_and_retry(tmp_path, monkeypatch, receiver):
    from click.testing import CliRunner

    from reelforge.cli.main import cli

    monkeypatch.setenv("REELFORGE_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("REELFORGE_ALLOW_PRIVATE_WEBHOOKS", "1")
    receiver.mode = 500
    monkeypatch.setenv("REELFORGE_WEBHOOK_GIVE_UP_S", "0")
    runner = CliRunner()
    out = runner.invoke(cli, ["generate", "a lighthouse at dusk", "--model", TINY_MODEL, "--resolution", "128x72", "--fps", "8", "--duration", "1",
                              "-o", str(tmp_path / "out"), "--webhook", receiver.url, "--webhook-events", "job.completed", "--json"])
    assert out.exit_code == 0, out.output
    job_id = json.loads(out.stdout)["id"]
    receiver.wait(lambda r: r.received, what="the attempt")
    deadline = time.monotonic() + 20
    while True:
        shown = json.loads(runner.invoke(cli, ["jobs", "show", job_id]).stdout)
        if shown["webhooks"] and shown["webhooks"][0]["state"] == "failed" or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    (d,) = shown["webhooks"]
    assert d["state"] == "failed" and d["last_code"] == 500 and d["kind"] == "completed"
    receiver.mode = "ok"
    again = runner.invoke(cli, ["webhooks", "retry", job_id])
    assert again.exit_code == 0 and again.stdout.split() == [d["id"]]
    receiver.wait(lambda r: r.delivered(), what="the retry")  # this process's dispatcher sends it
    assert receiver.delivered()[0]["headers"]["webhook-id"] == d["id"]
    bad = runner.invoke(cli, ["generate", "x y z", "--model", TINY_MODEL, "--webhook", "ftp://10.0.0.1/x", "--no-wait"])
    assert bad.exit_code != 0 and "webhook" in bad.output and "not an http(s) URL" in bad.output


def test_a_gemini_job_notifies_with_its_operation_and_a_file_link(tmp_path, receiver):
    with ServerThread(ServerSettings(webhooks=settings(urls=(receiver.url,), kinds=("completed",)))) as server:
        status, _, body = http(f"{server.url}/v1beta/models/veo-3.1-generate-preview:predictLongRunning", "POST",
                               json.dumps({"instances": [{"prompt": "a heron in reeds"}], "parameters": {"durationSeconds": 4}}).encode(),
                               {"Content-Type": "application/json"})
        assert status == 200, body
        receiver.wait(lambda r: r.delivered(), timeout=60, what="job.completed")
        doc = Webhook(SECRET).verify(receiver.delivered()[0]["body"], receiver.delivered()[0]["headers"])
        assert doc["type"] == "job.completed" and doc["data"]["done"] is True
        assert doc["data"]["name"].startswith("models/veo-3.1-generate-preview/operations/")
        assert "bytesBase64Encoded" not in receiver.delivered()[0]["body"].decode()  # a link, never the MP4 inline
        status, _, video = http(doc["links"]["video"])
        assert status == 200 and video[4:8] == b"ftyp"
        status, _, op = http(f"{server.url}/v1beta/{doc['data']['name']}")
        assert status == 200 and json.loads(op)["done"] is True  # the name it sends is one the API answers


def test_a_script_that_exits_is_notified_by_the_background_worker(background_worker, monkeypatch, receiver):
    import os
    import subprocess
    import sys

    monkeypatch.setenv("REELFORGE_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("REELFORGE_ALLOW_PRIVATE_WEBHOOKS", "1")  # the same settings as the server's, from the environment
    monkeypatch.setenv("REELFORGE_WORKER_IDLE_S", "1")
    script = ("import sys\nfrom reelforge import Client, VideoRequest\n"
              "job = Client().start(VideoRequest(text='a paper boat', duration_s=1, fps=8, width=96, height=64), model='reelforge.animatic-v1', webhook=sys.argv[1])\n"
              "print(job.id)\n")
    out = subprocess.run([sys.executable, "-c", script, receiver.url], capture_output=True, text=True, env=os.environ.copy(), timeout=60)
    assert out.returncode == 0, out.stderr
    receiver.wait(lambda r: [t for t, _ in r.events()] == ["job.started", "job.completed"], timeout=60, what="started and completed")
    doc = Webhook(SECRET).verify(receiver.delivered()[1]["body"], receiver.delivered()[1]["headers"])
    assert doc["data"]["invocationArn"].endswith(out.stdout.strip()) and doc["links"]["video"].startswith("file://")


def test_a_remote_client_names_a_registered_endpoint(tmp_path, receiver):
    from reelforge import Client, VideoRequest

    with ServerThread(ServerSettings(webhooks=settings(named={"mine": receiver.url}, kinds=("completed",)), bucket_dir=tmp_path / "b")) as server:
        client = Client(server.url)
        request = VideoRequest(text="a kite", duration_s=1, fps=8, width=128, height=72)
        with pytest.raises(RequestError) as err:
            client.start(request, model=TINY_MODEL, output="s3://hook-bucket/out", webhook="https://hooks.example.test/x")
        assert err.value.field == "webhook" and "--webhook-endpoint NAME=URL" in err.value.message
        job = client.start(request, model=TINY_MODEL, output="s3://hook-bucket/out", webhook="mine").wait(60)
        receiver.wait(lambda r: r.delivered(), what="job.completed")
        deadline = time.monotonic() + 10
        while job.webhooks[0]["state"] != "delivered" and time.monotonic() < deadline:
            time.sleep(0.05)
        (d,) = job.webhooks
        assert d["endpoint"] == "mine" and d["state"] == "delivered" and d["id"] == receiver.delivered()[0]["headers"]["webhook-id"]


def test_https_goes_to_the_checked_address_with_the_name_in_sni_host_and_certificate(tmp_path, monkeypatch):
    from webhook_receiver import TlsReceiver, self_signed

    cert, key = self_signed(tmp_path, "hooks.example.test")
    monkeypatch.setenv("SSL_CERT_FILE", cert)  # the dispatcher's default context trusts this certificate only
    monkeypatch.setattr(webhook_targets, "resolve", lambda host, port: ["127.0.0.1"])
    tls = TlsReceiver(cert, key).start()
    rt = Runtime(webhooks=settings(give_up_s=0))
    try:
        good, _ = rt.submit(TINY_MODEL, TINY, tmp_path / "out", webhook=f"https://hooks.example.test:{tls.port}/in", webhook_events="job.completed")
        # another name, resolved to the same receiver's address here: its certificate does not match
        wrong, _ = rt.submit(TINY_MODEL, TINY, tmp_path / "out", webhook=f"https://other.example.test:{tls.port}/in", webhook_events="job.completed")
        rt.start_workers(1)
        tls.wait(deliveries_done(rt.store, good.id, 1), what="the https delivery")
        (x,) = tls.delivered()
        assert x["headers"]["host"] == f"hooks.example.test:{tls.port}" and x["path"] == "/in"
        assert "hooks.example.test" in tls.server_names
        Webhook(SECRET).verify(x["body"], x["headers"])
        tls.wait(deliveries_done(rt.store, wrong.id, 1), what="the refused certificate")
        (d,) = rt.store.deliveries(wrong.id)
        assert d["state"] == "failed" and "certificate" in d["last_error"].lower()
    finally:
        rt.stop()
        tls.stop()


def test_a_redirect_is_not_followed(tmp_path, receiver):
    elsewhere = Receiver().start()
    receiver.mode, receiver.location = 307, elsewhere.url
    rt = Runtime(webhooks=settings(urls=(receiver.url,), kinds=("completed",), give_up_s=0))
    try:
        rt.start_workers(1)
        record, _ = rt.submit(TINY_MODEL, TINY, tmp_path / "out")
        receiver.wait(deliveries_done(rt.store, record.id, 1), what="the attempt")
        (d,) = rt.store.deliveries(record.id)
        assert d["state"] == "failed" and d["last_code"] == 307 and "redirects are not followed" in d["last_error"]
        assert len(receiver.received) == 1 and elsewhere.received == []
    finally:
        rt.stop()
        elsewhere.stop()


def test_a_dispatcher_whose_lease_ran_out_cannot_record_over_the_next_attempt(tmp_path):
    from reelforge.jobs.record import JobRecord
    from reelforge.jobs.sqlite import SQLiteJobStore

    store = SQLiteJobStore(tmp_path / "jobs.sqlite3")
    hooks = {"endpoints": [{"name": "e", "url": "https://a.example/", "kinds": ["canceled"], "key": "k"}]}
    store.create(JobRecord(id="leasejob0001", arn="a", model_id="m", model_input={}, output_uri="u", storage_uri="u", webhooks=hooks))
    store.request_cancel("leasejob0001")
    first = store.claim_delivery("a", 0.05, ["k"])
    assert store.claim_delivery("b", 30, ["k"]) is None  # held
    time.sleep(0.1)
    second = store.claim_delivery("b", 30, ["k"])  # the lease ran out: taken over, a second attempt
    assert second["id"] == first["id"] and second["attempts"] == 2
    assert not store.end_delivery_attempt(first["id"], "a", state="delivered", next_attempt=0, code=204, error=None, history=[])
    assert store.end_delivery_attempt(second["id"], "b", state="delivered", next_attempt=0, code=204, error=None, history=[])
    assert store.delivery(first["id"])["state"] == "delivered" and store.claim_delivery("c", 30, ["k"]) is None


def test_serve_refuses_webhook_flags_it_cannot_use(monkeypatch):
    from click.testing import CliRunner

    from reelforge.cli.main import cli

    def serve(*args):
        return CliRunner().invoke(cli, ["serve", "--port", "0", *args])

    out = serve("--webhook", "https://10.0.0.1/x", "--webhook-secret", SECRET)
    assert out.exit_code != 0 and "--webhook" in out.output and "not a public address" in out.output and SECRET not in out.output
    out = serve("--webhook-endpoint", "billing", "--webhook-secret", SECRET)
    assert out.exit_code != 0 and "--webhook-endpoint" in out.output and "NAME=URL" in out.output
    out = serve("--webhook", "https://93.184.216.34/x")
    assert out.exit_code != 0 and "signing secret" in out.output
    out = serve("--webhook-events", "job.finished", "--webhook-secret", SECRET)
    assert out.exit_code != 0 and "--webhook-events" in out.output and "job.progress" in out.output
    out = serve("--webhook-secret", "whsec_short")
    assert out.exit_code != 0 and "secret" in out.output
