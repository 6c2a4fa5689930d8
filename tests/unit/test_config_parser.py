"""The nginx-style configuration: syntax, includes, model, FILE:LINE errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from proxy.config import ConfigError, load, parse_string
from proxy.config.lexer import Kind, tokenize
from proxy.config.model import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_FAIL_TIMEOUT,
    DEFAULT_MAX_CONCURRENT_STREAMS,
    DEFAULT_MAX_FAILS,
    DEFAULT_READ_TIMEOUT,
    DEFAULT_SEND_TIMEOUT,
    Address,
    Config,
    Location,
    Server,
)

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CONF = REPO / "conf" / "grpc-proxy.conf"

# A valid server block, to make small test files complete.
SERVER = "server { listen 127.0.0.1:8080; location / { grpc_pass grpc://127.0.0.1:1; } }\n"


def error_of(text: str, file: str = "t.conf") -> str:
    with pytest.raises(ConfigError) as info:
        parse_string(text, file)
    return str(info.value)


def location(body: str) -> Location:
    """The only location of a one-server config whose location block is ``body``."""
    config = parse_string(f"server {{ listen 1; location / {{ {body} }} }}")
    return config.servers[0].locations[0]


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# --- the default file -----------------------------------------------------------------


@pytest.fixture(scope="module")
def default() -> Config:
    return load(str(DEFAULT_CONF))


def test_default_top_level(default: Config) -> None:
    assert default.file == str(DEFAULT_CONF)
    assert default.worker_processes == 1
    assert list(default.upstreams) == ["echo"]


def test_default_upstream(default: Config) -> None:
    echo = default.upstreams["echo"]
    assert echo.connect_timeout == 1.0
    assert not echo.implicit
    s1, s2, s3, s4 = echo.servers
    assert s1.address == Address("127.0.0.1", 50051)
    assert (s1.weight, s1.max_fails, s1.fail_timeout) == (3, 2, 5.0)
    assert (s2.weight, s2.max_fails) == (1, DEFAULT_MAX_FAILS)
    assert s2.fail_timeout == DEFAULT_FAIL_TIMEOUT
    assert (s3.address.port, s3.backup, s3.down) == (50053, True, False)
    assert (s4.address.port, s4.backup, s4.down) == (50054, False, True)
    assert not (s1.backup or s1.down or s2.backup or s2.down)


def test_default_server(default: Config) -> None:
    (server,) = default.servers
    (listen,) = server.listens
    assert listen.address == Address("127.0.0.1", 8080)
    assert listen.http2 and not listen.ssl and not listen.reuseport
    assert server.http2_max_concurrent_streams == 1000
    echo, root = server.locations
    assert (echo.path, echo.exact, echo.upstream, echo.read_timeout) == (
        "/echo.Echo/",
        False,
        "echo",
        300.0,
    )
    assert (root.path, root.exact, root.upstream) == ("/", False, "echo")
    assert root.read_timeout == DEFAULT_READ_TIMEOUT
    assert root.send_timeout == DEFAULT_SEND_TIMEOUT
    assert root.connect_timeout is None


def test_default_sources(default: Config) -> None:
    text = DEFAULT_CONF.read_text().splitlines()
    server = default.servers[0]
    assert server.source is not None and server.source.file == str(DEFAULT_CONF)
    assert text[server.source.line - 1].startswith("server {")
    loc_source = server.locations[0].source
    assert loc_source is not None
    assert "location /echo.Echo/" in text[loc_source.line - 1]


def test_examples_parse() -> None:
    for path in sorted((REPO / "conf" / "examples").glob("*.conf")):
        load(str(path))


# --- syntax ---------------------------------------------------------------------------


def test_comments_quotes_and_escapes() -> None:
    config = parse_string(
        "# comment\n"
        'upstream "u" {  # trailing comment\n'
        '    server \'h:1\' "meta=k:a\\"b";\n'
        "}\n" + SERVER
    )
    assert config.upstreams["u"].servers[0].meta == (("k", 'a"b'),)


@pytest.mark.parametrize(
    ("source", "words"),
    [
        (r'a "x\ty\nz" b;', ["a", "x\ty\nz", "b"]),
        (r"a 'it\'s' \\;", ["a", "it's", "\\"]),
        (r'a "\q";', ["a", "\\q"]),  # unknown escapes keep their backslash
        (r"a x\ y;", ["a", "x\\ y"]),  # the escaped space does not end the word
        ('a "";', ["a", ""]),
        ("a\n\t b\r\n;", ["a", "b"]),
    ],
)
def test_lexer_words_and_escapes(source: str, words: list[str]) -> None:
    tokens = tokenize(source, "t")
    assert [t.value for t in tokens if t.kind is Kind.WORD] == words


def test_lexer_lines_count_newlines_inside_quotes() -> None:
    tokens = tokenize('a "1\n2\n" b\n;\n{ }', "t")
    assert [(t.value, t.line) for t in tokens] == [
        ("a", 1),
        ("1\n2\n", 1),
        ("b", 3),
        (";", 4),
        ("{", 5),
        ("}", 5),
    ]


def test_hash_and_quotes_inside_a_word_are_literal() -> None:
    config = parse_string("upstream u { server h:1 meta=k:a#b,q:'x'; }")
    assert config.upstreams["u"].servers[0].meta == (("k", "a#b"), ("q", "'x'"))


def test_empty_config_is_allowed() -> None:
    config = parse_string("# nothing\n")
    assert config.servers == () and config.upstreams == {}
    assert config.worker_processes == 1


def test_upstream_may_follow_server() -> None:
    config = parse_string(
        "server { listen 1; location / { grpc_pass late; } }\nupstream late { server h:1; }\n"
    )
    assert config.servers[0].locations[0].upstream == "late"


def test_worker_processes_auto() -> None:
    config = parse_string("worker_processes auto;")
    assert config.worker_processes == (os.cpu_count() or 1)


def test_upstream_server_parameters() -> None:
    config = parse_string(
        "upstream u {\n"
        "  server [::1]:50051 weight=5 max_fails=0 fail_timeout=1m30s backup down"
        " meta=zone:a,tier:gold;\n"
        "  server backend.example.com:443;\n"
        "}\n"
    )
    a, b = config.upstreams["u"].servers
    assert a.address == Address("::1", 50051) and str(a.address) == "[::1]:50051"
    assert (a.weight, a.max_fails, a.fail_timeout, a.backup, a.down) == (5, 0, 90.0, True, True)
    assert a.meta == (("zone", "a"), ("tier", "gold"))
    assert b.address == Address("backend.example.com", 443)
    assert config.upstreams["u"].connect_timeout == DEFAULT_CONNECT_TIMEOUT


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("8080", Address("0.0.0.0", 8080)),
        ("*:8080", Address("0.0.0.0", 8080)),
        ("127.0.0.1:8080", Address("127.0.0.1", 8080)),
        ("[::]:8080", Address("::", 8080)),
        ("localhost:8080", Address("localhost", 8080)),
    ],
)
def test_listen_addresses(listen: str, expected: Address) -> None:
    config = parse_string(f"server {{ listen {listen}; }}")
    assert config.servers[0].listens[0].address == expected
    assert config.servers[0].http2_max_concurrent_streams == DEFAULT_MAX_CONCURRENT_STREAMS


def test_listen_parameters() -> None:
    config = parse_string("server { listen 1 http2 reuseport; listen 2; }")
    first, second = config.servers[0].listens
    assert first.http2 and first.reuseport
    assert second.http2 and not second.reuseport  # gRPC is HTTP/2: always on


def test_location_directives() -> None:
    config = parse_string(
        "upstream u { server h:1; }\n"
        "server { listen 1; location = /a/B {\n"
        "  grpc_pass u; grpc_read_timeout off; grpc_send_timeout 0;\n"
        "  grpc_connect_timeout 250ms; grpc_next_upstream_tries 3;\n"
        "} }\n"
    )
    got = config.servers[0].locations[0]
    assert (got.path, got.exact, got.upstream) == ("/a/B", True, "u")
    assert (got.read_timeout, got.send_timeout) == (None, None)
    assert (got.connect_timeout, got.next_upstream_tries) == (0.25, 3)


@pytest.mark.parametrize(
    ("args", "path", "exact"),
    [("/a", "/a", False), ("= /a", "/a", True), ("=/a", "/a", True), ("^~ /a", "/a", False)],
)
def test_location_modifiers(args: str, path: str, exact: bool) -> None:
    config = parse_string(f"server {{ listen 1; location {args} {{ grpc_pass h:1; }} }}")
    got = config.servers[0].locations[0]
    assert (got.path, got.exact) == (path, exact)


def test_implicit_upstreams_are_shared() -> None:
    config = parse_string(
        "server { listen 1;\n"
        "  location /a { grpc_pass grpc://10.0.0.1:5; }\n"
        "  location /b { grpc_pass 10.0.0.1:5; }\n"
        "  location /c { grpc_pass grpc://[::1]:6; }\n"
        "}\n"
    )
    assert list(config.upstreams) == ["10.0.0.1:5", "[::1]:6"]
    shared = config.upstreams["10.0.0.1:5"]
    assert shared.implicit and shared.servers[0].address == Address("10.0.0.1", 5)
    assert shared.connect_timeout == DEFAULT_CONNECT_TIMEOUT
    assert [loc.upstream for loc in config.servers[0].locations] == [
        "10.0.0.1:5",
        "10.0.0.1:5",
        "[::1]:6",
    ]


@pytest.mark.parametrize("target", ["u", "grpc://u", "GRPC://u"])
def test_grpc_pass_names_an_upstream(target: str) -> None:
    config = parse_string(
        "upstream u { server h:1; }" + SERVER.replace("grpc://127.0.0.1:1", target)
    )
    assert config.servers[0].locations[0].upstream == "u"
    assert list(config.upstreams) == ["u"]


def test_timeouts_in_compound_units() -> None:
    assert location("grpc_pass h:1; grpc_read_timeout 1h30m;").read_timeout == 5400.0
    assert location("grpc_pass h:1; grpc_send_timeout 45;").send_timeout == 45.0
    assert location("grpc_pass h:1; grpc_read_timeout 0s;").read_timeout is None


# --- includes -------------------------------------------------------------------------


def test_include_glob_sorted_at_any_level(tmp_path: Path) -> None:
    write(tmp_path, "conf.d/b.conf", "upstream b { server h:2; }\n")
    write(tmp_path, "conf.d/a.conf", "upstream a { server h:1; }\n")
    write(tmp_path, "conf.d/ignored.txt", "garbage\n")
    write(
        tmp_path,
        "locations/all.conf",
        "location /a { grpc_pass a; }\nlocation /b { include ../pass-b.inc; }\n",
    )
    write(tmp_path, "pass-b.inc", "grpc_pass b;\n")
    main = write(
        tmp_path,
        "main.conf",
        "include conf.d/*.conf;\nserver { listen 1; include locations/*.conf; }\n",
    )
    config = load(str(main))
    assert list(config.upstreams) == ["a", "b"]
    assert [(x.path, x.upstream) for x in config.servers[0].locations] == [("/a", "a"), ("/b", "b")]
    source = config.upstreams["b"].source
    assert source is not None and source.file == str(tmp_path / "conf.d" / "b.conf")


def test_include_relative_to_including_file(tmp_path: Path) -> None:
    write(tmp_path, "sub/inner.conf", "include sibling.conf;\n")
    write(tmp_path, "sub/sibling.conf", "worker_processes 7;\n")
    main = write(tmp_path, "main.conf", "include sub/inner.conf;\n")
    assert load(str(main)).worker_processes == 7


def test_include_glob_matching_nothing_is_fine(tmp_path: Path) -> None:
    main = write(tmp_path, "main.conf", "include conf.d/*.conf;\n" + SERVER)
    assert len(load(str(main)).servers) == 1


def test_include_missing_file_is_an_error(tmp_path: Path) -> None:
    main = write(tmp_path, "main.conf", "worker_processes 1;\n\ninclude nope.conf;\n")
    with pytest.raises(ConfigError) as info:
        load(str(main))
    missing = tmp_path / "nope.conf"
    assert str(info.value) == (f'{main}:3: cannot open "{missing}": No such file or directory')


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read any file")
def test_include_unreadable_file_is_an_error(tmp_path: Path) -> None:
    secret = write(tmp_path, "secret.conf", "worker_processes 1;\n")
    secret.chmod(0)
    main = write(tmp_path, "main.conf", "include secret.conf;\n")
    with pytest.raises(ConfigError) as info:
        load(str(main))
    assert str(info.value) == f'{main}:1: cannot open "{secret}": Permission denied'


def test_include_permission_error_even_as_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import proxy.config.parser as parser_module

    def denied(path: str, mode: str = "r") -> object:
        raise PermissionError(13, "Permission denied", path)

    write(tmp_path, "secret.conf", "")
    main = write(tmp_path, "main.conf", "\ninclude secret.conf;\n")
    text = main.read_text()
    monkeypatch.setattr(parser_module, "open", denied, raising=False)
    with pytest.raises(ConfigError) as info:
        parse_string(text, str(main))
    assert str(info.value) == (
        f'{main}:2: cannot open "{tmp_path / "secret.conf"}": Permission denied'
    )


def test_include_directory_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    main = write(tmp_path, "main.conf", "include dir;\n")
    with pytest.raises(ConfigError) as info:
        load(str(main))
    assert str(info.value) == f'{main}:1: cannot open "{tmp_path / "dir"}": Is a directory'


def test_error_inside_included_file(tmp_path: Path) -> None:
    inner = write(tmp_path, "conf.d/bad.conf", "\n\nupstream u {\n  server h:1 weight=x;\n}\n")
    main = write(tmp_path, "main.conf", "worker_processes 1;\ninclude conf.d/*.conf;\n")
    with pytest.raises(ConfigError) as info:
        load(str(main))
    assert str(info.value) == f'{inner}:4: invalid value "x" in "weight", it must be at least 1'


def test_syntax_error_inside_included_file(tmp_path: Path) -> None:
    inner = write(tmp_path, "inner.conf", "upstream u {\n  server h:1;\n")
    main = write(tmp_path, "main.conf", "include inner.conf;\n")
    with pytest.raises(ConfigError) as info:
        load(str(main))
    assert str(info.value) == (
        f'{inner}:2: unexpected end of file, expecting "}}" to close "upstream" at line 1'
    )


def test_include_cycle(tmp_path: Path) -> None:
    write(tmp_path, "a.conf", "include b.conf;\n")
    write(tmp_path, "b.conf", "\ninclude a.conf;\n")
    main = tmp_path / "a.conf"
    with pytest.raises(ConfigError) as info:
        load(str(main))
    assert str(info.value) == f'{tmp_path / "b.conf"}:2: include cycle: "{main}" includes itself'


def test_same_file_may_be_included_twice(tmp_path: Path) -> None:
    write(tmp_path, "pass.inc", "grpc_pass h:1;\n")
    main = write(
        tmp_path,
        "main.conf",
        "server { listen 1; location /a { include pass.inc; }"
        " location /b { include pass.inc; } }\n",
    )
    assert len(load(str(main)).servers[0].locations) == 2


def test_include_paths_keep_the_form_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "conf/inc/x.conf", "\nbogus;\n")
    write(tmp_path, "conf/main.conf", "include inc/*.conf;\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        load("conf/main.conf")
    assert str(info.value) == 'conf/inc/x.conf:2: unknown directive "bogus"'


def test_parse_string_includes_relative_to_file(tmp_path: Path) -> None:
    write(tmp_path, "up.conf", "upstream u { server h:1; }\n")
    config = parse_string("include up.conf;\n", str(tmp_path / "virtual.conf"))
    assert list(config.upstreams) == ["u"]


def test_missing_main_file(tmp_path: Path) -> None:
    path = str(tmp_path / "nope.conf")
    with pytest.raises(ConfigError) as info:
        load(path)
    assert str(info.value) == f'{path}:0: cannot open "{path}": No such file or directory'


def test_invalid_utf8_reports_its_line(tmp_path: Path) -> None:
    path = tmp_path / "bin.conf"
    path.write_bytes(b"worker_processes 1;\n# caf\xe9\n")
    with pytest.raises(ConfigError) as info:
        load(str(path))
    assert str(info.value) == f"{path}:2: invalid UTF-8"


# --- errors: exact FILE:LINE: message ------------------------------------------------

ERRORS = [
    # syntax
    ("worker_processes 1", 1, 'unexpected end of file, expecting ";" or "}"'),
    (
        "server {\n  listen 1;\n",
        2,
        'unexpected end of file, expecting "}" to close "server" at line 1',
    ),
    ("worker_processes 1;\n}\n", 2, 'unexpected "}"'),
    ("server {\n  listen 1\n}\n", 3, 'unexpected "}"'),
    ("\n;", 2, 'unexpected ";"'),
    ("{", 1, 'unexpected "{"'),
    ('worker_processes "1\n\n', 1, "unterminated quoted string"),
    ('worker_processes "1"2;', 1, 'unexpected "2"'),
    # generic directive checks
    ("\nfoo bar;", 2, 'unknown directive "foo"'),
    ("http { }", 1, 'unknown directive "http"'),
    ("listen 1;", 1, '"listen" directive is not allowed here'),
    ("upstream u { listen 1; }", 1, '"listen" directive is not allowed here'),
    (
        "server { listen 1; location / { grpc_pass h:1; location /x { } } }",
        1,
        '"location" directive is not allowed here',
    ),
    ("server { listen 1; grpc_pass h:1; }", 1, '"grpc_pass" directive is not allowed here'),
    ("worker_processes 1;\nworker_processes 2;", 2, '"worker_processes" directive is duplicate'),
    (
        "server { listen 1; location / {\n grpc_pass h:1;\n grpc_pass h:2;\n} }",
        3,
        '"grpc_pass" directive is duplicate',
    ),
    (
        "upstream u { server h:1; connect_timeout 1s; connect_timeout 2s; }",
        1,
        '"connect_timeout" directive is duplicate',
    ),
    (
        "server { listen 1; http2_max_concurrent_streams 1;\nhttp2_max_concurrent_streams 2; }",
        2,
        '"http2_max_concurrent_streams" directive is duplicate',
    ),
    ("worker_processes;", 1, 'invalid number of arguments in "worker_processes" directive'),
    ("worker_processes 1 2;", 1, 'invalid number of arguments in "worker_processes" directive'),
    ("upstream { server h:1; }", 1, 'invalid number of arguments in "upstream" directive'),
    ("server x { listen 1; }", 1, 'invalid number of arguments in "server" directive'),
    ("server { listen; }", 1, 'invalid number of arguments in "listen" directive'),
    ("server { listen 1; location { } }", 1, 'invalid number of arguments in "location" directive'),
    ("include;", 1, 'invalid number of arguments in "include" directive'),
    ("server;", 1, 'directive "server" has no opening "{"'),
    ("upstream u;", 1, 'directive "upstream" has no opening "{"'),
    ("server { listen 1 { } }", 1, 'directive "listen" is not terminated by ";"'),
    ("include x { }", 1, 'directive "include" is not terminated by ";"'),
    # values
    (
        "worker_processes 0;",
        1,
        'invalid value "0" in "worker_processes" directive, '
        'it must be "auto" or a number from 1 to 1024',
    ),
    (
        "upstream u { server h:1 weight=0; }",
        1,
        'invalid value "0" in "weight", it must be at least 1',
    ),
    (
        "upstream u { server h:1 max_fails=-1; }",
        1,
        'invalid value "-1" in "max_fails", it must be at least 0',
    ),
    ("upstream u { server h:1 fail_timeout=5x; }", 1, 'invalid duration "5x"'),
    ("upstream u { server h:1 slow_start=1s; }", 1, 'invalid parameter "slow_start=1s"'),
    ("upstream u { server h:1 backup backup; }", 1, 'duplicate parameter "backup"'),
    (
        "upstream u { server h:1 meta=zone; }",
        1,
        'invalid value "zone" in "meta", it must be key:value[,key:value...]',
    ),
    ("upstream u { server h:1 meta=a:1,a:2; }", 1, 'duplicate key "a" in "meta"'),
    ("upstream u { server h; }", 1, 'invalid address "h", a port is required'),
    ("upstream u { server h:0; }", 1, 'invalid address "h:0", the port must be 1-65535'),
    ("upstream u { server 10.0.0:1; }", 1, 'invalid address "10.0.0:1"'),
    (
        "upstream u { server ::1:1; }",
        1,
        'invalid address "::1:1", IPv6 addresses need brackets: [::1]:80',
    ),
    ("upstream u { server [::g]:1; }", 1, 'invalid address "[::g]:1"'),
    (
        "upstream u { server h:1; connect_timeout 0; }",
        1,
        'invalid value "0" in "connect_timeout" directive, it must be more than 0',
    ),
    ("upstream u { server h:1;\n server h:1; }", 2, 'duplicate server h:1 in upstream "u"'),
    ("upstream u {\n}", 1, 'upstream "u" has no servers'),
    ("upstream u { server h:1; }\nupstream u { server h:2; }", 2, 'duplicate upstream "u"'),
    (
        "upstream a:1 { server h:1; }",
        1,
        'invalid upstream name "a:1", use letters, digits, ".", "-" and "_"',
    ),
    (
        "server { listen 1; http2_max_concurrent_streams 0; }",
        1,
        'invalid value "0" in "http2_max_concurrent_streams" directive, it must be at least 1',
    ),
    # server and listen
    ("server {\n}", 1, "server has no listen"),
    (
        "server { listen 127.0.0.1:80 ssl; }",
        1,
        'no "ssl_certificate" is defined for the "listen ... ssl" directive in t.conf:1',
    ),
    ("server { listen 80 default_server; }", 1, 'invalid parameter "default_server"'),
    ("server { listen 8080; }\nserver { listen *:8080; }", 2, "duplicate listen 0.0.0.0:8080"),
    ("server { listen [::1]:1;\n listen [0::1]:1; }", 2, "duplicate listen [::1]:1"),
    ("server { listen 99999; }", 1, 'invalid address "99999", the port must be 1-65535'),
    # locations
    ("server { listen 1;\n location /x {\n }\n}", 2, 'location "/x" has no grpc_pass'),
    ("server { listen 1; location = /x { } }", 1, 'location "= /x" has no grpc_pass'),
    (
        "server { listen 1;\n location /a { grpc_pass h:1; }\n location /a { grpc_pass h:2; } }",
        3,
        'duplicate location "/a"',
    ),
    (
        "server { listen 1; location ~ ^/a { grpc_pass h:1; } }",
        1,
        "regular expression locations are not supported",
    ),
    ("server { listen 1; location @x { grpc_pass h:1; } }", 1, "named locations are not supported"),
    ("server { listen 1; location ! /a { grpc_pass h:1; } }", 1, 'invalid location modifier "!"'),
    (
        "server { listen 1; location a { grpc_pass h:1; } }",
        1,
        'invalid location path "a", it must start with "/"',
    ),
    (
        "server { listen 1;\n location / {\n  grpc_pass nowhere;\n } }",
        3,
        'no upstream "nowhere" for grpc_pass',
    ),
    (
        "server { listen 1; location / { grpc_pass grpc://h:1; grpc_ssl_verify off; } }",
        1,
        '"grpc_ssl_verify" needs "grpc_pass grpcs://..."',
    ),
    (
        "server { listen 1; location / { grpc_pass http://h:1; } }",
        1,
        'invalid URL prefix in "http://h:1"',
    ),
    (
        "server { listen 1; location / { grpc_pass grpc://h:1/x; } }",
        1,
        'invalid grpc_pass "grpc://h:1/x", a URI path is not allowed',
    ),
    (
        "server { listen 1; location / { grpc_pass grpc://; } }",
        1,
        'invalid grpc_pass "grpc://", an upstream or address is needed',
    ),
    (
        "server { listen 1; location / { grpc_pass grpc://h:x; } }",
        1,
        'invalid address "h:x", the port must be 1-65535',
    ),
    (
        "server { listen 1; location / { grpc_pass h:1; grpc_read_timeout 5x; } }",
        1,
        'invalid duration "5x"',
    ),
    (
        "server { listen 1; location / { grpc_pass h:1; grpc_send_timeout -1; } }",
        1,
        'invalid duration "-1"',
    ),
    (
        "server { listen 1; location / { grpc_pass h:1; grpc_connect_timeout off; } }",
        1,
        'invalid duration "off"',
    ),
    (
        "server { listen 1; location / { grpc_pass h:1; grpc_next_upstream_tries x; } }",
        1,
        'invalid value "x" in "grpc_next_upstream_tries" directive, it must be at least 0',
    ),
]


NUL_FILES = [
    ("\0" * 100, 1),  # a file of zeros, as a crash can leave one
    ("worker_processes 1;\n\n" + "\0" * 100, 3),
    ("upstream u {\n  server h:1;\0\n}\n", 2),
    ("# a comment \0\nworker_processes 1;\n", 1),
    ('worker_processes "1\0";\n', 1),
    ("server {\n\n  listen 1\0", 3),  # not "unexpected end of file"
]


@pytest.mark.parametrize(("text", "line"), NUL_FILES)
def test_a_nul_byte_is_reported_at_its_line(text: str, line: int) -> None:
    assert error_of(text) == f"t.conf:{line}: unexpected NUL byte"


def test_a_nul_byte_in_an_included_file(tmp_path: Path) -> None:
    inner = tmp_path / "inner.conf"
    inner.write_bytes(b"upstream u {\n  server h:1;\n}\n\0\0\0")
    main = write(tmp_path, "main.conf", "include inner.conf;\n")
    with pytest.raises(ConfigError) as info:
        load(str(main))
    assert str(info.value) == f"{inner}:4: unexpected NUL byte"


@pytest.mark.parametrize(("text", "line", "message"), ERRORS)
def test_error_messages(text: str, line: int, message: str) -> None:
    assert error_of(text) == f"t.conf:{line}: {message}"


def test_values_in_messages_stay_on_one_line() -> None:
    assert error_of('"a\nb" x;') == 't.conf:1: unknown directive "a\\nb"'
    long = "x" * 200
    assert error_of(f"{long};") == f't.conf:1: unknown directive "{"x" * 64}..."'


def test_first_error_wins() -> None:
    assert error_of("foo;\nbar;") == 't.conf:1: unknown directive "foo"'


# --- location matching ----------------------------------------------------------------


@pytest.fixture(scope="module")
def routes() -> Server:
    config = parse_string(
        "server { listen 1;\n"
        "  location / { grpc_pass h:1; }\n"
        "  location /pkg.Svc/ { grpc_pass h:2; }\n"
        "  location /pkg.Svc/Long { grpc_pass h:3; }\n"
        "  location = /pkg.Svc/Exact { grpc_pass h:4; }\n"
        "  location = /pkg.Svc/ExactOnly { grpc_pass h:5; }\n"
        "  location /pkg.Svc/ExactOnly { grpc_pass h:6; }\n"
        "}\n"
    )
    return config.servers[0]


@pytest.mark.parametrize(
    ("path", "upstream"),
    [
        ("/other.Svc/M", "h:1"),  # only "/" matches
        ("/pkg.Svc/M", "h:2"),
        ("/pkg.Svc/LongMethod", "h:3"),  # longest prefix wins
        ("/pkg.Svc/Exact", "h:4"),  # exact beats a prefix
        ("/pkg.Svc/ExactX", "h:2"),  # exact means exact
        ("/pkg.Svc/ExactOnly", "h:5"),  # exact beats an equal prefix
        ("/pkg.Svc/ExactOnlyX", "h:6"),
    ],
)
def test_match(routes: Server, path: str, upstream: str) -> None:
    found = routes.match(path)
    assert found is not None and found.upstream == upstream


def test_no_match() -> None:
    config = parse_string(
        "server { listen 1; location /a/ { grpc_pass h:1; } location = /b { grpc_pass h:1; } }"
    )
    server = config.servers[0]
    assert server.match("/b/") is None
    assert server.match("/a") is None
    assert server.match("/a/x") is not None
