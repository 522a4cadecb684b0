"""Reading ingress paths: every form Restate's ingress accepts, and 404s for the rest."""

import pytest

from tarry.runtime.paths import PathError, Target, parse_invoke_path, split_path

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
