from __future__ import annotations

import pytest

from mmat.errors import UnknownPluginError
from mmat.export.release import ReleaseExporter
from mmat.registry import EXPORTERS, Registry


def test_builtin_exporter_comes_from_entry_points() -> None:
    assert "mmat1m" in EXPORTERS.names()
    assert EXPORTERS.get("mmat1m") is ReleaseExporter


def test_unknown_name_lists_valid_ones() -> None:
    registry: Registry[object] = Registry("widget", "mmat.no_such_group")
    registry.register("alpha", "collections:OrderedDict")
    registry.register("beta", dict)
    with pytest.raises(UnknownPluginError, match="unknown widget 'gamma'; valid names: alpha, beta"):
        registry.get("gamma")


def test_lazy_target_imports_on_get() -> None:
    registry: Registry[object] = Registry("widget", "mmat.no_such_group")
    registry.register("od", "collections:OrderedDict")
    assert registry.target("od") == "collections:OrderedDict"
    from collections import OrderedDict

    assert registry.get("od") is OrderedDict
    assert registry.create("od") == OrderedDict()


def test_bad_targets_are_explained() -> None:
    registry: Registry[object] = Registry("widget", "mmat.no_such_group")
    with pytest.raises(UnknownPluginError, match=r"must look like 'package\.module:ClassName'"):
        registry.register("x", "nocolon")
    registry.register("y", "no_such_module_xyz:Thing")
    with pytest.raises(UnknownPluginError, match="cannot be imported"):
        registry.get("y")
    registry.register("z", "collections:Nope")
    with pytest.raises(UnknownPluginError, match="has no 'Nope'"):
        registry.get("z")
    with pytest.raises(UnknownPluginError, match="already registered"):
        registry.register("z", "collections:Counter")
