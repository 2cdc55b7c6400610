"""The built-in probes and actions: named by module and function in the catalogue, resolved when first run."""

from __future__ import annotations

import inspect

import pytest

from tradeops.runbooks import registry
from tradeops.runbooks.catalogue import ENTRIES
from tradeops.runbooks.registry import Operation


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.name for e in ENTRIES])
def test_every_entry_names_a_function_taking_exactly_its_arguments(entry):
    """Each catalogue entry's target imports, and the function takes the context then exactly the arguments its
    schema declares: validation (which reads only the catalogue) and the call agree."""
    op = registry.get(entry.name)
    assert op is not None and op.kind == entry.kind and op.schema == entry.schema()
    params = list(inspect.signature(op.function()).parameters)
    assert params[0] == "ctx" and sorted(params[1:]) == sorted(entry.schema()["properties"])


def test_the_registry_lists_the_catalogue_and_what_was_registered():
    """probes() and actions() are the catalogue's entries by kind, plus an operation registered at run time
    (until it is unregistered)."""
    assert {op.name for op in registry.probes() + registry.actions()} == {e.name for e in ENTRIES}
    extra = Operation(name="test_extra", kind="probe", func=lambda ctx: 1, description="x", schema={"type": "object"})
    registry.register(extra)
    try:
        assert registry.get("test_extra") is extra and extra in registry.probes()
    finally:
        registry.unregister("test_extra")
    assert registry.get("test_extra") is None


def test_a_built_in_name_cannot_be_taken_or_removed():
    """Registering another function under a built-in's name is a programming error; unregister leaves built-ins."""
    with pytest.raises(ValueError, match="already registered"):
        registry.register(Operation(name="set_processing", kind="action", func=lambda ctx, state: None,
                                    description="x", schema={"type": "object"}))
    registry.unregister("set_processing")
    assert registry.get("set_processing") is not None
