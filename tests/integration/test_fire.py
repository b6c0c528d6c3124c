"""The fire feed end to end against a real broker (docs/feeds.md, section 3)."""
import datetime
import json
import os

import bhcat
from conftest import TOKEN, WORLD

SAMPLE = os.path.join(WORLD, "samples", "fire", "webhook-batch.json")


def rfc3339_ms(text):
    return int(datetime.datetime.fromisoformat(text).timestamp() * 1000)


def ms(dt):
    return int(dt.timestamp() * 1000)


def test_sample_batch(kafka, hub_factory, decoder, blocks):
    with open(SAMPLE, "rb") as f:
        raw = f.read()
    items = json.loads(raw)
    hub = hub_factory(kafka).start()
    r = hub.post(raw)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["accepted"] == 8
    assert [x["index"] for x in body["rejected"]] == [3, 6]
    reasons = {x["index"]: x for x in body["rejected"]}
    assert reasons[3]["code"] == "invalid_field" and "level" in reasons[3]["reason"]
    assert "apocalyptic" in reasons[3]["reason"]
    assert reasons[6]["code"] == "missing_field" and "occurred_at" in reasons[6]["reason"]

    msgs = bhcat.consume_all(kafka, hub.fire_topic)
    assert len(msgs) == 8
    got = {}
    for m in msgs:
        name, rec = decoder.decode(m["value"])
        assert name == "blockhub.fire.FireEvent"
        assert m["headers"]["blockhub.event_id"].decode() == rec["event_id"]
        got[rec["event_id"]] = (m["key"].decode(), rec)
    valid = [it for i, it in enumerate(items) if i not in (3, 6)]
    assert sorted(got) == sorted(it["id"] for it in valid)

    for it in valid:
        key, rec = got[it["id"]]
        loc = it.get("location")
        expected_block = blocks.resolve(it.get("grid_code"), loc and loc["lng"], loc and loc["lat"])
        assert expected_block is not None
        assert key == expected_block, it["id"]
        assert rec["block_id"] == expected_block
        assert rec["category"] == it["category"]
        assert rec["unit"] == it["unit"]
        assert rec["building_id"] == it.get("building_id")
        assert rec["grid_code"] == it.get("grid_code")
        assert rec["level"] == it["level"]
        assert rec["description"] == it.get("description")
        if loc:
            assert rec["location"] == {"lng": loc["lng"], "lat": loc["lat"]}
        else:
            assert rec["location"] is None
        assert ms(rec["occurred_at"]) == rfc3339_ms(it["occurred_at"])
        assert rec["occurred_offset_min"] == 480
        assert rec["occurred_at"].tzinfo is not None

    dlq = bhcat.consume_all(kafka, hub.dlq_topic)
    assert len(dlq) == 2
    dead = {}
    for m in dlq:
        name, rec = decoder.decode(m["value"])
        assert name == "blockhub.DeadLetter"
        dead[rec["origin"]["position"]] = rec
    assert sorted(dead) == [3, 6]
    assert dead[3]["reason"] == "invalid_field" and "level" in dead[3]["detail"]
    assert dead[6]["reason"] == "missing_field" and "occurred_at" in dead[6]["detail"]
    for i in (3, 6):
        assert dead[i]["adapter"] == "fire" and dead[i]["adapter_type"] == "fire"
        assert dead[i]["origin"]["transport"] == "http"
        assert dead[i]["origin"]["source"] == "/v1/fire/events"
        assert dead[i]["origin"]["peer"].startswith("127.0.0.1:")
        assert json.loads(dead[i]["payload"]) == items[i]
        assert dead[i]["payload_truncated"] is False
    assert hub.stop() == 0


def test_single_object_and_unresolved(kafka, hub_factory, decoder):
    hub = hub_factory(kafka).start()
    ev = {"id": "XF-T-1", "category": "alarm", "unit": "u", "level": "low",
          "occurred_at": "2026-11-27T00:00:00Z", "grid_code": "440303-001"}
    r = hub.post(ev)
    assert r.status_code == 200 and r.json() == {"accepted": 1, "rejected": []}
    far = dict(ev, id="XF-T-2", grid_code="999999-999", location={"lng": 10.0, "lat": 10.0})
    r = hub.post([far])
    assert r.status_code == 200
    assert r.json()["accepted"] == 0
    assert r.json()["rejected"][0]["code"] == "unresolved_block"
    msgs = bhcat.consume_all(kafka, hub.fire_topic)
    assert [decoder.decode(m["value"])[1]["event_id"] for m in msgs] == ["XF-T-1"]
    assert msgs[0]["key"] == b"440303-001"
    dlq = bhcat.consume_all(kafka, hub.dlq_topic)
    assert [decoder.decode(m["value"])[1]["reason"] for m in dlq] == ["unresolved_block"]
    assert hub.stop() == 0


def test_whole_request_errors(kafka, hub_factory):
    hub = hub_factory(kafka, extra_sets=["adapters.fire.body_limit=2KiB"]).start()
    ok = json.dumps({"id": "x", "category": "alarm", "unit": "u", "level": "low",
                     "occurred_at": "2026-11-27T00:00:00Z", "grid_code": "440303-001"})
    # 400: malformed JSON, and JSON that is neither an object nor an array
    r = hub.post(b'{"id": "x", ')
    assert r.status_code == 400 and "malformed JSON" in r.json()["error"]
    r = hub.post(b'"just a string"')
    assert r.status_code == 400
    # 401: no token, wrong token, wrong scheme
    assert hub.post(ok, token=None).status_code == 401
    r = hub.post(ok, token="wrong")
    assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer"
    r = hub.post(ok, token=TOKEN + "x")
    assert r.status_code == 401
    r = hub.post(ok, token=TOKEN[:-1])
    assert r.status_code == 401
    # 413: a body over the limit, with a length and chunked
    big = json.dumps([json.loads(ok)] * 40).encode()
    assert len(big) > 2048
    assert hub.post(big).status_code == 413
    r = hub.post(iter([big[:1000], big[1000:]]))
    assert r.status_code == 413
    # 415: wrong or missing content type
    assert hub.post(ok, content_type="text/plain").status_code == 415
    assert hub.post(ok, content_type=None).status_code == 415
    # the other token works, and a charset parameter is fine
    r = hub.post(ok, token="other-token", content_type="application/json; charset=utf-8")
    assert r.status_code == 200 and r.json()["accepted"] == 1
    # nothing from the refused requests was published
    assert len(bhcat.consume_all(kafka, hub.fire_topic)) == 1
    assert bhcat.consume_all(kafka, hub.dlq_topic) == []
    assert hub.stop() == 0
