"""The HTTP pieces without pytest: section format, redaction, ports, matching, the network guard."""

from __future__ import annotations

import contextlib
import gzip
import json
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pytest_replay.blobs import BlobStore
from pytest_replay.cassette import dump_document, parse_document
from pytest_replay.config import merge_settings
from pytest_replay.errors import CassetteError, ConfigError
from pytest_replay.http.index import FifoIndex, key_function, valid_match_on
from pytest_replay.http.interaction import (
    HttpRequest,
    HttpResponse,
    body_bytes,
    dump_section,
    parse_section,
)
from pytest_replay.http.network import NetworkGuard, allowed_hosts, host_problem, parse_hosts
from pytest_replay.http.normalise import (
    DATE_PLACEHOLDER,
    VOLATILE,
    PortMap,
    decode_body,
    encode_body,
    is_loopback,
    uri_parts,
)
from pytest_replay.http.redact import REDACTED, Redactor, redact_json, redact_query, redact_uri

FIELDS = Redactor().fields


# --- the section format ---------------------------------------------------------------

header_values = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
headers = st.dictionaries(
    st.text("abcdefghijklmnopqrstuvwxyz-ABC", min_size=1, max_size=12),
    st.lists(header_values, min_size=1, max_size=3),
    max_size=4,
)
texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=200)


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    uri_tail=st.text(st.characters(blacklist_categories=("Cs",)), max_size=30),
    req_headers=headers,
    resp_headers=headers,
    req_body=texts,
    resp_body=st.one_of(texts, st.binary(max_size=64)),
    status=st.integers(100, 999),
    reason=texts,
)
def test_any_interaction_survives_the_cassette_byte_for_byte(
    tmp_path: Path, uri_tail, req_headers, resp_headers, req_body, resp_body, status, reason
):
    blobs = BlobStore(tmp_path / ".blobs")
    body = resp_body if isinstance(resp_body, bytes) else resp_body.encode("utf-8")
    req = HttpRequest("POST", "http://h.example/" + uri_tail, req_headers, req_body.encode())
    resp = HttpResponse(status, reason, resp_headers, body)
    section = dump_section([{"request": req.to_yaml(blobs), "response": resp.to_yaml(blobs)}])
    data = dump_document({"pytest_replay": 1, "test": "t", "http": section})
    assert b"http: |" in data  # stays a readable literal block, never a quoted string
    doc = parse_document(data, tmp_path / "c.yaml", "c.yaml")
    [back] = parse_section(doc["http"], "c.yaml")
    assert back["request"]["uri"] == req.uri
    assert body_bytes(back["request"], blobs) == req.body
    assert HttpResponse.from_yaml(back["response"], blobs) == resp
    assert dump_section([back]) == section  # and re-dumps to the same bytes


@settings(max_examples=300)
@given(
    st.one_of(
        st.text(max_size=300),
        st.lists(st.sampled_from(["> {}", "< {}", '> {"method": "GET"}', "< []", "x", ""])).map(
            "\n".join
        ),
        st.builds(
            lambda a, b: f"> {json.dumps(a)}\n< {json.dumps(b)}\n",
            st.dictionaries(st.sampled_from(["method", "uri", "headers", "body"]), st.none()),
            st.dictionaries(
                st.sampled_from(["status", "reason", "headers", "encoding", "body_blob"]),
                st.one_of(st.integers(), st.text(max_size=5), st.lists(st.integers())),
            ),
        ),
        st.integers(),
        st.lists(st.integers()),
    )
)
def test_bad_sections_are_one_clear_cassette_error(section):
    try:
        parse_section(section, "c.yaml")
    except CassetteError as err:
        assert err.cassette == "c.yaml" and err.fix
        assert "Traceback" not in err.render()


def test_a_section_names_the_bad_interaction():
    good = '> {"method": "GET", "uri": "http://a/"}\n< {"status": 200}\n'
    with pytest.raises(CassetteError, match=r"interaction #1 is malformed: line 4 should start"):
        parse_section(good + '> {"method": "GET", "uri": "http://a/"}\n> {}\n', "c.yaml")
    with pytest.raises(CassetteError, match=r"interaction #0 is malformed: line 2 is not JSON"):
        parse_section('> {"method": "GET", "uri": "http://a/"}\n< {nope\n', "c.yaml")
    with pytest.raises(CassetteError, match="must be a text block"):
        parse_section([{"request": {}}], "c.yaml")


def test_binary_and_large_bodies_go_to_the_blob_store(tmp_path: Path):
    blobs = BlobStore(tmp_path)
    out = HttpResponse(200, "OK", {}, b"\x89PNG\x00\xff").to_yaml(blobs)
    assert out["body_blob"].endswith(".bin") and "body" not in out
    assert body_bytes(out, blobs) == b"\x89PNG\x00\xff"
    assert HttpResponse(200, "OK", {}, b"plain text").to_yaml(blobs)["body"] == "plain text"


# --- content encodings ------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_encoded_bodies_are_stored_decoded_and_re_encoded_on_replay(encoding):
    text = b"hello " * 50
    wire = gzip.compress(text, mtime=123) if encoding == "gzip" else encode_body(text, "deflate")
    body, flag = decode_body({"Content-Encoding": [encoding]}, wire)
    assert body == text and flag == encoding
    assert decode_body({"content-encoding": [encoding]}, encode_body(body, flag)) == (text, flag)
    # a client that decoded already (urllib3, aiohttp): stored as is, still flagged
    assert decode_body({"Content-Encoding": [encoding]}, text) == (text, encoding)
    assert decode_body({}, wire) == (wire, None)


def test_gzip_is_re_encoded_deterministically():
    assert encode_body(b"x" * 100, "gzip") == encode_body(b"x" * 100, "gzip")


# --- ports and URIs ---------------------------------------------------------------------


def test_loopback_ports_become_tokens_in_first_seen_order_and_back():
    ports = PortMap()
    assert ports.normalise_uri("http://127.0.0.1:43121/a?x=1") == "http://127.0.0.1:{port1}/a?x=1"
    assert ports.normalise_uri("http://localhost:51000/") == "http://localhost:{port2}/"
    assert ports.normalise_uri("http://[::1]:43121/b") == "http://[::1]:{port1}/b"
    assert ports.normalise_uri("http://example.com:8080/") == "http://example.com:8080/"
    assert ports.normalise_uri("http://u:p@127.0.0.1:51000/") == "http://u:p@127.0.0.1:{port2}/"
    text = '{"next": "http://127.0.0.1:43121/p", "other": "10.0.0.1:43121", "n": 51000}'
    tokenised = ports.tokenise(text)
    assert (
        tokenised == '{"next": "http://127.0.0.1:{port1}/p", "other": "10.0.0.1:43121", "n": 51000}'
    )
    replay = PortMap()
    replay.normalise_uri("http://127.0.0.1:60001/")
    assert replay.restore(tokenised) == text.replace("43121/p", "60001/p")
    assert replay.restore("localhost:{port2}") == "localhost:{port2}"  # unknown token stays


def test_uri_parts_are_what_requests_match_on():
    assert uri_parts("HTTP://API.Example.com/v1?b=2&a=1&a=0") == (
        "http",
        "api.example.com",
        "80",
        "/v1",
        (("a", "0"), ("a", "1"), ("b", "2")),
    )
    assert uri_parts("https://h") == ("https", "h", "443", "/", ())
    assert uri_parts("http://127.0.0.1:{port1}/x?e=")[2:4] == ("{port1}", "/x")
    assert is_loopback("127.3.4.5") and is_loopback("app.localhost") and not is_loopback("10.0.0.1")


# --- redaction --------------------------------------------------------------------------


def test_query_redaction_keeps_everything_else_byte_for_byte():
    assert redact_query("a=1&API_KEY=s3cret&b=%20x&token=&sig=q", FIELDS) == (
        f"a=1&API_KEY={REDACTED}&b=%20x&token={REDACTED}&sig={REDACTED}"
    )
    assert redact_query("a=1&key", FIELDS) == "a=1&key"
    assert redact_uri("https://user:pw@h/p?apikey=1#frag", FIELDS) == (
        f"https://user:{REDACTED}@h/p?apikey={REDACTED}#frag"
    )


def test_json_redaction_at_any_depth_leaves_other_bodies_alone():
    body = json.dumps({"Token": "t", "list": [{"access_token": "a", "keep": 1}], "n": 2}).encode()
    assert json.loads(redact_json(body, FIELDS)) == {
        "Token": REDACTED,
        "list": [{"access_token": REDACTED, "keep": 1}],
        "n": 2,
    }
    unchanged = b'{"user":  "ada"}'
    assert redact_json(unchanged, FIELDS) is unchanged
    assert redact_json(b"token=abc", FIELDS) == b"token=abc"  # not JSON
    assert redact_json(b"[not json", FIELDS) == b"[not json"


def test_redactor_scrubs_names_values_and_lets_a_hook_finish():
    class Hook:
        calls: list[str] = []

        def pytest_replay_redact(self, kind, item):
            self.calls.append(kind)
            item["headers"].pop("X-Drop", None)

    red = Redactor(names=["X-Session"], values=["hunter 2"], hook=Hook())
    _, uri, headers, body = red.request(
        "GET",
        "http://h/p?q=hunter%202&x=1",
        {"X-Session": ["s"], "X-Drop": ["d"], "Authorization": ["Bearer b"], "Y": ["hunter 2!"]},
        b'{"note": "hunter 2"}',
    )
    assert uri == f"http://h/p?q={REDACTED}&x=1"
    assert headers == {
        "X-Session": [REDACTED],
        "Authorization": [f"Bearer {REDACTED}"],
        "Y": [f"{REDACTED}!"],
    }
    assert body == b'{"note": "' + REDACTED.encode() + b'"}'
    _, _, rheaders, _ = red.response(
        200, "OK", {"Set-Cookie": ["a=1; Path=/", "b=2"], "Cookie": ["x=1; y=2"]}, b""
    )
    assert rheaders == {
        "Set-Cookie": [f"a={REDACTED}; Path=/", f"b={REDACTED}"],
        "Cookie": [f"x={REDACTED}; y={REDACTED}"],
    }
    assert Hook.calls == ["http_request", "http_response"]


def test_listed_values_never_rewrite_the_plugins_own_placeholders_or_header_names():
    red = Redactor(values=["vola", "1970", "dact", "port"])
    _, uri, headers, body = red.request(
        "GET",
        "http://127.0.0.1:{port1}/report?token=t&v=vola",
        {"User-Agent": ["<volatile>"], "Date": [DATE_PLACEHOLDER], "X-Vola": ["a vola"]},
        b"<volatile> <redacted> {port2} 1970 vola",
    )
    assert uri == f"http://127.0.0.1:{{port1}}/re{REDACTED}?token={REDACTED}&v={REDACTED}"
    assert headers == {
        "User-Agent": ["<volatile>"],
        "Date": [DATE_PLACEHOLDER],
        "X-Vola": [f"a {REDACTED}"],
    }
    assert body == f"<volatile> <redacted> {{port2}} {REDACTED} {REDACTED}".encode()


def test_overlapping_values_go_whole_in_one_placeholder():
    red = Redactor(values=["abcd", "bcdefgh"])
    assert red.request("GET", "http://h/abcdefgh", {}, b"")[1] == f"http://h/{REDACTED}"
    # Equal lengths, either order: replacing one at a time left 'ghi' or 'abc'.
    for values in (["abcdef", "defghi"], ["defghi", "abcdef"]):
        red = Redactor(values=values)
        assert red.request("GET", "http://h/abcdefghi!", {}, b"")[1] == f"http://h/{REDACTED}!"
        assert red.response(200, "OK", {}, b"xabcdefghiy")[3] == f"x{REDACTED}y".encode()
    # Back to back, not overlapping: one placeholder each.
    red = Redactor(values=["abcd", "efgh"])
    assert red.response(200, "OK", {}, b"abcdefgh")[3] == (REDACTED * 2).encode()
    # A value repeated with overlap ('aaaa' in 'aaaaaa') goes whole too.
    assert Redactor(values=["aaaa"]).response(200, "OK", {}, b"-aaaaaa-")[3] == b"-<redacted>-"


def test_a_value_overlapping_a_placeholder_leaves_the_placeholder_whole():
    red = Redactor(values=["ted>abcd"])
    assert red.response(200, "OK", {}, b"<redacted>abcd")[3] == REDACTED.encode() * 2
    red = Redactor(values=["xx<red"])
    assert red.response(200, "OK", {}, b"xx<redacted>")[3] == REDACTED.encode() * 2
    red = Redactor(values=["GMT;x"])
    headers = {"X-At": [f"{DATE_PLACEHOLDER};x"]}
    assert red.response(200, "OK", headers, b"")[2] == {"X-At": [f"{DATE_PLACEHOLDER}{REDACTED}"]}


_PLACEHOLDERS = [REDACTED, VOLATILE, DATE_PLACEHOLDER, "{port7}"]


@settings(max_examples=300, deadline=None)
@given(
    tokens=st.lists(st.sampled_from(["XYZQXQZY", "QQYX", "mn", " ", *_PLACEHOLDERS]), max_size=8),
    cuts=st.lists(st.tuples(st.integers(0, 80), st.integers(4, 14)), min_size=1, max_size=4),
)
def test_exactly_what_listed_values_cover_is_replaced_and_placeholders_stay(tokens, cuts):
    # Values are random pieces of the body itself, so they overlap each other
    # and the placeholders in it. Every character a value covers goes, except
    # inside a placeholder, which stays whole; nothing else is touched.
    body = "".join(tokens)
    values = [body[a : a + n] for a, n in cuts if a + n <= len(body)]
    values = [v for v in values if v.strip()]
    assume(values)
    protected = [False] * len(body)
    for found in re.finditer("|".join(re.escape(p) for p in _PLACEHOLDERS), body):
        protected[found.start() : found.end()] = [True] * (found.end() - found.start())
    covered = [False] * len(body)
    for value in Redactor(values=values).values:
        start = body.find(value)
        while start >= 0:
            covered[start : start + len(value)] = [True] * len(value)
            start = body.find(value, start + 1)
    kept = "".join(c for i, c in enumerate(body) if protected[i] or not covered[i])
    _, _, _, out = Redactor(values=values).response(200, "OK", {}, body.encode())
    assert out.decode().replace(REDACTED, "") == kept.replace(REDACTED, "")
    for placeholder in _PLACEHOLDERS[1:]:
        assert out.decode().count(placeholder) == body.count(placeholder)


def test_a_listed_value_is_found_json_escaped_too():
    secret = 'p\u00e4"ss\\w\u2028rd'
    red = Redactor(values=[secret])
    for body in (json.dumps({"p": secret}), json.dumps({"p": secret}, ensure_ascii=False)):
        _, _, _, out = red.request("POST", "http://h/", {}, body.encode("utf-8"))
        assert json.loads(out) == {"p": REDACTED}, body


def test_values_too_short_to_be_secrets_are_refused_without_showing_them():
    with pytest.raises(ConfigError) as info:
        merge_settings({}, None, {"redact_values": ["q#", "long-enough-1", "", "Z"]})
    text = str(info.value)
    assert (
        "replay setting redact_values in replay marker: values #1 (2 characters), "
        "#4 (1 character) are too short to be secrets (the minimum is 4 characters)"
    ) in text
    assert "Fix: list only secrets of 4 characters or more in redact_values" in text
    assert "q#" not in text and "long-enough-1" not in text
    with pytest.raises(ConfigError) as info:
        merge_settings({}, {"redact_values": ["long-enough-1", 5]}, {})
    assert "long-enough-1" not in str(info.value)  # not even when the type is wrong
    assert "redact_values (a list) in replay_config fixture is not valid" in str(info.value)
    # Four characters will do; an empty value (an unset variable) is skipped.
    values = merge_settings({}, None, {"redact_values": ["1234", ""]}).get("redact_values")
    assert values == ["1234", ""] and Redactor(values=values).values == ["1234"]


# --- matching ---------------------------------------------------------------------------


def test_the_fifo_index_serves_equal_keys_in_recorded_order_once():
    index = FifoIndex(["a", "b", "a", "c", "a"])
    assert [index.take("a"), index.take("a"), index.take("b")] == [0, 2, 1]
    assert index.recorded("a") == 3 and index.recorded("zz") == 0
    assert index.remaining() == [3, 4]
    assert index.take("a") == 4 and index.take("a") is None and index.take("nope") is None


def test_match_on_options_build_the_key():
    body = lambda: b'{"b": 1, "a": 2}'  # noqa: E731
    default = key_function()
    assert default("get", "http://h/p?x=1", {}, body) == (
        "GET",
        "http",
        "h",
        "80",
        "/p",
        (("x", "1"),),
    )
    by_body = key_function(["method", "path", "body"])
    same = by_body("POST", "http://h/p", {}, lambda: b'{"a":2,"b":1}')
    assert by_body("POST", "http://other/p", {}, body) == same  # JSON compared canonically
    by_headers = key_function(["headers"])
    assert by_headers("GET", "u", {"X-A": ["1"], "User-Agent": ["x"]}, body) == by_headers(
        "GET", "u", {"x-a": ["1"], "User-Agent": ["y"]}, body
    )
    custom = key_function(["method", lambda r: r["uri"].split("/")[-1]])
    assert custom("GET", "http://h/a/item", {}, body) == ("GET", "item")
    assert valid_match_on(["uri", "body"]) and not valid_match_on([]) and not valid_match_on("uri")
    assert not valid_match_on(["url"])


# --- the network guard -----------------------------------------------------------------


def _guard(*allow: str) -> NetworkGuard:
    return NetworkGuard(
        allow, lambda host, port, action: ValueError(f"blocked {action} {host}:{port}")
    )


def test_the_guard_allows_loopback_and_listed_hosts_only():
    guard = _guard("api.example.com", "10.1.2.3", "2001:0db8::1")
    for host in ["127.0.0.1", "127.9.9.9", "::1", "[::1]", "localhost", "0.0.0.0", "10.1.2.3"]:
        assert guard.allows(host), host
    assert guard.allows("API.EXAMPLE.COM") and guard.allows("2001:db8::1")
    for host in ["192.0.2.1", "example.com", "10.1.2.4", "2001:db8::2"]:
        assert not guard.allows(host), host
    with pytest.raises(ValueError, match=r"blocked connect to 192\.0\.2\.1:443"):
        guard.check(("192.0.2.1", 443))
    guard.check("/tmp/some.sock")  # AF_UNIX paths are not network


def test_an_allowed_international_name_lets_through_its_ascii_form_too():
    guard = _guard("Bücher.example")
    assert guard.allows("bücher.example") and guard.allows("xn--bcher-kva.example")
    guard.check_lookup("xn--bcher-kva.example")  # what requests and httpx look up
    assert not guard.allows("xn--bchr-kva.example")


def test_an_allowed_name_lets_through_what_the_client_resolved_it_to():
    guard = _guard("svc.internal")
    assert not guard.allows("10.9.8.7")
    guard.learn("svc.internal", [(2, 1, 6, "", ("10.9.8.7", 0))])
    guard.learn("other.internal", [(2, 1, 6, "", ("10.9.8.6", 0))])
    assert guard.allows("10.9.8.7") and not guard.allows("10.9.8.6")


def test_the_guard_blocks_lookups_and_udp_sends_and_puts_socket_back():
    import socket

    real = [
        socket.getaddrinfo, socket.gethostbyname, socket.gethostbyname_ex,
        socket.gethostbyaddr, socket.getnameinfo,
        socket.socket.sendto, socket.socket.connect, socket.create_connection,
    ]  # fmt: skip
    guard = _guard("svc.internal")
    guard.install()
    try:
        for lookup in (socket.gethostbyname, socket.gethostbyname_ex):
            with pytest.raises(ValueError, match=r"blocked resolve api\.example\.invalid:None"):
                lookup("api.example.invalid")
        with pytest.raises(ValueError, match=r"blocked resolve api\.example\.invalid:443"):
            socket.getaddrinfo(b"api.example.invalid", 443)
        # No lookup leaves the machine for these: numbers, loopback, its own name.
        assert socket.getaddrinfo("192.0.2.1", 80)[0][4][0] == "192.0.2.1"
        assert socket.getaddrinfo(None, 80) and socket.getaddrinfo("localhost", 80)
        guard.check_lookup(socket.gethostname())
        guard.check_lookup("svc.internal")  # allowed: the lookup may go out
        # Reverse lookups send a PTR query for anything but loopback and own names.
        with pytest.raises(ValueError, match=r"blocked resolve 192\.0\.2\.1:None"):
            socket.gethostbyaddr("192.0.2.1")
        with pytest.raises(ValueError, match=r"blocked resolve 192\.0\.2\.1:None"):
            socket.getnameinfo(("192.0.2.1", 80), 0)
        assert socket.getnameinfo(("192.0.2.1", 80), socket.NI_NUMERICHOST)[0] == "192.0.2.1"
        # /etc/hosts may lack it (OSError); the guard itself must let it through.
        with contextlib.suppress(OSError):
            socket.gethostbyaddr("127.0.0.1")
        guard.check_lookup(socket.gethostname(), reverse=True)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            with pytest.raises(ValueError, match=r"blocked send a datagram to 192\.0\.2\.1:53"):
                udp.sendto(b"x", ("192.0.2.1", 53))
            with pytest.raises(ValueError, match=r"blocked send a datagram to 192\.0\.2\.1:53"):
                udp.sendto(b"x", 0, ("192.0.2.1", 53))
            if hasattr(udp, "sendmsg"):
                with pytest.raises(ValueError, match=r"send a datagram to 192\.0\.2\.1:53"):
                    udp.sendmsg([b"x"], [], 0, ("192.0.2.1", 53))
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
                sink.bind(("127.0.0.1", 0))
                assert udp.sendto(b"ok", sink.getsockname()) == 2
                assert sink.recv(10) == b"ok"
    finally:
        guard.uninstall()
    assert [
        socket.getaddrinfo, socket.gethostbyname, socket.gethostbyname_ex,
        socket.gethostbyaddr, socket.getnameinfo,
        socket.socket.sendto, socket.socket.connect, socket.create_connection,
    ] == real  # fmt: skip


def test_allowed_hosts_parse_from_commas_spaces_and_lists():
    assert parse_hosts(["a.com, B.com", "c.com d.com", "[::1]", "a.com"]) == (
        "a.com",
        "b.com",
        "c.com",
        "d.com",
        "::1",
    )


@pytest.mark.parametrize(
    ("entry", "why", "instead"),
    [
        (":::", "is not a host name or an IP address", None),
        ("db.internal:5432", "has a port (:5432)", "db.internal"),
        ("[::1]:8080", "has a port (:8080)", "[::1]"),
        ("https://api.example.com/v1", "is a URL, not a host", "api.example.com"),
        ("*.example.com", "is a pattern", None),
        ("10.0.0.0/8", "is a network", None),
        ("db.internal.", "ends with '.'", "db.internal"),
        ("10.0.0", "is not an IP address", None),
        ("300.1.2.3", "is not an IP address", None),
        ("-db", "is not a host name or an IP address", None),
        ("a..b", "is not a host name or an IP address", None),
        ("[db]", "is not a host name or an IP address", None),
        ("::1]", "is not a host name or an IP address", None),
    ],
)
def test_allow_host_entries_that_could_never_match_say_why(entry, why, instead):
    found, suggested = host_problem(entry)
    assert found.startswith(why) and suggested == instead


def test_allow_host_names_and_addresses_pass():
    for entry in ["db.internal", "my_db", "LOCALHOST", "10.0.0.5", "::1", "[::1]",
                  "2001:db8::1", "fe80::1%eth0", "b\u00fccher.de", "xn--bcher-kva.de"]:  # fmt: skip
        assert host_problem(entry) is None, entry


def test_bad_allow_hosts_name_the_option_the_entry_and_a_fix():
    with pytest.raises(ConfigError) as info:
        allowed_hosts([], ["db.internal, :::"])
    assert str(info.value).splitlines()[0] == (
        "replay_config: --replay-allow-hosts: ':::' is not a host name or an IP address"
    )
    assert "Fix: write --replay-allow-hosts=db.internal,10.0.0.5" in str(info.value)
    with pytest.raises(ConfigError) as info:
        allowed_hosts(["db:5432"], [])
    assert "ini option replay_allow_hosts: 'db:5432' has a port" in str(info.value)
    assert "Fix: write replay_allow_hosts = db in the [pytest] section" in str(info.value)
    with pytest.raises(ConfigError) as info:
        merge_settings({}, None, {"allow_hosts": ["10.0.0.5", "http://db:8080/"]})
    assert "replay setting allow_hosts in replay marker: 'http://db:8080/' is a URL" in str(
        info.value
    )
    assert "Fix: write allow_hosts=['db']" in str(info.value)
    assert allowed_hosts(["a.example 10.0.0.5"], ["B.example,[::1]"]) == (
        "a.example",
        "10.0.0.5",
        "b.example",
        "::1",
    )


@settings(max_examples=300, deadline=None)
@given(st.text("ab0159.:-_[]/*%\u00e9x", min_size=1, max_size=24))
def test_an_allow_host_that_passes_can_match_and_a_suggestion_passes(entry):
    problem = host_problem(entry)
    if problem is None:
        assert _guard(entry).allows(entry)
    elif problem[1] is not None:
        assert host_problem(problem[1]) is None
