"""Every backend module satisfies the Backend protocol of flickermine.mining._backends: the same
members, callable with the same parameter names (in order, with the same defaults)."""

from __future__ import annotations

import importlib
import inspect
import typing

import pytest

from flickermine.mining import _backends as backends
from flickermine.mining._backends import BACKENDS, Backend, BackendName, get_backend


def _members() -> dict[str, object]:
    """The Protocol's functions (with ``self``) and its data members."""
    functions = {n: f for n, f in vars(Backend).items() if callable(f) and not n.startswith("_")}
    data = {n: None for n in typing.get_type_hints(Backend) if n not in functions}
    return {**functions, **data}


def test_the_protocol_lists_the_backend_members():
    assert set(_members()) == {"NAME", "ncc_search_batch", "iou", "frame_verdicts", "frame_hard_positives"}
    assert set(typing.get_args(BackendName)) == {"auto", *BACKENDS}


@pytest.mark.parametrize("name", BACKENDS)
def test_backend_module_satisfies_the_protocol(name):
    if name not in backends.available_backends():
        pytest.skip(f"backend {name!r} not available here: {backends.unavailable_backends().get(name)}")
    module = importlib.import_module(f"{backends.__name__}.{backends._MODULES[name]}")
    assert get_backend(name) is module
    assert module.NAME == name
    for member, spec in _members().items():
        assert hasattr(module, member), f"{name} backend lacks {member}"
        if spec is None:
            continue
        function = getattr(module, member)
        assert callable(function), f"{name}.{member} is not callable"
        wanted = list(inspect.signature(spec).parameters.values())[1:]  # without self
        got = list(inspect.signature(function).parameters.values())
        assert [p.name for p in got] == [p.name for p in wanted], f"{name}.{member}{inspect.signature(function)}"
        assert [p.default for p in got] == [p.default for p in wanted], f"{name}.{member} defaults"
