"""Options and answers the stock OutpostSpawner's sites rely on: logs in poll and stop
answers, send_events, extra_log_handlers and a base path behind an ingress prefix."""

import logging

from jupyterhub_outpost.outpost.hooks import default_sanitize_start_response

from .support import Api, Receiver, start_body, wait_for


def logging_sanitizer(spawner, response):
    """Logs a secret and a very long line while the server starts, like a chatty spawner."""
    spawner.log.info("the server's token is %s", spawner.api_token)
    spawner.log.info("long %s", "x" * 5000)
    return default_sanitize_start_response(spawner, response)


async def test_poll_and_stop_answer_logs_when_asked_bounded_and_secrets_masked(make_outpost):
    outpost = await make_outpost(sanitize_start_response=logging_sanitizer, server_log_lines=3)
    api = outpost.api
    body = start_body("lg", env={"JUPYTERHUB_API_TOKEN": "tok-0123456789abcdef"})
    assert (await api.call("POST", "/services", body=body))[0] == 200

    assert await api.call("GET", "/services/lg") == (200, {"status": None})  # not asked: none
    code, data = await api.call("GET", "/services/lg?collect_logs=true")
    assert code == 200 and data["status"] is None
    logs = data["logs"]
    assert len(logs) == 3 and all(isinstance(line, str) for line in logs)
    assert all(len(line) <= 1000 for line in logs)
    assert any("the server's token is [secret]" in line for line in logs), logs
    assert not any("tok-0123456789abcdef" in line for line in logs)
    assert any(line.startswith("INFO long xxx") and line.endswith("...") for line in logs)
    assert "runs at" in logs[-1]  # the last lines; no access log lines

    code, data = await api.call("DELETE", "/services/lg?collect_logs=true")
    assert code == 200 and any("Stopped server lg" in line for line in data["logs"]), data
    assert outpost.app.server_logs.lines("hub1", "lg") == []  # forgotten with the server


async def test_logs_of_one_hub_are_not_shown_to_another(make_outpost):
    outpost = await make_outpost(sanitize_start_response=logging_sanitizer)
    api = outpost.api
    assert (await api.call("POST", "/services", body=start_body("same")))[0] == 200
    assert (await api.call("POST", "/services", hub="hub2", body=start_body("same")))[0] == 200
    code, data = await api.call("GET", "/services/same?collect_logs=true", hub="hub2")
    assert code == 200
    assert not any("hub1" in line for line in data["logs"])
    code, data = await api.call("DELETE", "/services/other?collect_logs=true", hub="hub2")
    assert code == 404


async def test_send_events_false_relays_no_progress_events(make_outpost):
    hubs = {hub: Receiver() for hub in ("hub1", "hub2")}
    try:
        hub_api = {**hubs["hub1"].hub_api("hub1"), **hubs["hub2"].hub_api("hub2")}
        outpost = await make_outpost(send_events=lambda hub: hub != "hub1", hub_api=hub_api)
        for hub in hubs:
            body = start_body("ev", misc={"cmd": ["x"]})  # dropped: reported by event
            assert (await outpost.api.call("POST", "/services", hub=hub, body=body))[0] == 200
        events = "/hub/api/outpost/events/alice/ev"
        await wait_for(lambda: hubs["hub2"].posts_to(events), "hub2 gets its events")
        assert hubs["hub1"].posts == []
    finally:
        for hub in hubs.values():
            hub.close()


async def test_extra_log_handlers_get_the_outposts_lines_with_secrets_masked(make_outpost):
    records = []

    class Collect(logging.Handler):
        def emit(self, record):
            records.append(self.format(record))

    handler = Collect()
    outpost = await make_outpost(
        extra_log_handlers=[handler], sanitize_start_response=logging_sanitizer
    )
    try:
        body = start_body("xh", env={"JUPYTERHUB_API_TOKEN": "tok-0123456789abcdef"})
        assert (await outpost.api.call("POST", "/services", body=body))[0] == 200
        assert handler.formatter is not None  # the Outpost's log_format
        assert any("the server's token is [secret]" in line for line in records)
        assert not any("tok-0123456789abcdef" in line for line in records)
    finally:
        outpost.app.log.removeHandler(handler)


async def test_base_path_serves_the_api_under_the_prefix_and_without_it(make_outpost, monkeypatch):
    monkeypatch.setenv("OUTPOST_BASE_PATH", "/outpost/")  # as the original reads it
    outpost = await make_outpost()
    assert outpost.app.base_path == "/outpost/"
    prefixed = Api(outpost.url + "/outpost", outpost.api.hubs)
    code, data = await prefixed.call("POST", "/services", body=start_body("bp"))
    assert code == 200, data
    assert await prefixed.call("GET", "/services/bp") == (200, {"status": None})
    assert await outpost.api.call("GET", "/services/bp") == (200, {"status": None})
    assert (await prefixed.call("GET", "/ping", hub=None))[0] == 200
    assert (await prefixed.call("GET", "/flavors"))[0] == 200
    assert (await prefixed.call("DELETE", "/services/bp"))[0] == 200
    code, data = await Api(outpost.url + "/other", outpost.api.hubs).call("GET", "/services")
    assert code == 404


async def test_poll_requires_state_answers_running_for_a_server_without_state(
    make_outpost, tmp_path
):
    import os
    import signal

    from jupyterhub.spawner import SimpleLocalProcessSpawner

    from tests.helpers.outpost_process import process_alive

    from .support import fetch_server, local_spawner_config, server_answers

    class NoStateSpawner(SimpleLocalProcessSpawner):
        def get_state(self):
            return {}

    for required, expected in ((True, None), (False, "ended")):
        config = local_spawner_config(tmp_path)
        config.JupyterHubOutpost.spawner_class = NoStateSpawner
        config.NoStateSpawner.cmd = config.SimpleLocalProcessSpawner.cmd
        outpost = await make_outpost(config, poll_requires_state=required)
        code, data = await outpost.api.call("POST", "/services", body=start_body("ns"))
        assert code == 200, data
        await wait_for(lambda a=data["service"]: server_answers(a), "server answers")
        pid = (await fetch_server(data["service"]))["pid"]
        os.kill(pid, signal.SIGTERM)
        await wait_for(lambda p=pid: not process_alive(p), "server gone")
        code, polled = await outpost.api.call("GET", "/services/ns")
        status = polled["status"]
        assert (status if status is None else "ended") == expected, (required, polled)
        await outpost.app.stop_outpost()
