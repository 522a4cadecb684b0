"""Reading ingress paths: every form Restate's ingress accepts, and 404s for the rest."""

import pytest

from tarry.runtime.paths import PathError, Target, parse_api_path, parse_invoke_path, split_path

KINDS = {"Greeter": "service", "Counter": "object", "Signup": "workflow"}


def parse(path: str, kinds: dict[str, str] = KINDS) -> Target:
    return parse_invoke_path(split_path(path), kinds.get)


@pytest.mark.parametrize(
    ("path", "target"),
    [
        ("/Greeter/greet", Target("Greeter", None, "greet", False)),
        ("/Greeter/greet/send", Target("Greeter", None, "greet", True)),
        ("/Counter/a/add", Target("Counter", "a", "add", False)),
        ("/Counter/a/add/send", Target("Counter", "a", "add", True)),
        ("/Signup/ada/run", Target("Signup", "ada", "run", False)),
        ("/Signup/ada/run/send", Target("Signup", "ada", "run", True)),
        # a handler may be called "send": only a trailing extra segment means send
        ("/Greeter/send", Target("Greeter", None, "send", False)),
        ("/Counter/a/send", Target("Counter", "a", "send", False)),
        ("/restate/call/Greeter/greet", Target("Greeter", None, "greet", False)),
        ("/restate/send/Greeter/greet", Target("Greeter", None, "greet", True)),
        ("/restate/call/Counter/a/add", Target("Counter", "a", "add", False)),
        ("/restate/send/Counter/a/add", Target("Counter", "a", "add", True)),
    ],
)
def test_invoke_path_forms(path: str, target: Target) -> None:
    assert parse(path) == target


@pytest.mark.parametrize(
    ("path", "key"),
    [
        ("/Counter/a%2Fb/add", "a/b"),
        ("/Counter/hello%20world/add/send", "hello world"),
        ("/restate/send/Counter/a%2Fb/add", "a/b"),
        ("/Counter/%C3%A9t%C3%A9/add", "été"),
        ("/Counter/send/add", "send"),
    ],
)
def test_keys_are_percent_decoded_after_splitting(path: str, key: str) -> None:
    assert parse(path).key == key


def test_split_path_keeps_encoding_and_drops_query_and_empty_segments() -> None:
    assert split_path(b"/Counter/a%2Fb/add?x=1&y=/z") == ["Counter", "a%2Fb", "add"]
    assert split_path("//Greeter//greet/") == ["Greeter", "greet"]
    assert split_path("/") == []


def test_a_service_named_restate_is_served_normally() -> None:
    kinds = {**KINDS, "restate": "service"}
    assert parse("/restate/call", kinds) == Target("restate", None, "call", False)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/", "names no service"),
        ("/restate/call", "names no service"),
        ("/Nope/greet", "no service named 'Nope'"),
        ("/Greeter", "is a service"),
        ("/Greeter/a/greet", "is a service"),
        ("/Greeter/a/greet/send/x", "is a service"),
        ("/Counter/add", "is keyed"),
        ("/Counter/a/add/x/send", "is keyed"),
        ("/restate/send/Counter/add", "is keyed"),
    ],
)
def test_paths_that_name_nothing_are_404(path: str, message: str) -> None:
    with pytest.raises(PathError, match=message) as raised:
        parse(path)
    assert raised.value.status_code == 404


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/Counter/%ZZ/add", "percent-encoding"),  # unquote() leaves it as "%ZZ", as "%25ZZ" is
        ("/Counter/a%/add", "percent-encoding"),
        ("/Counter/a%2/add", "percent-encoding"),
        ("/Counter/%C3/add", "UTF-8"),  # unquote() makes it U+FFFD, as it does "%C4"
        ("/Counter/%FF%FE/add", "UTF-8"),
        ("/Counter/%ED%A0%80/add", "UTF-8"),  # a surrogate, encoded
        ("/Counter/a/%ZZ", "percent-encoding"),
        ("/%ZZ/add", "percent-encoding"),
        ("/restate/send/Counter/%C3/add", "UTF-8"),
    ],
)
def test_bad_percent_encoding_is_refused_with_400(path: str, message: str) -> None:
    with pytest.raises(PathError, match=message) as raised:
        parse(path)
    assert raised.value.status_code == 400


def test_distinct_raw_keys_stay_distinct_keys() -> None:
    raw_keys = ["%25ZZ", "%25C3", "%25C4", "a%252Fb", "a%2Fb", "a%2fb", "%C3%A9", "%2525"]
    keys = [parse(f"/Counter/{k}/add").key for k in raw_keys]
    assert keys == ["%ZZ", "%C3", "%C4", "a%2Fb", "a/b", "a/b", "é", "%25"]
    # what a server hands over undecoded: raw UTF-8 bytes are the same key as their encoding
    raw = split_path(b"/Counter/\xc3\xa9/add")
    assert parse_invoke_path(raw, KINDS.get).key == "é"


@pytest.mark.parametrize(
    "path",
    ["/restate/awakeables/%ZZ/resolve", "/restate/workflow/Signup/%C3/output",
     "/restate/invocation/%ZZ/attach", "/restate/invocation/Counter/k/add/%C3/output"],
)  # fmt: skip
def test_bad_percent_encoding_in_api_paths_is_refused(path: str) -> None:
    with pytest.raises(PathError) as raised:
        parse_api_path(split_path(path))
    assert raised.value.status_code == 400
