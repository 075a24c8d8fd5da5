"""Prometheus metrics of the Outpost: servers by hub, flavor and state; request latency
by route; start failures by reason; all behind the metrics token, none carrying a secret.
(The tunnel daemon's metrics are proved in tests/tunnels/test_forwarding.py.)"""

from tests.outpost.support import HUBS, local_spawner_config, start_body

TOKEN = "metrics-token-of-the-test"


def samples(text: str) -> dict[str, float]:
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


async def scrape(outpost) -> dict[str, float]:
    code, text = await outpost.api.call(
        "GET", "/metrics", hub=None, headers={"Authorization": f"token {TOKEN}"}
    )
    assert code == 200
    return samples(text)


async def test_metrics_show_servers_by_hub_flavor_state_and_start_failures_by_reason(
    make_outpost, tmp_path
):
    config = local_spawner_config(tmp_path)
    outpost = await make_outpost(
        config,
        metrics_token=TOKEN,
        flavors={"one": {"max": 1}},
        allow_override=lambda hub, misc: set(misc) <= {"cmd"},
    )
    api = outpost.api
    assert (
        await api.call("POST", "/services", body=start_body("a", user_options={"flavor": "one"}))
    )[0] == 200
    assert (await api.call("POST", "/services", hub="hub2", body=start_body("b")))[0] == 200
    refused = [
        (start_body("c", user_options={"flavor": "one"}), 403),  # flavor_full
        (start_body("a", user_options={"flavor": "one"}), 409),  # conflict (name runs)
        ({"name": "../x"}, 400),  # invalid_request
        (start_body("e", misc={"cmd": ["/nonexistent/program"]}), 500),  # spawner_error
    ]
    for body, status in refused:
        code, data = await api.call("POST", "/services", body=body)
        assert code == status, (body, code, data)

    found = await scrape(outpost)
    assert found['outpost_servers{flavor="one",hub="hub1",state="running"}'] == 1
    assert found['outpost_servers{flavor="",hub="hub2",state="running"}'] == 1
    for reason in ("flavor_full", "conflict", "invalid_request"):
        assert found[f'outpost_start_failures_total{{hub="hub1",reason="{reason}"}}'] == 1, reason
    assert found['outpost_start_failures_total{hub="hub1",reason="spawner_error"}'] == 1
    assert (
        found['outpost_http_request_duration_seconds_count{method="POST",route="/services"}'] == 6
    )
    assert found['outpost_http_requests_total{code="403",method="POST",route="/services"}'] == 1

    # a stop changes the servers gauge at the next scrape
    assert (await api.call("DELETE", "/services/a"))[0] == 200
    found = await scrape(outpost)
    assert 'outpost_servers{flavor="one",hub="hub1",state="running"}' not in found


async def test_metrics_need_the_token_and_never_show_secrets(make_outpost, tmp_path):
    outpost = await make_outpost(local_spawner_config(tmp_path), metrics_token=TOKEN)
    await outpost.api.call("POST", "/services", body=start_body("s"))
    for headers in ({}, {"Authorization": "token wrong"}, {"Authorization": "Bearer wrong"}):
        code, data = await outpost.api.call("GET", "/metrics", hub=None, headers=headers)
        assert code == 401, headers
    code, data = await outpost.api.call("GET", "/metrics")  # hub credentials are not enough
    assert code == 401
    for scheme in ("token", "Bearer"):  # Prometheus sends Bearer
        code, text = await outpost.api.call(
            "GET", "/metrics", hub=None, headers={"Authorization": f"{scheme} {TOKEN}"}
        )
        assert code == 200, scheme
        for secret in (*HUBS.values(), "token-s", TOKEN):
            assert secret not in text


async def test_request_id_from_the_client_is_kept_in_answer_and_log_lines(
    make_outpost, tmp_path, caplog
):
    outpost = await make_outpost(local_spawner_config(tmp_path))
    outpost.app.log.addHandler(caplog.handler)  # the app's logger does not propagate
    try:
        code, _ = await outpost.api.call(
            "POST", "/services", body=start_body("traced"), headers={"X-Request-Id": "hub-req-42"}
        )
    finally:
        outpost.app.log.removeHandler(caplog.handler)
    assert code == 200
    lines = [r.getMessage() for r in caplog.records if "hub-req-42" in r.getMessage()]
    assert any("[req=hub-req-42 hub=hub1 server=traced]" in line for line in lines), lines
    assert any("Starting server traced" in line for line in lines)
