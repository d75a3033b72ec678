"""HTTP route templates of the local functions host."""

from __future__ import annotations

import pytest

from local.host.routes import RouteError, compile_route


def test_optional_trailing_parameter():
    route = compile_route("status/{dataset?}")
    assert route.match("status") == {}
    assert route.match("status/") == {}
    assert route.match("status/digits") == {"dataset": "digits"}
    assert route.match("status/a/b") is None
    assert route.match("STATUS/x") == {"dataset": "x"}  # literals are case-insensitive, like ASP.NET
    assert route.match("statusx") is None


def test_constraints_and_catch_all():
    route = compile_route("items/{id:int}/{*rest}")
    assert route.match("items/42") == {"id": "42"}
    assert route.match("items/42/a/b.c") == {"id": "42", "rest": "a/b.c"}
    assert route.match("items/x") is None
    assert compile_route("b/{flag:bool}").match("b/TRUE") == {"flag": "TRUE"}
    assert compile_route("g/{name:alpha}").match("g/abc1") is None


@pytest.mark.parametrize("template", ["a/{x?}/b", "a{x}", "{*rest}/more"])
def test_unreadable_templates_are_refused(template: str):
    with pytest.raises(RouteError):
        compile_route(template)
