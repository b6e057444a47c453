"""One declaration per request (core/messages.py): the device handles exactly the declared
requests with the declared handler, role and fields; the host sends each through the declared
client method and refuses a reply of another type."""

from __future__ import annotations

import ast
import inspect
import re

import pytest

from qdev.core.link import pack_payload
from qdev.core.messages import REQUESTS, allowed
from qdev.core.protocol import MsgType, encode
from qdev.device.runtime import server
from qdev.host import client as host_client
from qdev.host.client import DeviceClient, DeviceError
from tests.device.helpers import client_and_fake_device

pytestmark = pytest.mark.device_env


def test_every_declared_request_has_its_handler_and_client_method():
    for t, r in REQUESTS.items():
        assert callable(getattr(server.Session, r.handler)), r
        assert callable(getattr(DeviceClient, r.client)), r
        assert server.HANDLERS[t] is getattr(server.Session, r.handler)
        assert server.REQUEST_FIELDS[t] is r.fields
        assert r.reply in MsgType and r.role in ("viewer", "operator")
    assert set(server.HANDLERS) == set(REQUESTS)


def test_nothing_is_handled_or_sent_that_is_not_declared():
    # the device's Session methods that answer requests are exactly the declared handlers
    handlers = {
        n for n, _ in inspect.getmembers(server.Session, inspect.isfunction) if n.startswith("_on_")
    }
    assert handlers == {r.handler for r in REQUESTS.values()}
    # every MsgType the host's client sends is declared, and sent from its declared method
    src = inspect.getsource(host_client)
    tree = ast.parse(src)
    for fn in [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]:
        body = ast.get_source_segment(src, fn) or ""
        for name in re.findall(r"(?:request|send)\(MsgType\.([A-Z_]+)", body):
            t = MsgType[name]
            assert t in REQUESTS, name
            assert fn.name == REQUESTS[t].client, (name, fn.name)


def test_roles_follow_the_declaration():
    assert not allowed(MsgType.ROLLBACK, "viewer") and allowed(MsgType.ROLLBACK, "operator")
    assert allowed(MsgType.WATCH, "viewer")
    assert {t for t, r in REQUESTS.items() if r.role == "operator"} == {
        MsgType.FLASH_BEGIN,
        MsgType.FLASH_CHUNK,
        MsgType.FLASH_END,
        MsgType.ACTIVATE,
        MsgType.ROLLBACK,
    }
    assert not REQUESTS[MsgType.ROLLBACK].resend  # may have run: never sent twice


def test_a_reply_of_another_type_is_refused():
    with client_and_fake_device() as (c, dev):
        dev.sendall(
            encode(MsgType.POWER, 7, pack_payload({"re": 0, "rails": {}}))
        )  # STATS asked, POWER came
        with pytest.raises(DeviceError, match="answered POWER, not STATS"):
            c.stats()
